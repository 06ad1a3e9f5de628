"""Storage options: one process-wide registry that every opener of a store consults.

Every place that opens a store (``gexplain.storage.paths.filesystem``, zarr, xarray) reaches the object
store through fsspec, and fsspec merges ``fsspec.config.conf[<protocol>]`` into the keyword
arguments of every filesystem it creates. That dictionary is therefore the registry:
:func:`set_storage_options` writes the options of a store's protocol there (endpoint URL,
``anon``, ``profile``, ``client_kwargs={"region_name": ...}``, ...), so the driver, Ray tasks and
actors, and Dask workers all open the store the same way without passing options around.

Workers get the same registry through their environment: fsspec reads ``FSSPEC_<PROTOCOL>`` (a
JSON object of options) when it is imported. :func:`set_storage_options` returns those variables;
the runtime puts them into the Ray job's ``runtime_env`` (every Ray worker starts with them) and
into a Dask worker plugin, which calls :func:`refresh_from_environment` on each worker.

Credentials are best left to the nodes (instance roles, workload identity, a mounted
credentials file); options here are visible to every worker process and in the Ray dashboard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import fsspec
import fsspec.config
from fsspec.core import split_protocol
from gexplain.storage.errors import InputError

ENV_PREFIX = "FSSPEC_"
_SET_HERE: dict[str, str] = {}  # protocol -> the JSON this module put in the registry
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def protocol_of(url: str) -> str | None:
    """Return the fsspec protocol of ``url`` (``None`` for local paths and ``file://``).

    Parameters
    ----------
    url
        A filesystem path or fsspec URL.
    """
    protocol, _ = split_protocol(os.fspath(url))
    return None if protocol in (None, "file", "local") else protocol


def _clear_instance_caches(protocol: str) -> None:
    """Forget cached filesystem instances of ``protocol`` so the next open sees new options."""
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError):
        return
    cls.clear_instance_cache()


def require_filesystem(url: str, *, where: str = "run.store") -> None:
    """Check that the fsspec implementation for ``url``'s protocol is installed.

    Raises
    ------
    InputError
        Naming ``where``, the protocol and the extra to install (``gexplain[s3]``, ``gexplain[gcs]``).
    """
    protocol = protocol_of(url)
    if protocol is None:
        return
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        fix = (
            f"pip install 'gexplain[{extra}]'"
            if extra
            else f"install the fsspec implementation of {protocol}://"
        )
        raise InputError(
            f"{where} {url!r}: {protocol}:// needs a package that is not installed: {fix}"
        ) from exc
    except ValueError as exc:
        raise InputError(f"{where} {url!r}: unknown protocol {protocol}:// ({exc})") from exc


def set_storage_options(url: str, options: Mapping[str, Any]) -> dict[str, str]:
    """Register ``options`` for the protocol of ``url`` in this process; return the worker variables.

    Parameters
    ----------
    url
        The store URL, e.g. ``s3://bucket/cohort.zarr``; its protocol selects the filesystem.
    options
        Keyword arguments of that fsspec filesystem (for s3fs: ``endpoint_url``, ``anon``,
        ``profile``, ``key``/``secret``, ``client_kwargs``, ...). They replace options set
        earlier for the protocol; explicit arguments of a caller still win.

    Returns
    -------
    dict
        ``{"FSSPEC_<PROTOCOL>": "<json>"}`` to set on workers (empty when there is nothing to send).

    Raises
    ------
    InputError
        When options are given for a local path, a value is not JSON-serialisable, or the
        filesystem package is missing.
    """
    protocol = protocol_of(url)
    if protocol is None:
        if options:
            raise InputError(
                f"[storage] options {sorted(options)} were given but the store {url!r} is a local path; "
                "storage options apply to object-store URLs (s3://, gs://, ...): remove them or use a URL"
            )
        return {}
    require_filesystem(url)
    variable = f"{ENV_PREFIX}{protocol.upper()}"
    if not options:
        if protocol in _SET_HERE:  # forget what an earlier run of this process registered
            fsspec.config.conf.pop(protocol, None)
            if os.environ.get(variable) == _SET_HERE.pop(protocol):
                os.environ.pop(variable, None)
            _clear_instance_caches(protocol)
        return {}
    try:
        encoded = json.dumps(dict(options), sort_keys=True)
    except TypeError as exc:
        raise InputError(
            f"[storage] options: values must be strings, numbers, booleans or tables ({exc})"
        ) from exc
    fsspec.config.conf[protocol] = json.loads(encoded)
    os.environ[variable] = encoded
    _SET_HERE[protocol] = encoded
    _clear_instance_caches(protocol)
    return {variable: encoded}


def refresh_from_environment() -> None:
    """Re-read ``FSSPEC_<PROTOCOL>`` variables into the registry (run on workers after a change)."""
    before = {k: dict(v) for k, v in fsspec.config.conf.items()}
    fsspec.config.set_conf_env(fsspec.config.conf)
    for protocol, options in fsspec.config.conf.items():
        if before.get(protocol) != options:
            _clear_instance_caches(protocol)


def current_options(url: str) -> dict[str, Any]:
    """Return the registered options for ``url``'s protocol (empty for local paths)."""
    protocol = protocol_of(url)
    return dict(fsspec.config.conf.get(protocol, {})) if protocol else {}


def forwarded_environment(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Return ``{name: value}`` of the named variables of this process, to forward to workers.

    Raises
    ------
    InputError
        When a named variable is not set, naming it and the option.
    """
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise InputError(
            f"[storage] forward_env names {missing}, which are not set in this environment; "
            "export them before running gexplain or remove them from forward_env"
        )
    return {name: os.environ[name] for name in names}
