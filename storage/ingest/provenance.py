"""The inputs an ingest read, as a store records them (``sources`` root attribute).

Each input file is one entry ``{"path", "sha256", "bytes"}``. A real TCGA download is thousands of
files, so :func:`summarise_sources` reduces the list to what a person compares: the count, the total
size and one digest of the list, which depends only on the files' contents (the same downloads
give the same digest wherever they lie and in whatever order they were listed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def source_entry(path: str | Path, sha256: str) -> dict[str, Any]:
    """The record of one input file: absolute path, sha256 of its bytes, size in bytes."""
    resolved = Path(path).resolve()
    return {"path": str(resolved), "sha256": sha256, "bytes": resolved.stat().st_size}


def sources_digest(sources: Sequence[dict[str, Any]]) -> str:
    """sha256 (hex) of the sorted sha256 digests of ``sources``, one per line."""
    lines = "".join(f"{digest}\n" for digest in sorted(str(s["sha256"]) for s in sources))
    return hashlib.sha256(lines.encode("ascii")).hexdigest()


def summarise_sources(sources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"count", "bytes", "digest"}`` of a store's ``sources`` (bytes: total size; None when a
    store written before sizes were recorded lacks them)."""
    sizes = [s.get("bytes") for s in sources]
    return {
        "count": len(sources),
        "bytes": sum(int(b) for b in sizes) if all(b is not None for b in sizes) else None,
        "digest": sources_digest(sources),
    }
