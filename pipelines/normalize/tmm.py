"""edgeR's TMM normalisation factors (``calcNormFactors(method = "TMM")``), streamed over sample rows.

For each sample ``i`` against a reference sample ``r`` (the sample whose upper-quartile factor
``quantile(counts, 0.75) / libsize`` is closest to the mean of those factors), over the genes
with a positive count in both: ``M = log2((y_i / N_i) / (y_r / N_r))``, ``A = (log2(y_i / N_i) +
log2(y_r / N_r)) / 2`` and ``v = (N_i - y_i) / (N_i y_i) + (N_r - y_r) / (N_r y_r)``. Genes whose
``M`` rank lies in the central 40 % (30 % trimmed each side) and whose ``A`` rank in the central
90 % are kept, and ``log2 f_i`` is their ``1/v``-weighted mean of ``M`` (``f_i = 1`` when every
``|M| < 1e-6``). The factors are scaled to a geometric mean of 1. Genes with no read in any
sample are left out first, as edgeR does. Memory: a block of sample rows over all genes.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from scipy.stats import rankdata

LOGRATIO_TRIM = 0.3
SUM_TRIM = 0.05


def _rows(counts: Any, start: int, stop: int) -> np.ndarray:
    block = counts[start:stop]
    block = block.compute() if isinstance(block, da.Array) else np.asarray(block)
    return np.asarray(block, dtype=np.float64)


def _tmm_factor(obs: np.ndarray, ref: np.ndarray, n_obs: float, n_ref: float) -> float:
    """``.calcFactorTMM`` of one sample against the reference (genes in the same order)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_r = np.log2((obs / n_obs) / (ref / n_ref))
        abs_e = (np.log2(obs / n_obs) + np.log2(ref / n_ref)) / 2
        v = (n_obs - obs) / n_obs / obs + (n_ref - ref) / n_ref / ref
    fin = np.isfinite(log_r) & np.isfinite(abs_e)
    log_r, abs_e, v = log_r[fin], abs_e[fin], v[fin]
    if log_r.size == 0:  # no gene with reads in both libraries: edgeR returns 1 (2^0)
        return 1.0
    if np.abs(log_r).max() < 1e-6:
        return 1.0
    n = log_r.size
    lo_l = np.floor(n * LOGRATIO_TRIM) + 1
    hi_l = n + 1 - lo_l
    lo_s = np.floor(n * SUM_TRIM) + 1
    hi_s = n + 1 - lo_s
    rank_r, rank_e = rankdata(log_r), rankdata(abs_e)  # average ranks for ties, as R's rank()
    keep = (rank_r >= lo_l) & (rank_r <= hi_l) & (rank_e >= lo_s) & (rank_e <= hi_s)
    f = np.nansum(log_r[keep] / v[keep]) / np.nansum(1 / v[keep])
    return float(2.0 ** (0.0 if np.isnan(f) else f))


def tmm_factors(
    counts: np.ndarray | da.Array, lib_size: np.ndarray | None = None, *, block_rows: int = 64
) -> np.ndarray:
    """TMM normalisation factors, equal to edgeR's ``calcNormFactors(y, method = "TMM")``.

    Parameters
    ----------
    counts
        Raw read counts, dims (sample, gene), numpy or dask.
    lib_size
        Library sizes, dims (sample,); default the column sums (edgeR's ``lib.size``).
    block_rows
        Samples read at once (each row holds all genes).

    Returns
    -------
    numpy.ndarray
        Dims (sample,), dimensionless, geometric mean 1. Effective library sizes are
        ``lib_size * factors``.
    """
    n = counts.shape[0]
    expressed = np.asarray((counts > 0).any(axis=0))
    if isinstance(expressed, da.Array):
        expressed = expressed.compute()
    genes = np.flatnonzero(expressed)
    sums = np.empty(n)
    upper = np.empty(n)
    for start in range(0, n, block_rows):
        block = _rows(counts, start, start + block_rows)
        sums[start : start + block.shape[0]] = block.sum(axis=1)
        upper[start : start + block.shape[0]] = np.quantile(block[:, genes], 0.75, axis=1)
    libs = sums if lib_size is None else np.asarray(lib_size, dtype=np.float64)
    if n == 1 or genes.size == 0:
        return np.ones(n)
    f75 = upper / libs
    if np.median(f75) < 1e-20:
        # edgeR: the sample with the largest sum of square-root counts
        roots = np.empty(n)
        for start in range(0, n, block_rows):
            block = _rows(counts, start, start + block_rows)
            roots[start : start + block.shape[0]] = np.sqrt(block[:, genes]).sum(axis=1)
        ref_col = int(np.argmax(roots))
    else:
        ref_col = int(np.argmin(np.abs(f75 - f75.mean())))
    ref = _rows(counts, ref_col, ref_col + 1)[0, genes]
    factors = np.empty(n)
    for start in range(0, n, block_rows):
        block = _rows(counts, start, start + block_rows)[:, genes]
        for k, row in enumerate(block):
            i = start + k
            factors[i] = _tmm_factor(row, ref, libs[i], libs[ref_col])
    return factors / np.exp(np.mean(np.log(factors)))
