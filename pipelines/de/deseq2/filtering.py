"""Independent filtering on the mean count and Benjamini-Hochberg adjustment (global steps)."""

from __future__ import annotations

import numpy as np
from gexplain.pipelines.de.multitest import benjamini_hochberg
from pydeseq2.utils import lowess


def independent_filtering(base_mean: np.ndarray, pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """DESeq2's independent filtering: BH over genes above the mean-count cutoff that maximises
    (a lowess fit of) the number of rejections at ``alpha``.

    Parameters
    ----------
    base_mean
        Mean normalised count per gene, dims (gene,).
    pvalues
        Wald p-values (NaN for untested genes), dims (gene,).
    alpha
        Target FDR.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, NaN for filtered genes, dims (gene,).
    """
    lower = float(np.mean(base_mean == 0))
    upper = 0.95 if lower < 0.95 else 1.0
    theta = np.linspace(lower, upper, 50)
    cutoffs = np.quantile(base_mean, theta)
    result = np.full((base_mean.size, theta.size), np.nan)
    for i, cutoff in enumerate(cutoffs):
        use = base_mean >= cutoff
        if use.any():
            result[use, i] = benjamini_hochberg(pvalues[use])
    num_rej = (result < alpha).sum(axis=0).astype(int)
    fit = lowess(theta, num_rej, frac=1 / 5)
    j = 0
    if num_rej.max() > 10:
        residual = num_rej[num_rej > 0] - fit[num_rej > 0]
        thresh = fit.max() - np.sqrt(np.mean(residual**2))
        if np.any(num_rej > thresh):
            j = int(np.flatnonzero(num_rej > thresh)[0])
    return result[:, j]
