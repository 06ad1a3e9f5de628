"""Two-sided Mann-Whitney U (Wilcoxon rank-sum) test per gene, computed per gene block.

The asymptotic test with tie correction and continuity correction, as
``scipy.stats.mannwhitneyu(x, y, method="asymptotic")``: with average ranks over the pooled
samples, ``U1 = R1 - n1 (n1 + 1) / 2``, ``U = max(U1, n1 n2 - U1)``,
``sigma = sqrt(n1 n2 / 12 ((n + 1) - sum(t^3 - t) / (n (n - 1))))`` over tie groups of size t,
``z = (U - n1 n2 / 2 - 0.5) / sigma`` and ``p = min(1, 2 Phi(-z))``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from gexplain.pipelines.de.blockwise import layer_array, map_gene_blocks
from gexplain.pipelines.de.contrasts import Contrast
from gexplain.pipelines.de.multitest import benjamini_hochberg
from gexplain.pipelines.de.output import result_dataset
from gexplain.pipelines.progress import Progress
from scipy import special


def rank_sum_and_ties(x: np.ndarray, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank sum of the first ``n_test`` rows and the tie term, per column.

    Ranks are average ranks over all rows of a column (ties share the mean of their positions).
    One sort per column; tied groups are found from runs of equal sorted values.

    Parameters
    ----------
    x
        Dims (sample, gene), float64, no NaN.
    n_test
        Rows ``0 .. n_test - 1`` form the group whose ranks are summed.

    Returns
    -------
    rank_sum
        Dims (gene,), float64: ``R1``.
    tie_term
        Dims (gene,), float64: ``sum(t^3 - t)`` over tie groups of size ``t``.
    """
    xt = np.ascontiguousarray(x.T)
    n_genes, n = xt.shape
    order = np.argsort(xt, axis=1)
    xs = np.take_along_axis(xt, order, axis=1)
    new_run = np.empty(xs.shape, dtype=bool)
    new_run[:, 0] = True
    np.not_equal(xs[:, 1:], xs[:, :-1], out=new_run[:, 1:])
    starts = np.flatnonzero(new_run)
    sizes = np.diff(starts, append=n_genes * n)
    tied = sizes > 1
    tie_starts, tie_sizes = starts[tied], sizes[tied]
    ranks = np.broadcast_to(np.arange(1.0, n + 1.0), (n_genes, n)).copy()
    members = np.repeat(tie_starts - np.cumsum(tie_sizes) + tie_sizes, tie_sizes) + np.arange(tie_sizes.sum())
    ranks.reshape(-1)[members] = np.repeat(tie_starts % n + (tie_sizes + 1) * 0.5, tie_sizes)
    rank_sum = np.where(order < n_test, ranks, 0.0).sum(axis=1)
    t = tie_sizes.astype(np.float64)
    tie_term = np.bincount(tie_starts // n, weights=t**3 - t, minlength=n_genes)
    return rank_sum, tie_term


def mannwhitney_block(x: np.ndarray, n_test: int) -> np.ndarray:
    """Mann-Whitney U test of the first ``n_test`` rows against the rest, for every column.

    Parameters
    ----------
    x
        Dims (sample, gene), float64: test-group rows first, then reference rows.
    n_test
        Number of test-group rows (``n1``).

    A column holding NaN gets NaN statistic and p-value (scipy's ``nan_policy="propagate"``).

    Returns
    -------
    numpy.ndarray
        Dims (4, gene): ``U1`` (scipy's statistic, for the test group), two-sided p-value, mean of
        the test group, mean of the reference group.
    """
    n1 = float(n_test)
    n2 = float(x.shape[0] - n_test)
    n = n1 + n2
    r1, tie_term = rank_sum_and_ties(x, n_test)
    u1 = r1 - n1 * (n1 + 1) / 2
    u = np.maximum(u1, n1 * n2 - u1)
    sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - n1 * n2 / 2 - 0.5) / sigma
    p = np.clip(special.ndtr(-z) * 2, 0.0, 1.0)
    has_nan = np.isnan(x).any(axis=0)
    u1[has_nan] = np.nan
    p[has_nan] = np.nan
    return np.stack([u1, p, x[:n_test].mean(axis=0), x[n_test:].mean(axis=0)])


def run_mannwhitney(
    ds: xr.Dataset,
    contrast: Contrast,
    *,
    layer: str = "cpm",
    gene_block: int = 2048,
    parallel: int | None = None,
    progress: Progress | None = None,
) -> xr.Dataset:
    """Mann-Whitney U test per gene for one contrast, with BH FDR across all genes.

    Parameters
    ----------
    ds
        A store Dataset (lazy).
    contrast
        The two sample groups (:mod:`gexplain.pipelines.de.contrasts`).
    layer
        Layer tested (linear units: ``counts``, ``cpm``, ``tpm``, ``norm_counts``; or
        ``log_expr``, whose fold changes are computed on ``2**x - 1``).
    gene_block
        Upper bound on genes per block.
    parallel
        Gene blocks computed at once.
    progress
        Progress reporting.

    Returns
    -------
    xarray.Dataset
        Over ``gene``: ``baseMean`` (mean over the contrast's samples, layer units),
        ``log2FoldChange`` (log2 of mean test / mean reference), ``lfcSE`` (NaN), ``stat`` (U of
        the test group), ``pvalue``, ``padj`` (BH); see :func:`gexplain.pipelines.de.output.result_dataset`.
    """
    x = layer_array(ds, layer).data
    rows = np.concatenate([contrast.test_index, contrast.ref_index])
    n_test = contrast.test_index.size
    stats = map_gene_blocks(
        x,
        rows,
        lambda block: _mannwhitney_with_means(block, n_test, log_layer=layer == "log_expr"),
        4,
        gene_block=gene_block,
        parallel=parallel,
        progress=progress,
        description=f"mannwhitney {contrast.name}",
    )
    u1, p, mean_test, mean_ref = stats
    n_ref = contrast.ref_index.size
    base_mean = (mean_test * n_test + mean_ref * n_ref) / (n_test + n_ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        lfc = np.log2(mean_test) - np.log2(mean_ref)
    return result_dataset(
        ds,
        base_mean=base_mean,
        log2_fold_change=lfc,
        lfc_se=np.full_like(p, np.nan),
        stat=u1,
        pvalue=p,
        padj=benjamini_hochberg(p),
        method="mannwhitney",
        contrast=contrast,
        layer=layer,
    )


def _mannwhitney_with_means(block: np.ndarray, n_test: int, *, log_layer: bool) -> np.ndarray:
    """:func:`mannwhitney_block`, with group means taken on the linear scale."""
    res = mannwhitney_block(block, n_test)
    if log_layer:
        linear = np.exp2(block) - 1.0
        res[2] = linear[:n_test].mean(axis=0)
        res[3] = linear[n_test:].mean(axis=0)
    return res
