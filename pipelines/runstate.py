"""Run state beside the store: a scheduled rerun on a fresh machine resumes where the last one ended.

The run folder (``run.out``: ``manifest.json``, tables, plots, the report) is local to the machine
that runs ``gexplain run``. A scheduled job on Kubernetes gets a fresh pod each time, so that
folder would be gone and every stage would run again. When the store is on object storage
(``s3://``, ``gs://``, ...), the runner therefore mirrors the run folder to
``<store>.runs/<run name>/`` after every manifest write (changed files only) and, when the local
run folder has no manifest, restores it from there before deciding what to skip.

For a local store nothing is mirrored: the run folder already sits on the same filesystem.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from gexplain.storage.paths import filesystem, is_local

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_uploaded: dict[str, tuple[int, int]] = {}  # local file -> (size, mtime_ns) last mirrored


def state_url(store_url: str, run_name: str) -> str | None:
    """Return where the run state of ``run_name`` lives beside ``store_url`` (None for local stores)."""
    if is_local(store_url):
        return None
    return f"{store_url.rstrip('/')}.runs/{run_name}"


def restore(run_dir: Path, store_url: str, run_name: str) -> bool:
    """Copy the mirrored run folder into ``run_dir`` when ``run_dir`` has no manifest.

    Returns
    -------
    bool
        True when a mirrored run state was restored.
    """
    remote = state_url(store_url, run_name)
    if remote is None or (run_dir / MANIFEST).is_file():
        return False
    fs, root = filesystem(remote)
    if not fs.exists(f"{root}/{MANIFEST}"):
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(fs.find(root)):
        rel = path[len(root) :].lstrip("/")
        if not rel or any(part in ("", ".", "..") or part.startswith(".") for part in rel.split("/")):
            continue
        target = run_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(fs.cat_file(path))
        st = target.stat()
        _uploaded[str(target)] = (st.st_size, st.st_mtime_ns)
    log.info("restored run state from %s", remote)
    return True


def mirror(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Upload the files of ``run_dir`` that changed since the last mirror, the manifest last.

    The store URL and run name come from the manifest itself (``store``, ``config.run.name``).
    """
    store_url = str(manifest.get("store") or "")
    run_name = ((manifest.get("config") or {}).get("run") or {}).get("name")
    remote = state_url(store_url, run_name) if store_url and run_name else None
    if remote is None:
        return
    fs, root = filesystem(remote)
    manifest_path = run_dir / MANIFEST
    files = (p for p in run_dir.rglob("*") if p.is_file())
    for path in sorted(p for p in files if not any(s.startswith(".") for s in p.relative_to(run_dir).parts)):
        if path == manifest_path:
            continue
        st = path.stat()
        key = str(path)
        if _uploaded.get(key) == (st.st_size, st.st_mtime_ns):
            continue
        fs.pipe_file(f"{root}/{path.relative_to(run_dir).as_posix()}", path.read_bytes())
        _uploaded[key] = (st.st_size, st.st_mtime_ns)
    fs.pipe_file(f"{root}/{MANIFEST}", json.dumps(manifest, indent=2, default=str).encode())
