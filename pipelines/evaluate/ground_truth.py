"""Ground-truth recovery: how well gene rankings find the simulator's informative genes.

A ranking (attribution importance or DE evidence) is scored against ``truth_informative``:
precision and recall at k, AUROC and AUPRC (average precision). The linear and the non-linear
informative genes are scored separately: for the "linear" subset the positives are the linear
informative genes and the negatives the non-informative ones (non-linear genes are left out), and
vice versa, so each number answers "does this method find genes of this kind".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.storage.errors import InputError
from sklearn.metrics import average_precision_score, roc_auc_score

MODES = ("linear", "nonlinear")


def auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``; tied scores count one half).

    Parameters
    ----------
    scores
        Shape (gene,), higher = more likely informative.
    truth
        Shape (gene,), bool.

    Returns
    -------
    float
        In [0, 1]; NaN when only one class is present.
    """
    t = np.asarray(truth, dtype=bool)
    if t.all() or not t.any():
        return float("nan")
    return float(roc_auc_score(t, np.asarray(scores, dtype=np.float64)))


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn's
    ``average_precision_score``: ``AP = sum_n (R_n - R_{n-1}) P_n`` over decreasing distinct score
    thresholds, tied scores entering together, no interpolation).

    Parameters
    ----------
    scores
        Shape (gene,), higher = more likely informative.
    truth
        Shape (gene,), bool.

    Returns
    -------
    float
        In [0, 1]; NaN when there is no positive.
    """
    t = np.asarray(truth, dtype=bool)
    if not t.any():
        return float("nan")
    return float(average_precision_score(t, np.asarray(scores, dtype=np.float64)))


def precision_recall_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> tuple[float, float]:
    """Precision and recall of the k top-scoring genes (ties broken by gene order).

    Parameters
    ----------
    scores
        Shape (gene,).
    truth
        Shape (gene,), bool.
    k
        Number of genes called, 1 <= k <= genes.

    Returns
    -------
    precision, recall
        Fractions; recall is NaN when there is no positive.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    if not 1 <= k <= s.size:
        raise InputError(f"k={k} must be between 1 and the number of genes ({s.size}); lower option k")
    top = np.argsort(-s, kind="stable")[:k]
    hits = int(t[top].sum())
    n_pos = int(t.sum())
    return hits / k, (hits / n_pos if n_pos else float("nan"))


def ranking_metrics(scores: np.ndarray, truth: np.ndarray, k: int) -> dict[str, float]:
    """Precision@k, recall@k, AUROC and AUPRC of one gene ranking.

    Parameters
    ----------
    scores, truth
        Shape (gene,); non-finite scores rank last.
    k
        Top-k size (clipped to the number of genes).
    """
    s = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(s)
    if not finite.all():
        s = np.where(finite, s, s[finite].min() - 1.0 if finite.any() else 0.0)
    p, r = precision_recall_at_k(s, truth, min(k, s.size))
    return {
        "n_positive": int(np.asarray(truth, dtype=bool).sum()),
        "precision_at_k": p,
        "recall_at_k": r,
        "auroc": auroc(s, truth),
        "auprc": average_precision(s, truth),
    }


def subsets(
    truth_informative: np.ndarray, truth_mode: np.ndarray | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Gene subsets to score: all informative genes, and each mode against the non-informative genes.

    Parameters
    ----------
    truth_informative
        Shape (gene,), bool.
    truth_mode
        Shape (gene,), "none" / "linear" / "nonlinear", or None.

    Returns
    -------
    dict
        Subset name -> (gene mask of genes scored, truth restricted to those genes).
    """
    inf = np.asarray(truth_informative, dtype=bool)
    out = {"all": (np.ones(inf.size, dtype=bool), inf)}
    if truth_mode is not None:
        mode = np.asarray(truth_mode).astype(str)
        for m in MODES:
            pos = inf & (mode == m)
            if pos.any():
                keep = pos | ~inf
                out[m] = (keep, pos[keep])
    return out


def attribution_importance(attr: xr.DataArray | np.ndarray) -> np.ndarray:
    """Global gene importance: mean absolute attribution over samples.

    Parameters
    ----------
    attr
        (sample, gene) attributions (dask-backed is fine: reduced chunkwise).

    Returns
    -------
    numpy.ndarray
        Shape (gene,), float64.
    """
    if isinstance(attr, xr.DataArray):
        return np.asarray(abs(attr).mean("sample").values, dtype=np.float64)
    return np.abs(np.asarray(attr, dtype=np.float64)).mean(axis=0)


def de_evidence(de: xr.Dataset) -> np.ndarray:
    """DE ranking score of each gene: -log10(p-value) (NaN p-values rank last).

    Parameters
    ----------
    de
        A DE result Dataset over ``gene`` with ``pvalue``.
    """
    p = np.asarray(de["pvalue"].values, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -np.log10(np.clip(p, 1e-300, 1.0))


def score_source(
    source: str,
    scores: np.ndarray,
    truth_informative: np.ndarray,
    truth_mode: np.ndarray | None,
    k: int,
    called: np.ndarray | None = None,
) -> list[dict[str, object]]:
    """Rows of the ground-truth table for one ranking.

    Parameters
    ----------
    source
        Name of the ranking (e.g. ``"explain/run:integrated_gradients"`` or ``"de/welch/x_B_vs_A"``).
    scores
        Shape (gene,).
    truth_informative, truth_mode
        Ground truth along genes.
    k
        Top-k size.
    called
        Optional (gene,) bool: genes the method itself calls significant (DE at padj < alpha);
        adds ``n_called`` and ``n_called_true`` (informative genes among those called).
    """
    rows: list[dict[str, object]] = []
    for name, (keep, truth) in subsets(truth_informative, truth_mode).items():
        row: dict[str, object] = {"source": source, "subset": name, "k": k}
        row.update(ranking_metrics(np.asarray(scores)[keep], truth, k))
        if called is not None:
            c = np.asarray(called, dtype=bool)[keep]
            row["n_called"] = int(c.sum())
            row["n_called_true"] = int((c & truth).sum())
        rows.append(row)
    return rows


def ground_truth_table(
    truth_informative: np.ndarray,
    truth_mode: np.ndarray | None,
    attributions: dict[str, np.ndarray],
    de_results: dict[str, xr.Dataset],
    *,
    k: int = 100,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Ground-truth metrics of every attribution and every DE result on one store.

    Parameters
    ----------
    truth_informative, truth_mode
        Ground truth, shape (gene,).
    attributions
        Name -> global importance (gene,) (:func:`attribution_importance`).
    de_results
        Name -> DE Dataset (``pvalue``, ``padj``) over the same genes.
    k
        Top-k size.
    alpha
        DE significance level on ``padj``.

    Returns
    -------
    pandas.DataFrame
        Columns source, kind (attribution / de), subset, k, n_positive, precision_at_k, recall_at_k,
        auroc, auprc, n_called, n_called_true (the last two for DE only).
    """
    rows: list[dict[str, object]] = []
    for name, imp in attributions.items():
        rows += [
            {**r, "kind": "attribution"} for r in score_source(name, imp, truth_informative, truth_mode, k)
        ]
    for name, de in de_results.items():
        padj = np.asarray(de["padj"].values, dtype=np.float64)
        called = np.nan_to_num(padj, nan=1.0) < alpha
        rows += [
            {**r, "kind": "de"}
            for r in score_source(name, de_evidence(de), truth_informative, truth_mode, k, called)
        ]
    cols = [
        "source", "kind", "subset", "k", "n_positive", "precision_at_k", "recall_at_k", "auroc", "auprc",
        "n_called", "n_called_true",
    ]  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=cols)
