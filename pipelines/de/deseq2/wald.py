"""Wald test of a contrast of GLM coefficients, vectorised over a gene block."""

from __future__ import annotations

import numpy as np
from gexplain.pipelines.de.deseq2.irls import RIDGE, weighted_gram
from scipy.stats import norm


def wald_test(
    design: np.ndarray, size_factors: np.ndarray, beta: np.ndarray, disp: np.ndarray, contrast: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided Wald test of ``contrast @ beta = 0`` per gene.

    Parameters
    ----------
    design
        Dims (sample, coefficient).
    size_factors
        Dims (sample,).
    beta
        Coefficients in natural-log units, dims (gene, coefficient).
    disp
        Dispersions, dims (gene,).
    contrast
        Contrast weights, dims (coefficient,).

    Returns
    -------
    lfc
        ``contrast @ beta``, natural-log units, dims (gene,).
    se
        Standard error of ``lfc``, natural-log units, dims (gene,).
    stat, pvalue
        Wald statistic and two-sided normal p-value, dims (gene,).
    """
    mu = np.exp(design @ beta.T) * size_factors[:, None]
    w = mu / (1.0 + mu * disp[None, :])
    m = weighted_gram(design, w)
    h = np.linalg.inv(m + RIDGE * np.eye(design.shape[1]))
    hc = h @ contrast
    se = np.sqrt(np.einsum("gi,gij,gj->g", hc, m, hc))
    lfc = beta @ contrast
    stat = lfc / se
    return lfc, se, stat, 2.0 * norm.sf(np.abs(stat))
