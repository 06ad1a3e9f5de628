"""Cook's distances, outlier count replacement and the Cook's p-value filter, per gene block."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydeseq2.utils import n_or_more_replicates, robust_method_of_moments_disp, trimmed_mean
from scipy.stats import f

MIN_REPLICATES = 7


def cooks_cutoff(n_samples: int, n_coefs: int) -> float:
    """DESeq2's outlier threshold: the 99% quantile of F(p, n - p)."""
    return float(f.ppf(0.99, n_coefs, n_samples - n_coefs))


def replicate_mask(design: pd.DataFrame, n: int) -> np.ndarray:
    """Samples whose design row (cell) occurs at least ``n`` times, dims (sample,) bool."""
    return np.asarray(n_or_more_replicates(design, n).values, dtype=bool)


def cooks_distance(
    counts: np.ndarray, normed: np.ndarray, design: pd.DataFrame, mu: np.ndarray, hat: np.ndarray
) -> np.ndarray:
    """Cook's distance of every count, dims (sample, gene).

    Parameters
    ----------
    counts, normed
        Raw and size-factor-normalised counts, dims (sample, gene).
    design
        Design matrix as a DataFrame (rows = samples), used to group replicates.
    mu, hat
        Fitted means and hat-matrix diagonals from IRLS, dims (sample, gene).
    """
    disp = robust_method_of_moments_disp(normed, design)
    pearson2 = (counts - mu) ** 2 / (mu + disp[None, :] * mu**2)
    return pearson2 / design.shape[1] * hat / (1.0 - hat) ** 2


def replace_outliers(
    counts: np.ndarray, size_factors: np.ndarray, cooks: np.ndarray, replaceable: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Replace outlier counts of replaceable samples by the trimmed mean scaled by the size factor.

    Parameters
    ----------
    counts
        Dims (sample, gene).
    size_factors
        Dims (sample,).
    cooks
        Cook's distances, dims (sample, gene).
    replaceable
        Samples in cells with >= ``MIN_REPLICATES`` replicates, dims (sample,).
    cutoff
        Cook's threshold.

    Returns
    -------
    replaced
        Genes with any Cook's distance above ``cutoff`` (to refit), dims (gene,) bool.
    new_counts
        Counts of those genes after replacement, dims (sample, replaced gene).
    """
    if not replaceable.any():
        return np.zeros(counts.shape[1], dtype=bool), counts[:, :0]
    above = cooks > cutoff
    replaced = above.any(axis=0)
    sub = counts[:, replaced].copy()
    trimmed = np.asarray(trimmed_mean(sub / size_factors[:, None], trim=0.2, axis=0))
    replacement = (trimmed[None, :] * size_factors[:, None]).astype(int)
    mask = replaceable[:, None] & above[:, replaced]
    sub[mask] = replacement[mask]
    return replaced, sub


def cooks_outliers(
    counts: np.ndarray,
    cooks: np.ndarray,
    refitted: np.ndarray,
    replaceable: np.ndarray,
    use_for_max: np.ndarray,
    cutoff: float,
) -> np.ndarray:
    """Genes whose p-value is dropped for a Cook's outlier, dims (gene,) bool.

    A gene is flagged when a sample of a cell with >= 3 replicates exceeds ``cutoff`` (ignoring
    replaceable samples of refitted genes) and fewer than 3 samples have more counts than the
    sample with the largest Cook's distance.
    """
    test = np.where(refitted[None, :] & replaceable[:, None], 0.0, cooks)
    with np.errstate(invalid="ignore"):
        flagged = (test[use_for_max] > cutoff).any(axis=0)
    idx = np.flatnonzero(flagged)
    if idx.size:
        pos = np.nanargmax(cooks[:, idx], axis=0)
        top = counts[pos, idx]
        flagged[idx] = (counts[:, idx] > top[None, :]).sum(axis=0) < 3
    return flagged
