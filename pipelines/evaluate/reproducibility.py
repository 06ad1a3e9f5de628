"""Reproducibility of attributions between replicate runs (Zhao et al. protocol).

Two runs that differ only by seed (or by model replicate) should give each sample the same gene
ranking. Per sample we measure the Spearman correlation of the two runs' gene scores and the
overlap of their top-k genes, then summarise per class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from gexplain.storage.errors import InputError
from scipy.stats import rankdata


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise InputError(
            f"attribution matrices must both be (sample, gene) with the same shape; got {a.shape} and {b.shape}"
        )
    return a, b


def per_sample_spearman(a: np.ndarray, b: np.ndarray, *, absolute: bool = True) -> np.ndarray:
    """Spearman correlation of the gene scores of each sample between two runs.

    Parameters
    ----------
    a, b
        Attributions of shape (sample, gene), same samples and genes in the same order.
    absolute
        Rank genes by absolute attribution (the magnitude of a gene's contribution).

    Returns
    -------
    numpy.ndarray
        Shape (sample,), float64 in [-1, 1]; NaN for a sample whose scores are constant in a run.
    """
    a, b = _check_pair(a, b)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    num = (ra * rb).sum(axis=1)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def top_k_indices(scores: np.ndarray, k: int, *, absolute: bool = True, largest: bool = True) -> np.ndarray:
    """Indices of the k highest (or lowest) scoring genes of each sample.

    Ties are broken by gene index (lower index first), so the result is deterministic.

    Parameters
    ----------
    scores
        Shape (sample, gene).
    k
        Number of genes, 1 <= k <= genes.
    absolute
        Rank by absolute score.
    largest
        True for the top-k, False for the bottom-k.

    Returns
    -------
    numpy.ndarray
        Shape (sample, k), int64 gene indices ordered from most to least extreme.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[None, :]
    n_genes = s.shape[1]
    if not 1 <= k <= n_genes:
        raise InputError(f"k={k} must be between 1 and the number of genes ({n_genes}); lower option k")
    if absolute:
        s = np.abs(s)
    key = -s if largest else s
    key = np.where(np.isnan(key), np.inf, key)  # NaN scores rank last
    if k == n_genes:
        return np.argsort(key, axis=1, kind="stable")
    # select in linear time: every gene strictly before the k-th key, then ties in gene order
    kth = np.partition(key, k - 1, axis=1)[:, k - 1 : k]
    before = key < kth
    ties = key == kth
    need = k - before.sum(axis=1, keepdims=True)
    chosen = before | (ties & (np.cumsum(ties, axis=1) <= need))
    idx = np.nonzero(chosen)[1].reshape(s.shape[0], k)
    rows = np.arange(s.shape[0])[:, None]
    return idx[rows, np.argsort(key[rows, idx], axis=1, kind="stable")]


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = 100, *, absolute: bool = True) -> np.ndarray:
    """Fraction of each sample's top-k genes shared between two runs.

    Parameters
    ----------
    a, b
        Attributions of shape (sample, gene).
    k
        Size of the top set (default 100, as in Zhao et al.).
    absolute
        Rank by absolute attribution.

    Returns
    -------
    numpy.ndarray
        Shape (sample,), float64 in [0, 1]: ``|top_k(a) ∩ top_k(b)| / k``.
    """
    a, b = _check_pair(a, b)
    ta = top_k_indices(a, k, absolute=absolute)
    tb = top_k_indices(b, k, absolute=absolute)
    rows = np.arange(a.shape[0])[:, None]
    ma = np.zeros(a.shape, dtype=bool)
    mb = np.zeros(a.shape, dtype=bool)
    ma[rows, ta] = True
    mb[rows, tb] = True
    return (ma & mb).sum(axis=1) / float(k)


def summarise_per_class(per_sample: pd.DataFrame, label_col: str = "label") -> pd.DataFrame:
    """Summarise per-sample metrics per class (and overall).

    Parameters
    ----------
    per_sample
        One row per sample with a ``label_col`` column and numeric metric columns.
    label_col
        Name of the class column.

    Returns
    -------
    pandas.DataFrame
        One row per class plus ``"all"``: ``n`` samples and mean, median and standard deviation of
        every metric (columns ``<metric>_mean``, ``<metric>_median``, ``<metric>_sd``).
    """
    metrics = [
        c for c in per_sample.columns if c != label_col and pd.api.types.is_numeric_dtype(per_sample[c])
    ]
    rows = []
    groups = [(str(c), g) for c, g in per_sample.groupby(label_col, sort=True)] + [("all", per_sample)]
    for cls, g in groups:
        row: dict[str, object] = {label_col: cls, "n": len(g)}
        for m in metrics:
            vals = g[m].to_numpy(dtype=np.float64)
            row[f"{m}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
            row[f"{m}_median"] = float(np.nanmedian(vals)) if np.isfinite(vals).any() else np.nan
            row[f"{m}_sd"] = float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def compare_runs(
    a: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray,
    samples: np.ndarray,
    *,
    k: int = 100,
    absolute: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-sample reproducibility of two runs and its per-class summary.

    Parameters
    ----------
    a, b
        Attributions (sample, gene) of the two runs, aligned.
    labels
        Class of each sample, shape (sample,).
    samples
        Sample ids, shape (sample,).
    k
        Top-k size.
    absolute
        Rank by absolute attribution.

    Returns
    -------
    per_sample, per_class
        ``per_sample`` columns: sample, label, spearman, top_k_overlap; ``per_class`` from
        :func:`summarise_per_class`.
    """
    per_sample = pd.DataFrame(
        {
            "sample": np.asarray(samples).astype(str),
            "label": np.asarray(labels).astype(str),
            "spearman": per_sample_spearman(a, b, absolute=absolute),
            "top_k_overlap": top_k_overlap(a, b, k, absolute=absolute),
        }
    )
    return per_sample, summarise_per_class(per_sample.drop(columns="sample"))
