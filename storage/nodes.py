"""gexplain's own bookkeeping inside a store, kept as Zarr nodes so plain Zarr/xarray readers never trip.

Every folder gexplain writes inside a store (``models/``, ``ledger/``, ``leases/`` and their
children) is a Zarr v3 *group*: it holds a ``zarr.json`` whose ``attributes`` carry the record
(a ledger marker, a lease, a model set's completion flag). Model weights are 1-d ``uint8`` Zarr
arrays. A reader that walks the hierarchy (``zarr.open_group(store).tree()``,
``xarray.open_datatree``) therefore sees ordinary groups and arrays, never a foreign file.

Temporary and stale entries are named ``.<name>.partial-<host>-<pid>-<hex>`` and
``.<name>.old-<host>-<pid>-<hex>`` so that :func:`owner_gone` can tell whether their writer still
runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from gexplain.storage.paths import atomic_write_bytes, filesystem, host_name, join

ZARR_JSON = "zarr.json"
_TEMP = re.compile(
    r"^\.(?P<name>.+)\.(?P<kind>partial|old|tmp)-(?P<host>[A-Za-z0-9-]*)-(?P<pid>\d+)-[0-9a-f]+$"
)
FOREIGN_HOST_AGE_S = 24 * 3600.0


def pid_alive(pid: int) -> bool:
    """Return True when process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(entry_name: str, mtime: float | None = None) -> bool:
    """Return True when a temporary entry's writer no longer runs.

    An entry made on this host is stale once its pid is gone; one made on another host (shared
    file systems) once it is older than :data:`FOREIGN_HOST_AGE_S`.

    Parameters
    ----------
    entry_name
        The entry's base name (e.g. ``.store.zarr.partial-host-123-ab12``).
    mtime
        Its modification time (seconds since the epoch), for entries of other hosts.
    """
    match = _TEMP.match(entry_name)
    if match is None:
        return False
    if match.group("host") == host_name():
        return not pid_alive(int(match.group("pid")))
    return mtime is not None and time.time() - mtime > FOREIGN_HOST_AGE_S


def is_temp(entry_name: str) -> bool:
    """Return True for names made by :func:`temp_name` or by atomic file writes."""
    return bool(_TEMP.match(entry_name))


def group_doc(attributes: dict[str, Any]) -> bytes:
    """Return the ``zarr.json`` bytes of a Zarr v3 group with ``attributes``."""
    doc = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
    return json.dumps(doc, indent=1, sort_keys=True, default=str).encode()


def write_group(url: str, attributes: dict[str, Any], *, parents_below: str | None = None) -> None:
    """Atomically write the group document of ``url`` (its ``zarr.json``).

    Parameters
    ----------
    url
        The group's folder.
    attributes
        Its attributes (the record it carries).
    parents_below
        A store URL: every folder between it and ``url`` gets an empty group document if it has
        none, so the hierarchy stays valid Zarr.
    """
    if parents_below is not None:
        ensure_groups(parents_below, url)
    atomic_write_bytes(join(url, ZARR_JSON), group_doc(attributes))


def ensure_groups(base: str, url: str) -> None:
    """Give every folder from ``base`` (exclusive) down to ``url`` (exclusive) a group document."""
    base_n = join(base).rstrip("/")
    rest = join(url)[len(base_n) :].strip("/")
    parts = [p for p in rest.split("/") if p][:-1]
    current = base_n
    for part in parts:
        current = f"{current}/{part}"
        fs, path = filesystem(join(current, ZARR_JSON))
        if not fs.exists(path):
            atomic_write_bytes(join(current, ZARR_JSON), group_doc({}))


def read_group(url: str) -> dict[str, Any] | None:
    """Return a group's attributes, or None when it has no (readable) group document."""
    fs, path = filesystem(join(url, ZARR_JSON))
    try:
        with fs.open(path, "rb") as fh:
            doc = json.loads(fh.read())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    attrs = doc.get("attributes", {}) if isinstance(doc, dict) else {}
    return attrs if isinstance(attrs, dict) else {}
