"""DESeq2's global dispersion steps as R computes them: the parametric trend and the prior variance.

* :func:`parametric_trend` — ``parametricDispersionFit``: from ``(a0, a1) = (0.1, 1)``, refit
  ``disp ~ a0 + a1 / mean`` as a Gamma GLM with identity link (R's ``glm.fit``: IRLS, deviance
  convergence ``1e-8``, 25 iterations, step halving into the valid region) on the genes whose
  ratio to the current curve lies in ``(1e-4, 15)``, until ``sum(log(new / old)^2) < 1e-6`` and
  the GLM converged; at most 11 refits; both coefficients must stay positive. The genes are
  those with gene-wise dispersion ``> 100 * minDisp`` (``estimateDispersionsFit``).
* :func:`prior_variance` — ``estimateDispersionsPriorVar``: ``max(mad^2 - trigamma((m - p) / 2),
  0.25)`` of the log residuals (``mad`` with R's constant 1.4826, genes with gene-wise dispersion
  ``>= 100 * minDisp``), or, when ``m - p <= 3``, R's simulation: the variance on a 200-point
  grid in ``[0, 8]`` whose simulated residual histogram (``log(chisq_{m-p} / (m - p)) +
  N(0, var)``, 1e4 draws per point after ``set.seed(2)``) is closest in Kullback-Leibler
  divergence to the observed one, smoothed by ``loess(span = 0.2)`` and minimised on a
  1000-point grid. The draws are R's own (:mod:`rrandom`) and the smoother is R's loess with its
  k-d tree interpolation (:func:`loess`), so the result equals R's (what cannot be bit-identical
  is floating-point rounding in ``log``/``qnorm``: the draws agree with R to ~1e-14, far below
  what moves a histogram count, ``tests/test_deseq2_r_parity.py``).
"""

from __future__ import annotations

import numpy as np
from gexplain.pipelines.de.deseq2 import rrandom
from scipy.special import polygamma

MAD_CONSTANT = 1.4826  # R's mad()
GLM_EPSILON = 1e-8
GLM_MAXIT = 25


class TrendFitError(RuntimeError):
    """The parametric trend did not fit (R then falls back to another fit type)."""


def _gamma_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    return float(np.sum(-2.0 * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)))


def gamma_identity_glm(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, bool]:
    """R's ``glm.fit(x, y, family = Gamma("identity"), start = start)``: coefficients and ``converged``.

    Parameters
    ----------
    x
        Design, dims (observation, coefficient).
    y
        Positive responses, dims (observation,).
    start
        Starting coefficients, dims (coefficient,).
    """
    coef = np.asarray(start, dtype=np.float64).copy()
    coefold = coef.copy()
    mu = x @ coef
    if not (np.isfinite(mu).all() and (mu > 0).all()):
        raise TrendFitError("cannot find valid starting values")
    devold = _gamma_deviance(y, mu)
    for _ in range(GLM_MAXIT):
        w = 1.0 / mu  # sqrt(1 / variance) with variance mu^2 and d mu / d eta = 1
        z = mu + (y - mu)  # eta + (y - mu) / mu.eta
        start_new = np.linalg.lstsq(x * w[:, None], z * w, rcond=None)[0]
        mu = x @ start_new
        dev = _gamma_deviance(y, mu) if (mu > 0).all() else np.nan
        halvings = 0
        while not np.isfinite(dev) or not (np.isfinite(mu).all() and (mu > 0).all()):
            halvings += 1
            if halvings > GLM_MAXIT:
                raise TrendFitError("inner loop; cannot correct step size")
            start_new = (start_new + coefold) / 2
            mu = x @ start_new
            dev = _gamma_deviance(y, mu) if (mu > 0).all() else np.nan
        if abs(dev - devold) / (abs(dev) + 0.1) < GLM_EPSILON:
            return start_new, True
        devold, coef, coefold = dev, start_new, start_new
    return coef, False


def parametric_trend(means: np.ndarray, disps: np.ndarray) -> tuple[float, float]:
    """``parametricDispersionFit``: ``(asymptDisp, extraPois)`` of ``disp = a0 + a1 / mean``.

    Parameters
    ----------
    means, disps
        Mean normalised counts and gene-wise dispersions of the genes used for the fit, dims (gene,).

    Raises
    ------
    TrendFitError
        A coefficient not positive, or no convergence within 11 refits (R: an error, after which
        ``estimateDispersionsFit`` substitutes another fit type).
    """
    coefs = np.array([0.1, 1.0])
    for _ in range(11):
        residuals = disps / (coefs[0] + coefs[1] / means)
        good = (residuals > 1e-4) & (residuals < 15)
        x = np.column_stack([np.ones(int(good.sum())), 1.0 / means[good]])
        new, converged = gamma_identity_glm(x, disps[good], coefs)
        old, coefs = coefs, new
        if not (coefs > 0).all():
            raise TrendFitError("parametric dispersion fit failed")
        if np.sum(np.log(coefs / old) ** 2) < 1e-6 and converged:
            return float(coefs[0]), float(coefs[1])
    raise TrendFitError("dispersion fit did not converge")


