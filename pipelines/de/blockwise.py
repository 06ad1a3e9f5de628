"""Per-gene-block evaluation of two-group statistics over a store layer.

A contrast's samples (test rows first, then reference rows) are read one gene block at a time:
every block holds all of the contrast's samples for ``gene_block`` genes, so a per-gene statistic
that needs every sample (ranks, variances) is computed in memory bounded by the block. Blocks are
submitted to Dask (in-memory arrays: a thread pool) in batches of ``parallel`` so that at most
that many are in flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
import xarray as xr
from gexplain.pipelines.normalize.size_factors import median_of_ratios
from gexplain.pipelines.normalize.transforms import cpm, normalized_counts, tpm
from gexplain.pipelines.progress import SILENT, Progress
from gexplain.storage.errors import InputError

LAYERS = ("counts", "cpm", "tpm", "norm_counts", "log_expr")
BLOCK_BYTES = 64 * 1024**2

BlockFunc = Callable[[np.ndarray], np.ndarray]


def check_layer(ds: xr.Dataset, layer: str) -> None:
    """Check, without computing, that :func:`layer_array` can provide ``layer``.

    Raises
    ------
    InputError
        Unknown layer, or a layer that is neither stored nor derivable from ``counts`` (TPM also
        needs ``gene_length``).
    """
    if layer not in LAYERS:
        raise InputError(f"unknown layer '{layer}' (option --layer); choose from {', '.join(LAYERS)}")
    if layer in ds:
        return
    if layer == "log_expr" or "counts" not in ds:
        have = [str(n) for n in ds.data_vars if ds[n].ndim == 2]
        raise InputError(
            f"the store has no '{layer}' layer and no counts to derive it from (layers present: "
            f"{', '.join(have) or 'none'}); choose one of those with --layer or run `gexplain normalize`"
        )
    if layer == "tpm":
        tpm(ds["counts"], ds["gene_length"] if "gene_length" in ds else None)


def layer_array(ds: xr.Dataset, layer: str) -> xr.DataArray:
    """Return a (sample, gene) layer, computing CPM/TPM/normalized counts lazily when not stored.

    Parameters
    ----------
    ds
        A store Dataset.
    layer
        One of ``counts``, ``cpm``, ``tpm``, ``norm_counts`` (linear units) or ``log_expr``
        (log2 units).

    Raises
    ------
    InputError
        Unknown layer, or a layer that is neither stored nor derivable from ``counts``.
    """
    check_layer(ds, layer)
    if layer in ds:
        return ds[layer]
    counts = ds["counts"]
    if layer == "counts":
        return counts
    if layer == "cpm":
        return cpm(counts)
    if layer == "tpm":
        return tpm(counts, ds["gene_length"] if "gene_length" in ds else None)
    sf = ds["size_factors"].values if "size_factors" in ds else median_of_ratios(counts.data)
    return normalized_counts(counts, sf)


def default_parallel() -> int:
    """Number of gene blocks in flight: the Dask cluster's threads, else this machine's cores."""
    try:
        from dask.distributed import default_client

        return max(1, sum(default_client().nthreads().values()))
    except (ImportError, ValueError):
        return max(1, os.cpu_count() or 1)


def gene_block_size(n_samples: int, gene_block: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Genes per block: ``gene_block`` capped so that a float64 block stays under ``block_bytes``."""
    return max(1, min(int(gene_block), int(block_bytes) // max(1, 8 * n_samples)))


def map_gene_blocks(
    x: np.ndarray | da.Array,
    rows: np.ndarray,
    func: BlockFunc,
    n_out: int,
    *,
    gene_block: int = 2048,
    parallel: int | None = None,
    progress: Progress | None = None,
    description: str = "gene blocks",
) -> np.ndarray:
    """Apply ``func`` to every gene block of ``x[rows]`` and stack the per-gene outputs.

    Parameters
    ----------
    x
        Layer values, dims (sample, gene), numpy or dask.
    rows
        Sample positions to read, in the order ``func`` expects (e.g. test then reference).
    func
        Maps a float64 block (len(rows), genes in block) to (n_out, genes in block).
    n_out
        Number of per-gene outputs of ``func``.
    gene_block
        Upper bound on genes per block (also capped by :data:`BLOCK_BYTES`).
    parallel
        Blocks computed at once (default :func:`default_parallel`).
    progress
        Optional progress reporting, one step per block.

    Returns
    -------
    numpy.ndarray
        Dims (n_out, gene), float64.
    """
    n_genes = x.shape[1]
    step = gene_block_size(len(rows), gene_block)
    starts = list(range(0, n_genes, step))
    out = np.empty((n_out, n_genes), dtype=np.float64)
    batch = parallel or default_parallel()

    def one(block: np.ndarray) -> np.ndarray:
        return func(np.asarray(block, dtype=np.float64))

    progress = progress or SILENT
    with progress.task(description, total=len(starts)) as task, ThreadPoolExecutor(batch) as pool:
        for first in range(0, len(starts), batch):
            chunk = starts[first : first + batch]
            if isinstance(x, da.Array):
                results = dask.compute(*[dask.delayed(one)(x[rows, s : s + step]) for s in chunk])
            else:
                results = tuple(pool.map(lambda s: one(x[rows, s : s + step]), chunk))
            for s, res in zip(chunk, results, strict=True):
                out[:, s : s + res.shape[1]] = res
            task.advance(len(chunk))
    return out
