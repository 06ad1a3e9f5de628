"""Shared machinery of the simulators: seeding, sample blocks and writing a store block by block.

Seeding rule
------------
Every random draw comes from a generator keyed by ``(seed, stream, index)``
(:func:`rng_for`). Gene-level parameters use one stream, labels another, and each sample ``j``
its own generator ``(seed, SAMPLE_STREAM, j)``. A sample's values therefore depend only on the
seed, the gene-level parameters and its own index: the same store comes out whatever the block
size, the number of workers or the order in which blocks finish.

Writing rule
------------
A store is created empty (:func:`gexplain.storage.store.create_store`), filled one sample block at a time
(each block the full width of genes, aligned to the stored sample chunks so that parallel writers
never touch the same chunk), then committed. At most ``workers`` blocks are in memory at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import dask
import numpy as np
from gexplain.pipelines.blocks import sample_blocks
from gexplain.pipelines.progress import SILENT, Progress
from gexplain.storage.errors import InputError
from gexplain.storage.store import DEFAULT_CHUNKS, StoreWriter, create_store

GENE_STREAM = 1
LABEL_STREAM = 2
SAMPLE_STREAM = 3
INT32_MAX = np.iinfo(np.int32).max


def rng_for(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """Return the generator for one stream and index of a seeded simulation.

    Parameters
    ----------
    seed
        The simulation seed (non-negative).
    stream
        Which kind of draw (:data:`GENE_STREAM`, :data:`LABEL_STREAM`, :data:`SAMPLE_STREAM`).
    index
        The sample index for :data:`SAMPLE_STREAM`, else 0.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, index])))


def check_positive(**values: int) -> None:
    """Raise :class:`InputError` naming the first option that is not a positive integer."""
    for name, value in values.items():
        if int(value) < 1:
            option = "--" + name.replace("_", "-")
            raise InputError(f"option {option} (= {value}) must be a positive integer; pass a value >= 1")


def check_seed(seed: int) -> None:
    """Raise :class:`InputError` when ``seed`` is negative."""
    if int(seed) < 0:
        raise InputError(f"option --seed (= {seed}) must be >= 0; pass a non-negative integer")


def resolve_chunks(chunks: Mapping[str, int] | None) -> dict[str, int]:
    """Return the stored chunk shape: :data:`gexplain.storage.store.DEFAULT_CHUNKS` updated by ``chunks``."""
    out = {**DEFAULT_CHUNKS, **(chunks or {})}
    check_positive(chunk_samples=out["sample"], chunk_genes=out["gene"])
    return out


def _workers() -> int:
    configured = dask.config.get("num_workers", None)
    return int(configured) if configured else max(1, os.cpu_count() or 1)


def log2_cpm1(counts: np.ndarray) -> np.ndarray:
    """Return log2(CPM + 1) of counts, row by row.

    Parameters
    ----------
    counts
        (sample, gene) counts; a row summing to zero gives zeros.

    Returns
    -------
    numpy.ndarray
        (sample, gene) float32.
    """
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum(axis=1, keepdims=True)
    cpm = np.divide(c * 1e6, total, out=np.zeros_like(c), where=total > 0)
    return np.log2(cpm + 1.0).astype(np.float32)


def write_store(
    url: str,
    *,
    sample_ids: np.ndarray,
    gene_ids: np.ndarray,
    variables: Mapping[str, tuple[str, np.ndarray]],
    layers: Mapping[str, str],
    attrs: Mapping[str, Any],
    make_block: Callable[[slice], Mapping[str, np.ndarray]],
    chunks: Mapping[str, int] | None,
    progress: Progress | None,
    description: str,
    overwrite: bool,
) -> str:
    """Create a store, fill it sample block by sample block, and commit it.

    Blocks run as Dask tasks on the current scheduler (the local threads by default, or the
    runtime's scheduler inside ``runtime.dask_scheduler()``), ``workers`` at a time, so memory is
    bounded by a few blocks whatever the number of samples. On failure the partial store is removed.

    Parameters
    ----------
    url
        Store path or fsspec URL.
    sample_ids, gene_ids
        Ids along ``sample`` and ``gene``.
    variables
        1-d variables written at creation: name -> (dim, values) (labels, annotations, truth).
    layers
        (sample, gene) layer name -> dtype.
    attrs
        Store attrs (``simulator``, ``label_column``, ...).
    make_block
        Returns, for a slice of samples, layer name -> (samples in slice, all genes) array.
    chunks
        Stored chunk shape (default :data:`gexplain.storage.store.DEFAULT_CHUNKS`); blocks are one sample
        chunk tall.
    progress
        Progress reporting (default silent).
    description
        Progress label.
    overwrite
        Replace an existing store at ``url`` when this one commits.

    Returns
    -------
    str
        The store URL.
    """
    chunk = resolve_chunks(chunks)
    writer: StoreWriter = create_store(
        url,
        sample_ids=sample_ids,
        gene_ids=gene_ids,
        coords=dict(variables),
        layers=dict(layers),
        attrs=dict(attrs),
        chunks=chunk,
        overwrite=overwrite,
    )

    def fill(block: slice) -> None:
        writer.write_block({"sample": block}, make_block(block))

    blocks = sample_blocks(len(sample_ids), chunk["sample"])
    batch = _workers()
    try:
        with (progress or SILENT).task(description, total=len(blocks)) as task:
            for start in range(0, len(blocks), batch):
                todo = blocks[start : start + batch]
                dask.compute(*[dask.delayed(fill)(b) for b in todo])
                task.advance(len(todo))
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
