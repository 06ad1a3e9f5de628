"""Resolve store locations: local paths and fsspec URLs (``memory://``, ``s3://``, ``gs://``)."""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs


def host_name() -> str:
    """This machine's host name reduced to ``[A-Za-z0-9-]`` (for temporary names and leases)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def temp_name(name: str, kind: str) -> str:
    """Return a hidden sibling name ``.<name>.<kind>-<host>-<pid>-<hex>`` owned by this process.

    Parameters
    ----------
    name
        The final name.
    kind
        ``"partial"`` (being written), ``"old"`` (being replaced) or ``"tmp"`` (atomic file write).
    """
    return f".{name}.{kind}-{host_name()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def is_local(url: str | os.PathLike[str]) -> bool:
    """Return True when ``url`` is a plain path or a ``file://`` URL.

    Parameters
    ----------
    url
        A filesystem path or fsspec URL.
    """
    text = os.fspath(url)
    return "://" not in text or text.startswith("file://")


def normalize_url(url: str | os.PathLike[str]) -> str:
    """Return an absolute local path or the URL unchanged.

    Parameters
    ----------
    url
        A filesystem path or fsspec URL.
    """
    text = os.fspath(url)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if is_local(text):
        return str(Path(text).expanduser().resolve())
    return text.rstrip("/")


def join(url: str, *parts: str) -> str:
    """Join path components onto a store URL with ``/``."""
    base = normalize_url(url)
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the fsspec filesystem and the path inside it for ``url``."""
    return url_to_fs(normalize_url(url))


def exists(url: str) -> bool:
    """Return True when something exists at ``url``."""
    fs, path = filesystem(url)
    return bool(fs.exists(path))


def atomic_write_bytes(url: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` so that readers see either the old or the whole new content.

    Locally the bytes go to a temporary file in the same directory, are flushed to disk and
    renamed over the target (``os.replace`` is atomic on POSIX). On object stores a single
    PUT is already atomic. A full disk raises :class:`~gexplain.storage.errors.DiskFullError`
    naming the path (:meth:`gexplain.storage.backend.Backend.write_atomic`).

    Parameters
    ----------
    url
        Target path or fsspec URL.
    data
        The complete new content.
    """
    from gexplain.storage.backend import backend_for  # the backend module builds on this one

    target = normalize_url(url)
    backend_for(target).write_atomic(target, data)
