"""DESeq2 median-of-ratios size factors, streamed over blocks of a (sample, gene) count matrix.

Two passes over the counts, each holding one block in memory:

1. per gene block, the log geometric mean of every gene over all samples (a reduction along
   ``sample``; only a ``(gene,)`` float64 vector is kept);
2. per sample block (rows over *all* genes, sized so that a block stays under
   ``block_bytes``), the median over genes of ``log(count) - log geometric mean``.

The median over genes needs every gene of a sample, so pass 2 walks rows, not chunks: memory is
bounded by ``block_bytes``, never by the number of samples.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import dask.array as da
import numpy as np
from gexplain.storage.errors import InputError

SizeFactorMethod = Literal["ratio", "poscounts", "tmm"]
DEFAULT_BLOCK_BYTES = 256 * 1024**2


def _as_array(counts: Any) -> np.ndarray | da.Array:
    """Return the numpy or dask array behind ``counts`` (unwraps xarray DataArrays)."""
    data = getattr(counts, "data", counts)
    if isinstance(data, da.Array | np.ndarray):
        return data
    return np.asarray(data)


def _log_counts(block: np.ndarray) -> np.ndarray:
    """Natural log of a block of counts as float64 (``-inf`` for zeros)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(block, dtype=np.float64))


def log_geometric_means(counts: np.ndarray | da.Array, *, method: SizeFactorMethod = "ratio") -> np.ndarray:
    """Per-gene log geometric means used as the pseudo-reference sample.

    Parameters
    ----------
    counts
        Raw counts, dims (sample, gene), numpy or dask (reduced chunk by chunk).
    method
        ``"ratio"``: mean over samples of ``log(count)``; ``-inf`` for a gene with any zero.
        ``"poscounts"``: sum of ``log(count)`` over the positive counts divided by the number of
        samples (DESeq2's ``geoMeanNZ``); ``-inf`` for a gene that is zero in every sample.

    Returns
    -------
    numpy.ndarray
        Dims (gene,), float64, natural-log units.
    """
    arr = _as_array(counts)
    n_samples = arr.shape[0]
    if method == "ratio":
        # map_blocks keeps _log_counts' errstate inside each worker thread (log(0) = -inf is intended)
        logs = (
            arr.map_blocks(_log_counts, dtype=np.float64) if isinstance(arr, da.Array) else _log_counts(arr)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            result = logs.mean(axis=0)
            return np.asarray(result.compute() if isinstance(result, da.Array) else result)
    if method == "poscounts":
        if isinstance(arr, da.Array):
            pos = arr.astype(np.float64)
            logs = da.where(pos > 0, da.log(da.where(pos > 0, pos, 1.0)), 0.0)
            sums = logs.sum(axis=0).compute()
            any_pos = (arr > 0).any(axis=0).compute()
        else:
            pos = np.asarray(arr, dtype=np.float64)
            logs = np.where(pos > 0, np.log(np.where(pos > 0, pos, 1.0)), 0.0)
            sums = logs.sum(axis=0)
            any_pos = (pos > 0).any(axis=0)
        return np.where(any_pos, np.asarray(sums) / n_samples, -np.inf)
    check_method(method)
    raise AssertionError("unreachable")


def check_method(method: str) -> None:
    """The one check of a size-factor method name (library callers; stages are checked by their model)."""
    if method not in typing.get_args(SizeFactorMethod):
        choices = ", ".join(typing.get_args(SizeFactorMethod))
        raise InputError(f"unknown size-factor method '{method}'; use one of {choices}")


def _rows_per_block(n_genes: int, block_bytes: int) -> int:
    """Number of samples whose float64 log-ratios over ``n_genes`` genes fit in ``block_bytes``."""
    return max(1, int(block_bytes) // max(1, 8 * n_genes))


def median_of_ratios(
    counts: np.ndarray | da.Array,
    *,
    method: SizeFactorMethod = "ratio",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> np.ndarray:
    """DESeq2 median-of-ratios size factors (``estimateSizeFactors``).

    Parameters
    ----------
    counts
        Raw read counts, dims (sample, gene), non-negative; numpy or dask (streamed).
    method
        ``"ratio"`` (DESeq2's default): pseudo-reference = geometric mean over genes with no zero
        count; ``size factor = exp(median over those genes of log(count / reference))``.
        ``"poscounts"``: zeros are left out of the geometric means and of each sample's median,
        genes that are zero everywhere are skipped, and the size factors are scaled to a
        geometric mean of 1.
    block_bytes
        Upper bound on the float64 working set of one sample block (all genes plus the
        log-ratios of the usable genes) held at once.

    Returns
    -------
    numpy.ndarray
        Dims (sample,), float64, dimensionless.

    Raises
    ------
    InputError
        For an unknown ``method``, negative counts, or (``"ratio"``) when every gene has a zero
        in some sample (the fix: use ``"poscounts"``).
    """
    check_method(method)
    if method == "tmm":
        raise InputError("size factors 'tmm' are not a median of ratios; use size_factors_of(counts, 'tmm')")
    arr = _as_array(counts)
    if arr.ndim != 2:
        raise InputError(f"counts must be a (sample, gene) matrix, got shape {arr.shape}")
    log_means = log_geometric_means(arr, method=method)
    usable = np.isfinite(log_means)
    if not usable.any():
        if method == "ratio":
            raise InputError(
                "every gene contains at least one zero count, so the 'ratio' geometric means are "
                "undefined; use size factors method 'poscounts'"
            )
        raise InputError("every gene has zero counts in all samples; the count matrix holds no reads")
    genes = np.flatnonzero(usable)
    ref = log_means[genes]
    # each block holds all genes as float64 plus the log-ratios of the usable ones
    rows = _rows_per_block(arr.shape[1] + genes.size, block_bytes)
    log_sf = np.empty(arr.shape[0], dtype=np.float64)
    for start in range(0, arr.shape[0], rows):
        block = arr[start : start + rows]
        block = block.compute() if isinstance(block, da.Array) else np.asarray(block)
        block = np.asarray(block, dtype=np.float64)
        if (block < 0).any():
            raise InputError(
                f"counts hold negative values (samples {start}..{start + block.shape[0] - 1}); "
                "size factors need raw non-negative read counts"
            )
        block = block[:, genes]
        ratios = _log_counts(block) - ref
        if method == "poscounts":
            ratios[block <= 0] = np.nan
            empty = np.isnan(ratios).all(axis=1)
            if empty.any():
                first = start + int(np.flatnonzero(empty)[0])
                raise InputError(
                    f"sample at position {first} has zero counts in every gene; remove it before normalizing"
                )
            log_sf[start : start + block.shape[0]] = np.nanmedian(ratios, axis=1)
        else:
            log_sf[start : start + block.shape[0]] = np.median(ratios, axis=1)
    if method == "poscounts":
        log_sf -= log_sf.mean()
    return np.exp(log_sf)


def tmm_size_factors(counts: np.ndarray | da.Array) -> np.ndarray:
    """Size factors from edgeR's TMM: effective library sizes ``libsize * tmm_factor`` scaled to a
    geometric mean of 1 (dims (sample,)), as one hands edgeR's normalisation to DESeq2."""
    from gexplain.pipelines.normalize.tmm import tmm_factors

    arr = _as_array(counts)
    lib = np.asarray(arr.sum(axis=1).compute() if isinstance(arr, da.Array) else arr.sum(axis=1), dtype=float)
    if (lib <= 0).any():
        first = int(np.flatnonzero(lib <= 0)[0])
        raise InputError(
            f"sample at position {first} has zero counts in every gene; remove it before normalizing"
        )
    effective = lib * tmm_factors(arr, lib)
    return effective / np.exp(np.mean(np.log(effective)))


def size_factors_of(
    counts: np.ndarray | da.Array, method: SizeFactorMethod, *, block_bytes: int = DEFAULT_BLOCK_BYTES
) -> np.ndarray:
    """Size factors by method name: ``"ratio"``/``"poscounts"`` (:func:`median_of_ratios`) or ``"tmm"``."""
    check_method(method)
    if method == "tmm":
        return tmm_size_factors(counts)
    return median_of_ratios(counts, method=method, block_bytes=block_bytes)
