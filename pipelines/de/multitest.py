"""Multiple-testing correction."""

from __future__ import annotations

import numpy as np


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (FDR), ignoring NaN p-values.

    Parameters
    ----------
    pvalues
        Dims (gene,), p-values in [0, 1]; NaN for untested genes.

    Returns
    -------
    numpy.ndarray
        Dims (gene,), float64: ``min over j >= i of p_(j) * m / j`` capped at 1, where ``m`` is
        the number of non-NaN p-values; NaN where the input is NaN.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = tested.size
    if m == 0:
        return out
    order = np.argsort(p[tested], kind="stable")
    ranked = p[tested][order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    out[tested[order]] = adjusted
    return out
