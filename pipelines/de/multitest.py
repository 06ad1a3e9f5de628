"""Multiple-testing correction."""

from __future__ import annotations

import numpy as np
from scipy.stats import false_discovery_control


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (FDR) over the non-NaN p-values (R's ``p.adjust(p, "BH")``).

    Parameters
    ----------
    pvalues
        Dims (gene,), p-values in [0, 1]; NaN for untested genes.

    Returns
    -------
    numpy.ndarray
        Dims (gene,), float64: :func:`scipy.stats.false_discovery_control` (``method="bh"``) of
        the non-NaN p-values (their count is the number of tests); NaN where the input is NaN.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        out[tested] = false_discovery_control(p[tested], method="bh")
    return out
