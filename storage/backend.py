"""One storage backend interface for local paths and fsspec object stores.

Every writer of a store reaches its bytes through a :class:`Backend`, chosen once per URL by
:func:`backend_for`, instead of deciding ``local or not`` at each call site. A backend offers the
four operations the integrity model needs:

* **atomic commit** -- :meth:`Backend.stage` gives the place to write a new tree (a store, a model
  set) and :meth:`Backend.commit_tree` makes it visible whole. Locally the tree is written under a
  hidden sibling and renamed into place (an existing tree is renamed aside first and removed
  after). Object stores cannot rename a prefix: the tree is written in place and the caller's
  completion flag, written last, is the commit (``renames`` is False).
* **conditional write** -- :meth:`Backend.read_versioned` returns bytes with an opaque version and
  :meth:`Backend.write_if` writes only when the object is still at that version (or, with
  ``None``, still absent). Locally the check and the write run under ``flock`` on the folder; on
  S3 they are one request (``If-Match`` on the ETag, ``If-None-Match: *``), so two writers can
  never both win. Other fsspec stores (``memory://``, GCS through gcsfs) compare then write:
  ``atomic_conditional`` is False there and the docs say so.
* **list** and **delete**.

Storage options are passed explicitly (:func:`backend_for` ``options``); without them fsspec's
configuration applies (:mod:`gexplain.storage.options`, the compatibility path through which the
runtime hands options to Ray and Dask workers).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fsspec
from fsspec.asyn import sync
from fsspec.core import url_to_fs
from gexplain.storage import faults
from gexplain.storage.errors import DiskFullError, InputError
from gexplain.storage.paths import is_local, normalize_url, temp_name


class Backend:
    """The operations every store writer uses; subclasses implement them per kind of storage.

    Attributes
    ----------
    renames
        True when :meth:`commit_tree` renames a staged tree into place (local file systems).
    atomic_conditional
        True when :meth:`write_if` is one atomic compare-and-write.
    """

    renames: bool = False
    atomic_conditional: bool = False

    def exists(self, url: str) -> bool:
        """Return True when something exists at ``url``."""
        raise NotImplementedError

    def read_versioned(self, url: str) -> tuple[bytes, str] | None:
        """Return ``(content, version)`` of the object at ``url``, or None when it is absent."""
        raise NotImplementedError

    def write_atomic(self, url: str, data: bytes) -> None:
        """Write ``data`` so that readers see the old or the whole new content, never a part."""
        raise NotImplementedError

    def write_if(self, url: str, data: bytes, version: str | None) -> bool:
        """Write ``data`` only when ``url`` is still at ``version`` (``None``: still absent).

        Returns
        -------
        bool
            False when another writer changed (or created) the object first; nothing is written.
        """
        raise NotImplementedError

    def list(self, url: str) -> list[str]:
        """Return the names of the entries directly below ``url`` (``[]`` when it is absent)."""
        raise NotImplementedError

    def delete(self, url: str) -> None:
        """Remove ``url`` and everything below it (nothing when it is absent)."""
        raise NotImplementedError

    def stage(self, final: str) -> str:
        """Return where a new tree for ``final`` is written before :meth:`commit_tree`."""
        raise NotImplementedError

    def commit_tree(self, staged: str, final: str, *, replace: bool) -> None:
        """Make the tree written at ``staged`` visible at ``final`` whole.

        Parameters
        ----------
        staged
            What :meth:`stage` returned.
        final
            The final location.
        replace
            Replace an existing tree at ``final``; otherwise an existing one is an error.
        """
        raise NotImplementedError

    def discard(self, staged: str, final: str) -> None:
        """Remove a staged tree after a failure (``final`` is untouched when they differ)."""
        if staged != final:
            self.delete(staged)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``flock`` on ``folder`` (made when missing) for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class LocalBackend(Backend):
    """A POSIX file system: rename commits, ``flock``-guarded conditional writes."""

    renames = True
    atomic_conditional = True

    def exists(self, url: str) -> bool:
        return os.path.lexists(normalize_url(url))

    def read_versioned(self, url: str) -> tuple[bytes, str] | None:
        try:
            data = Path(normalize_url(url)).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data, _digest(data)

    def write_atomic(self, url: str, data: bytes) -> None:
        faults.point()
        path = Path(normalize_url(url))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(temp_name(path.name, "tmp"))
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise disk_error(exc, str(path)) from exc

    def write_if(self, url: str, data: bytes, version: str | None) -> bool:
        path = Path(normalize_url(url))
        with folder_lock(path.parent):
            current = self.read_versioned(str(path))
            if (current is None) != (version is None) or (current is not None and current[1] != version):
                return False
            self.write_atomic(str(path), data)
        return True

    def list(self, url: str) -> list[str]:
        try:
            return sorted(p.name for p in Path(normalize_url(url)).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, url: str) -> None:
        path = Path(normalize_url(url))
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def stage(self, final: str) -> str:
        path = Path(normalize_url(final))
        return str(path.parent / temp_name(path.name, "partial"))

    def commit_tree(self, staged: str, final: str, *, replace: bool) -> None:
        target, source = Path(normalize_url(final)), Path(normalize_url(staged))
        if staged == final:
            return
        if target.exists():
            if not replace:
                raise InputError(f"{final} already exists; pass overwrite=True (CLI: --overwrite)")
            trash = target.with_name(temp_name(target.name, "old"))
            target.rename(trash)
            faults.point()
            source.rename(target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            source.rename(target)


_PROCESS_LOCK = threading.Lock()


class FsspecBackend(Backend):
    """Any fsspec object store: trees committed by a completion flag, compare-then-write.

    Parameters
    ----------
    fs
        The fsspec filesystem.
    protocol
        Its URL scheme (``memory``, ``gs``, ...), used to rebuild URLs from its paths.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, protocol: str) -> None:
        self.fs = fs
        self.protocol = protocol

    def _path(self, url: str) -> str:
        return url_to_fs(normalize_url(url))[1] if "://" in url else url

    def exists(self, url: str) -> bool:
        return bool(self.fs.exists(self._path(url)))

    def read_versioned(self, url: str) -> tuple[bytes, str] | None:
        try:
            data = self.fs.cat_file(self._path(url))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return bytes(data), _digest(bytes(data))

    def write_atomic(self, url: str, data: bytes) -> None:
        faults.point()
        self.fs.pipe_file(self._path(url), data)  # one PUT: already all or nothing

    def write_if(self, url: str, data: bytes, version: str | None) -> bool:
        with _PROCESS_LOCK:  # atomic within one process; across processes compare-then-write
            current = self.read_versioned(url)
            if (current is None) != (version is None) or (current is not None and current[1] != version):
                return False
            self.write_atomic(url, data)
        return True

    def list(self, url: str) -> list[str]:
        path = self._path(url)
        try:
            entries = self.fs.ls(path, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries if str(e).rstrip("/") != path)

    def delete(self, url: str) -> None:
        path = self._path(url)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def stage(self, final: str) -> str:
        return normalize_url(final)

    def commit_tree(self, staged: str, final: str, *, replace: bool) -> None:
        return None  # written in place; the caller's completion flag, written last, commits


