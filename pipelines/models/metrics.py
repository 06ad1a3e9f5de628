"""Classification metrics: overall and per-class accuracy, macro-F1, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (classes, classes): row = true class, column = predicted class, counts."""
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return out


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray | list[str]
) -> dict[str, Any]:
    """Metrics of integer predictions.

    Parameters
    ----------
    y_true, y_pred
        Class indices, shape (sample,).
    classes
        Class names; index = class id.

    Returns
    -------
    dict
        ``accuracy`` (fraction correct), ``macro_f1`` (unweighted mean of per-class F1 over classes
        present in ``y_true`` or ``y_pred``; F1 = 0 where precision + recall = 0), ``per_class_accuracy``
        {class: recall, NaN-free: classes absent from ``y_true`` are omitted}, ``per_class_f1``,
        ``confusion`` (nested lists, rows = true), ``n`` (samples).
    """
    names = [str(c) for c in classes]
    cm = confusion(y_true, y_pred, len(names))
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class_accuracy": {
            names[c]: float(tp[c] / support[c]) for c in range(len(names)) if support[c] > 0
        },
        "per_class_f1": {names[c]: float(f1[c]) for c in range(len(names)) if present[c]},
        "confusion": cm.tolist(),
    }
