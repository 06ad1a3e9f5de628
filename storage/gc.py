"""Remove what killed writers leave behind: hidden ``.partial-*``, ``.old-*`` and ``.tmp-*`` entries.

Temporary names carry their writer's host and pid (:func:`gexplain.storage.paths.temp_name`); an entry is
removed only once that writer is gone (:func:`gexplain.storage.nodes.owner_gone`), so a running writer's
work is never touched. The next writer of a store calls :func:`remove_stale_siblings` (cheap: the
store's parent folder, its root and ``models/``); ``gexplain gc`` calls :func:`collect`, which
walks every folder of the store except Zarr chunk folders.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gexplain.storage.backend import backend_for
from gexplain.storage.nodes import is_temp, owner_gone
from gexplain.storage.paths import normalize_url

BOOKKEEPING = ("leases", "ledger", "models")


@dataclass(frozen=True)
class Removed:
    """One removed leftover: its path and size in bytes."""

    path: str
    bytes: int


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += (Path(root) / f).lstat().st_size
            except FileNotFoundError:
                pass
    return total


def _remove(path: Path, dry_run: bool) -> Removed | None:
    try:
        size = _size(path)
        if not dry_run:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    except FileNotFoundError:
        return None  # someone else removed it first
    return Removed(str(path), size)


def _stale_in(folder: Path, prefix: str = "", dry_run: bool = False) -> list[Removed]:
    out: list[Removed] = []
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not is_temp(name):
            continue
        try:
            mtime = entry.lstat().st_mtime
        except FileNotFoundError:
            continue
        if owner_gone(name, mtime):
            removed = _remove(entry, dry_run)
            if removed is not None:
                out.append(removed)
    return out


def remove_stale_siblings(store_url: str) -> list[Removed]:
    """Remove a local store's stale temporaries: siblings, root entries and model-set temporaries.

    Parameters
    ----------
    store_url
        The store (object stores have no temporaries: nothing to do).
    """
    target = normalize_url(store_url)
    if not backend_for(target).renames:  # only renaming backends stage trees under hidden names
        return []
    store = Path(target)
    out = _stale_in(store.parent, prefix=f".{store.name}.")
    out += _stale_in(store)
    out += _stale_in(store / "models")
    return out


def collect(store_url: str, *, dry_run: bool = False) -> list[Removed]:
    """Remove every stale temporary of a local store (``gexplain gc``).

    Parameters
    ----------
    store_url
        The store.
    dry_run
        Only list what would be removed.

    Returns
    -------
    list of Removed
    """
    target = normalize_url(store_url)
    if not backend_for(target).renames:  # only renaming backends stage trees under hidden names
        return []
    store = Path(target)
    out = _stale_in(store.parent, prefix=f".{store.name}.", dry_run=dry_run)
    for root, dirs, _files in os.walk(store):
        dirs[:] = [d for d in dirs if d != "c" and not is_temp(d)]  # never descend into chunk folders
        out += _stale_in(Path(root), dry_run=dry_run)
    for area in BOOKKEEPING:  # folders a killed writer made but never gave a group document
        for root, _dirs, files in os.walk(store / area, topdown=False):
            folder = Path(root)
            if not files and not any(folder.iterdir()) and not dry_run:
                folder.rmdir()
                out.append(Removed(str(folder), 0))
    return out