def _precondition_failed(exc: OSError) -> bool:
    text = str(exc).lower()
    return isinstance(exc, FileExistsError) or "pre-condition" in text or "precondition" in text


class S3Backend(FsspecBackend):
    """S3 (and S3-compatible stores such as MinIO and moto): conditional PUTs on the ETag."""

    atomic_conditional = True

    def read_versioned(self, url: str) -> tuple[bytes, str] | None:
        bucket, key, _ = self.fs.split_path(self._path(url))

        async def get() -> tuple[bytes, str]:
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                return await body.read(), str(response["ETag"])
            finally:
                body.close()

        try:
            return sync(self.fs.loop, get)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_if(self, url: str, data: bytes, version: str | None) -> bool:
        faults.point()
        path = self._path(url)
        condition: dict[str, Any] = {"mode": "create"} if version is None else {"IfMatch": version}
        try:
            self.fs.pipe_file(path, data, **condition)
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True


def backend_for(url: str, options: Mapping[str, Any] | None = None) -> Backend:
    """Return the backend that holds ``url``.

    Parameters
    ----------
    url
        A local path, ``file://`` URL or fsspec URL (``s3://``, ``gs://``, ``memory://``, ...).
    options
        Storage options of the filesystem (endpoint, credentials profile, ...); when omitted,
        fsspec's configuration for the protocol applies.
    """
    if is_local(url):
        return _LOCAL
    fs, _ = url_to_fs(normalize_url(url), **dict(options or {}))
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("s3", "s3a"):
        return S3Backend(fs, protocol)
    return FsspecBackend(fs, protocol)


_LOCAL = LocalBackend()


def disk_error(exc: OSError, path: str) -> OSError | DiskFullError:
    """Turn a full disk or quota into a :class:`DiskFullError` naming ``path`` (other errors unchanged)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"no space left while writing {path} ({os.strerror(exc.errno)}); free space on that file "
            "system (or choose another --out/store) and rerun: nothing half-written is visible"
        )
    return exc
