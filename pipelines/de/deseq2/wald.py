"""Wald test of a contrast of GLM coefficients, vectorised over a gene block."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def wald_test(
    beta: np.ndarray, cov: np.ndarray, contrast: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided Wald test of ``contrast @ beta = 0`` per gene (R DESeq2's ``nbinomWaldTest``).

    Parameters
    ----------
    beta
        Coefficients in natural-log units, dims (gene, coefficient).
    cov
        Their covariance from the IRLS fit (:func:`gexplain.pipelines.de.deseq2.irls.irls`),
        dims (gene, coefficient, coefficient).
    contrast
        Contrast weights, dims (coefficient,).

    Returns
    -------
    lfc
        ``contrast @ beta``, natural-log units, dims (gene,).
    se
        ``sqrt(contrast' cov contrast)``, natural-log units, dims (gene,).
    stat, pvalue
        Wald statistic and two-sided normal p-value, dims (gene,).
    """
    se = np.sqrt(np.maximum(np.einsum("i,gij,j->g", contrast, cov, contrast), 0.0))
    lfc = beta @ contrast
    stat = lfc / se
    return lfc, se, stat, 2.0 * norm.sf(np.abs(stat))
