"""limma's ``squeezeVar`` / ``fitFDist`` with a natural-spline abundance covariate (not robust).

The scaled-F prior of the gene-wise variances ``s2 ~ s0^2 F(df1, df2)``: ``log s2`` corrected by
``digamma(df1/2) - log(df1/2)`` is regressed on a natural cubic spline of the covariate
(``splines::ns(covariate, df, intercept = TRUE)``, df 1-4 by the number of genes), the
residual variance less ``mean(trigamma(df1/2))`` gives ``df2`` through the inverse trigamma,
and posterior variances are ``(df1 s2 + df2 s0^2) / (df1 + df2)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, polygamma


def trigamma_inverse(x: float) -> float:
    """limma's ``trigammaInverse``: ``y`` with ``trigamma(y) = x`` (Newton, relative tol 1e-8)."""
    if x > 1e7:
        return 1 / np.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        tri = float(polygamma(1, y))
        dif = tri * (1 - tri / x) / float(polygamma(2, y))
        y += dif
        if -dif / y < 1e-8:
            break
    return y


def natural_spline_basis(x: np.ndarray, fit_x: np.ndarray, df: int) -> np.ndarray:
    """A basis of ``ns(fit_x, df, intercept = TRUE)``'s space evaluated at ``x``, dims (gene, df).

    Knots as R's ``ns``: the range of ``fit_x`` and ``df - 2`` interior knots at its quantiles
    (type 7). The truncated-power natural basis spans the same functions as R's B-spline
    basis (linear beyond the boundary knots), so fitted values and residuals are equal.
    """
    lo, hi = float(fit_x.min()), float(fit_x.max())
    inner = np.quantile(fit_x, np.linspace(0, 1, df)[1:-1]) if df > 2 else np.empty(0)
    knots = np.concatenate([[lo], inner, [hi]])
    scale = hi - lo if hi > lo else 1.0
    t = (x - lo) / scale
    k = (knots - lo) / scale
    cols = [np.ones_like(t), t]

    def dk(j: int) -> np.ndarray:
        return (np.maximum(t - k[j], 0) ** 3 - np.maximum(t - k[-1], 0) ** 3) / (k[-1] - k[j])

    last = dk(len(k) - 2)
    cols += [dk(j) - last for j in range(len(k) - 2)]
    return np.stack(cols, axis=1)


def fit_f_dist(x: np.ndarray, df1: np.ndarray, covariate: np.ndarray) -> tuple[np.ndarray, float]:
    """``fitFDist(x, df1, covariate)``: the prior scale per gene and the prior df.

    Parameters
    ----------
    x
        Gene-wise variances, dims (gene,).
    df1
        Their residual df, dims (gene,).
    covariate
        Abundance (AveLogCPM), dims (gene,), finite.

    Returns
    -------
    tuple
        ``s0^2`` dims (gene,) and ``df2`` (may be inf).
    """
    n = x.size
    ok = np.isfinite(df1) & (df1 > 1e-15) & np.isfinite(x) & (x > -1e-15)
    nok = int(ok.sum())
    if nok == 1:
        return np.full(n, x[ok][0]), 0.0
    xo, d1, co = np.maximum(x[ok], 0), df1[ok], covariate[ok]
    spline_df = min(1 + (nok >= 3) + (nok >= 6) + (nok >= 30), np.unique(co).size)
    m = float(np.median(xo))
    m = 1.0 if m == 0 else m
    z = np.log(np.maximum(xo, 1e-5 * m))
    e = z - digamma(d1 / 2) + np.log(d1 / 2)
    if spline_df < 2:
        emean_ok = np.full(nok, e.mean())
        evar = float(((e - e.mean()) ** 2).sum() / (nok - 1))
        emean = np.full(n, e.mean())
    else:
        basis = natural_spline_basis(co, co, spline_df)
        coef, *_ = np.linalg.lstsq(basis, e, rcond=None)
        emean_ok = basis @ coef
        rank = np.linalg.matrix_rank(basis)
        evar = float(((e - emean_ok) ** 2).sum() / (nok - rank))
        emean = natural_spline_basis(covariate, co, spline_df) @ coef
        emean[ok] = emean_ok
    evar -= float(np.mean(polygamma(1, d1 / 2)))
    if evar > 0:
        df2 = 2 * trigamma_inverse(evar)
        return np.exp(emean + digamma(df2 / 2) - np.log(df2 / 2)), df2
    if spline_df < 2:
        return np.full(n, xo.mean()), np.inf
    return np.exp(emean), np.inf


def squeeze_var(
    var: np.ndarray, df: np.ndarray, covariate: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """``squeezeVar(var, df, covariate)``: prior df, prior variances and posterior variances.

    Returns
    -------
    tuple
        ``df.prior`` (float, may be inf), ``var.prior`` and ``var.post`` (gene,).
    """
    var = np.where(df == 0, 0.0, var)
    prior, df_prior = fit_f_dist(var, df.astype(np.float64), covariate)
    if np.isinf(df_prior):
        return df_prior, prior, prior.copy()
    return df_prior, prior, (df * var + df_prior * prior) / (df + df_prior)