def mad(x: np.ndarray) -> float:
    """R's ``mad(x)``: ``1.4826 * median(|x - median(x)|)``."""
    return float(MAD_CONSTANT * np.median(np.abs(x - np.median(x))))


def _histogram_density(values: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """R's ``hist(values, breaks, plot = FALSE)$density`` (right-closed bins, first bin closed)."""
    idx = np.searchsorted(breaks, values, side="left") - 1  # (b_k, b_{k+1}] -> k
    idx = np.clip(idx, 0, breaks.size - 2)
    counts = np.bincount(idx, minlength=breaks.size - 1).astype(np.float64)
    return counts / (values.size * np.diff(breaks))


def _local_fit(x: np.ndarray, y: np.ndarray, x0: float, span: float) -> tuple[float, float]:
    """Value and slope at ``x0`` of the local quadratic fit with tricube weights over the
    ``floor(span * n)`` nearest points (loess's ``ehg127``; the farthest of them has weight 0)."""
    q = int(np.floor(span * x.size))
    d2 = (x - x0) ** 2
    rho = np.partition(d2, q - 1)[q - 1]
    w = np.where(d2 < rho, (1 - np.sqrt(d2 / rho) ** 3) ** 3, 0.0)
    basis = np.column_stack([np.ones_like(x), x - x0, (x - x0) ** 2])
    sw = np.sqrt(w)
    coef = np.linalg.lstsq(basis * sw[:, None], y * sw, rcond=None)[0]
    return float(coef[0]), float(coef[1])


def loess(x: np.ndarray, y: np.ndarray, at: np.ndarray, span: float, cell: float = 0.2) -> np.ndarray:
    """R's ``predict(loess(y ~ x, span = span), at)`` for one predictor (degree 2, gaussian,
    ``surface = "interpolate"``).

    As R's loess: a k-d tree splits the sorted ``x`` at the median of each cell with more than
    ``floor(n * span * cell)`` points; the vertices are the split points and the data range
    widened by 0.5 % each side; the local fit's value and slope at each vertex are blended by
    cubic Hermite interpolation inside each cell. ``x`` must be sorted without ties.
    """
    n = x.size
    fc = int(np.floor(n * span * cell))
    lo, hi = float(x.min()), float(x.max())
    margin = 0.005 * max(hi - lo, 1e-10 * max(abs(lo), abs(hi)) + 1e-30)
    vertices = [lo - margin, hi + margin]
    cells = [(0, n - 1)]
    while cells:
        first, last = cells.pop()
        if last - first + 1 <= fc:
            continue
        mid = (first + last + 2) // 2 - 1  # Fortran's m = (l + u) / 2 on 1-based positions
        vertices.append(float(x[mid]))
        cells += [(first, mid), (mid + 1, last)]
    v = np.unique(vertices)
    fits = np.array([_local_fit(x, y, q, span) for q in v])
    k = np.clip(np.searchsorted(v, at, side="left") - 1, 0, v.size - 2)  # z <= split: lower cell
    h = v[k + 1] - v[k]
    t = (at - v[k]) / h
    return (
        (1 - t) ** 2 * (1 + 2 * t) * fits[k, 0]
        + t**2 * (3 - 2 * t) * fits[k + 1, 0]
        + (t * (1 - t) ** 2 * fits[k, 1] - t**2 * (1 - t) * fits[k + 1, 1]) * h
    )


def simulated_prior_variance(residuals: np.ndarray, df: int) -> float:
    """DESeq2's prior variance for ``m - p <= 3`` from the log residuals of the genes used (dims (gene,))."""
    breaks = np.arange(-20, 21) / 2.0
    obs = residuals[(residuals > breaks[0]) & (residuals < breaks[-1])]
    obs_density = _histogram_density(obs, breaks)
    grid = np.linspace(0.0, 8.0, 200)
    sims = rrandom.log_chisq_plus_normal(2, float(df), np.sqrt(grid), 10_000) - np.log(df)
    kl = np.empty(grid.size)
    for k, sim in enumerate(sims):
        sim = sim[(sim > breaks[0]) & (sim < breaks[-1])]
        sim_density = _histogram_density(sim, breaks)
        z = np.concatenate([obs_density, sim_density])
        small = z[z > 0].min()
        kl[k] = np.sum(obs_density * (np.log(obs_density + small) - np.log(sim_density + small)))
    fine = np.linspace(0.0, 8.0, 1000)
    smooth = loess(grid, kl, fine, 0.2)
    return float(max(fine[np.argmin(smooth)], 0.25))


def prior_variance(residuals: np.ndarray, n_samples: int, n_coefs: int) -> tuple[float, float]:
    """``(varLogDispEsts, dispPriorVar)`` from the log residuals ``log(genewise) - log(trend)`` of the
    genes with gene-wise dispersion ``>= 100 * minDisp`` (dims (gene,))."""
    var_log = mad(residuals) ** 2
    m, p = n_samples, n_coefs
    if m <= p:
        return var_log, var_log
    if m - p <= 3:
        return var_log, simulated_prior_variance(residuals, m - p)
    return var_log, float(max(var_log - polygamma(1, (m - p) / 2), 0.25))
