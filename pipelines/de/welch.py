"""Welch's unequal-variance t-test per gene on log2 expression, computed per gene block.

As ``scipy.stats.ttest_ind(x, y, equal_var=False)``: with group means ``m``, variances ``v``
(ddof 1) and sizes ``n`` of the log2 values, ``se = sqrt(v1/n1 + v2/n2)``,
``t = (m1 - m2) / se``, Welch-Satterthwaite degrees of freedom and ``p = 2 P(T_df > |t|)``.
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


def welch_block(y: np.ndarray, n_test: int) -> np.ndarray:
    """Welch's t-test of the first ``n_test`` rows against the rest, for every column.

    Parameters
    ----------
    y
        Dims (sample, gene), float64 (log2 units): test rows first, then reference rows.
    n_test
        Number of test-group rows.

    Returns
    -------
    numpy.ndarray
        Dims (4, gene): t statistic, two-sided p-value, standard error of the mean difference,
        mean difference (test - reference, log2 units).
    """
    a, b = y[:n_test], y[n_test:]
    n1, n2 = float(a.shape[0]), float(b.shape[0])
    vn1 = a.var(axis=0, ddof=1) / n1
    vn2 = b.var(axis=0, ddof=1) / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vn1 + vn2) ** 2 / (vn1**2 / (n1 - 1) + vn2**2 / (n2 - 1))
        df = np.where(np.isnan(df), 1.0, df)
        se = np.sqrt(vn1 + vn2)
        diff = a.mean(axis=0) - b.mean(axis=0)
        t = diff / se
    p = 2 * special.stdtr(df, -np.abs(t))
    return np.stack([t, p, se, diff])


def _welch_with_means(block: np.ndarray, n_test: int, *, log_layer: bool) -> np.ndarray:
    """:func:`welch_block` on log2 values plus linear-scale group means (rows 4 and 5)."""
    linear = np.exp2(block) - 1.0 if log_layer else block
    logs = block if log_layer else np.log2(block + 1.0)
    res = welch_block(logs, n_test)
    return np.concatenate([res, linear[:n_test].mean(axis=0)[None], linear[n_test:].mean(axis=0)[None]])


def run_welch(
    ds: xr.Dataset,
    contrast: Contrast,
    *,
    layer: str = "log_expr",
    gene_block: int = 2048,
    parallel: int | None = None,
    progress: Progress | None = None,
) -> xr.Dataset:
    """Welch's t-test per gene for one contrast on log2 expression, with BH FDR across genes.

    Parameters
    ----------
    ds
        A store Dataset (lazy).
    contrast
        The two sample groups.
    layer
        ``log_expr`` (tested as stored, log2 units) or a linear layer (``counts``, ``cpm``,
        ``tpm``, ``norm_counts``), tested as ``log2(x + 1)``.
    gene_block, parallel, progress
        As in :func:`gexplain.pipelines.de.blockwise.map_gene_blocks`.

    Returns
    -------
    xarray.Dataset
        Over ``gene``: ``baseMean`` (mean over the contrast's samples, linear layer units),
        ``log2FoldChange`` (difference of mean log2 values), ``lfcSE`` (its Welch standard
        error), ``stat`` (t), ``pvalue``, ``padj`` (BH).
    """
    x = layer_array(ds, layer).data
    rows = np.concatenate([contrast.test_index, contrast.ref_index])
    n_test = contrast.test_index.size
    n_ref = contrast.ref_index.size
    t, p, se, diff, mean_test, mean_ref = map_gene_blocks(
        x,
        rows,
        lambda block: _welch_with_means(block, n_test, log_layer=layer == "log_expr"),
        6,
        gene_block=gene_block,
        parallel=parallel,
        progress=progress,
        description=f"welch {contrast.name}",
    )
    return result_dataset(
        ds,
        base_mean=(mean_test * n_test + mean_ref * n_ref) / (n_test + n_ref),
        log2_fold_change=diff,
        lfc_se=se,
        stat=t,
        pvalue=p,
        padj=benjamini_hochberg(p),
        method="welch",
        contrast=contrast,
        layer=layer,
    )
