"""Size checks before a new store is made: say how much memory and disk a request needs.

A store's 1-d variables (ids, labels, annotations) are held in memory while it is written; its
(sample, gene) layers stream to disk one chunk row at a time. :func:`check_new_store` refuses, in
milliseconds and before anything is allocated, a request whose 1-d variables and blocks in flight
cannot fit in this machine's memory, or whose layers cannot fit on the target file system even at
a compression ratio no expression data reaches (:data:`BEST_COMPRESSION`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from gexplain.storage.errors import InputError
from gexplain.storage.paths import is_local, normalize_url

BYTES_PER_ID = 64  # an id as fixed-width unicode (up to 12 characters) plus per-item annotations
BEST_COMPRESSION = 8.0  # an assumed ceiling on zstd's ratio for dense expression layers (typically 2-4x)


def human_bytes(n: float) -> str:
    """``1.5 TiB``-style size of ``n`` bytes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


@dataclass(frozen=True)
class Needs:
    """What writing a new store needs.

    Attributes
    ----------
    memory
        Bytes held in memory: 1-d variables plus ``workers`` blocks of one chunk row.
    disk
        Uncompressed bytes of the (sample, gene) layers.
    """

    memory: int
    disk: int


def new_store_needs(
    n_samples: int, n_genes: int, layers: Mapping[str, str], chunk_samples: int, workers: int
) -> Needs:
    """Return the memory and (uncompressed) disk a new store of that shape needs.

    Parameters
    ----------
    n_samples, n_genes
        Its dims.
    layers
        Layer name -> dtype of its (sample, gene) layers.
    chunk_samples
        Samples per written block (the stored chunk length along samples).
    workers
        Blocks written at a time.
    """
    per_cell = sum(np.dtype(dt).itemsize for dt in layers.values())
    block = min(chunk_samples, n_samples) * n_genes * per_cell * 3  # a block, its draws and its encoding
    memory = (n_samples + n_genes) * BYTES_PER_ID + workers * block
    return Needs(memory=int(memory), disk=int(n_samples) * int(n_genes) * per_cell)


def _free_disk(url: str) -> int | None:
    if not is_local(url):
        return None  # object stores: no fixed capacity to check
    folder = Path(normalize_url(url)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_new_store(
    url: str,
    *,
    n_samples: int,
    n_genes: int,
    layers: Mapping[str, str],
    chunk_samples: int,
    where: str,
    workers: int | None = None,
) -> Needs:
    """Refuse a new store that cannot fit in memory or on disk; return what it needs.

    Parameters
    ----------
    url
        The store to create.
    n_samples, n_genes, layers, chunk_samples
        Its shape, layers and stored chunk length along samples.
    where
        The options that set the size, for the message (``"--samples/--genes"``).
    workers
        Blocks written at a time (default: the CPU count).

    Raises
    ------
    InputError
        Stating the bytes needed, the bytes available and the options to change.
    """
    needs = new_store_needs(n_samples, n_genes, layers, chunk_samples, workers or os.cpu_count() or 1)
    shape = f"{n_samples:,} samples x {n_genes:,} genes"
    memory = psutil.virtual_memory().total
    if needs.memory > memory:
        raise InputError(
            f"{where}: {shape} needs about {human_bytes(needs.memory)} ({needs.memory:,} bytes) of memory "
            f"for its ids, annotations and blocks in flight, but this machine has {human_bytes(memory)}; "
            "ask for fewer samples or genes"
        )
    free = _free_disk(url)
    if free is not None and needs.disk / BEST_COMPRESSION > free:
        raise InputError(
            f"{where}: {shape} needs {human_bytes(needs.disk)} ({needs.disk:,} bytes) of layers "
            f"uncompressed (at least {human_bytes(needs.disk / BEST_COMPRESSION)} stored), but "
            f"{normalize_url(url)}'s file system has {human_bytes(free)} free; ask for fewer samples "
            "or genes, or write elsewhere"
        )
    return needs
