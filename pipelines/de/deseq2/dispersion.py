"""DESeq2 dispersions as R DESeq2 1.38 computes them: rough and gene-wise estimates, the trend
curve, its prior, MAP estimates.

Per-gene functions take one gene block (dims (sample, gene)) and are vectorised over genes: the
gene-wise and MAP fits run R's line search for all genes of the block at once
(:mod:`linesearch`), with R's convergence checks and grid fall-back. Trend and prior functions
are the global steps (:mod:`prior`): they take one value per gene over all genes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from gexplain.pipelines.de.deseq2 import prior as global_fits
from gexplain.pipelines.de.deseq2.linesearch import DispersionPosterior, fit_disp, fit_disp_grid
from scipy.linalg import lstsq
from scipy.stats import trim_mean

if TYPE_CHECKING:
    from gexplain.pipelines.de.deseq2.backends import Backend

log = logging.getLogger("gexplain.de")

MIN_DISP = 1e-8
MIN_MU = 0.5
MAXIT = 100  # line-search steps (DESeq2's maxit)
DISP_TOL = 1e-6  # DESeq2's dispTol
OUTLIER_SD = 2.0


@dataclass(frozen=True)
class Trend:
    """The fitted dispersion-mean trend.

    Attributes
    ----------
    kind
        ``"parametric"`` (``a0 + a1 / mean``) or ``"mean"`` (DESeq2's fallback: a trimmed mean).
    coeffs
        ``(a0, a1)`` for ``"parametric"``; ``(mean_disp, 0)`` for ``"mean"``.
    """

    kind: str
    coeffs: tuple[float, float]

    def __call__(self, normed_means: np.ndarray) -> np.ndarray:
        """Trend dispersion at ``normed_means`` (dims (gene,), normalised counts)."""
        a0, a1 = self.coeffs
        if self.kind == "mean":
            return np.full(np.shape(normed_means), a0)
        return a0 + a1 / np.asarray(normed_means, dtype=np.float64)


@dataclass(frozen=True)
class Prior:
    """Log-dispersion prior: ``squared_logres`` (R's ``varLogDispEsts``: MAD^2 of the log residuals)
    and its ``variance`` (R's ``dispPriorVar``)."""

    squared_logres: float
    variance: float


def max_disp(n_samples: int) -> float:
    """Upper dispersion bound ``max(10, n_samples)`` (DESeq2's ``maxDisp``)."""
    return float(max(10.0, n_samples))


def moments_dispersions(normed: np.ndarray, size_factors: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Rough starting dispersions: the smaller of the regression and moments estimates.

    Parameters
    ----------
    normed
        Normalised counts, dims (sample, gene), no all-zero gene.
    size_factors
        Dims (sample,).
    design
        Design matrix, dims (sample, coefficient).

    Returns
    -------
    numpy.ndarray
        Dims (gene,), clipped to ``[MIN_DISP, max_disp]``.
    """
    n, p = design.shape
    coef = lstsq(design, normed)[0]
    y_hat = np.maximum(design @ coef, 1.0)
    rde = np.maximum((((normed - y_hat) ** 2 - y_hat) / ((n - p) * y_hat**2)).sum(axis=0), 0.0)
    mean = normed.mean(axis=0)
    var = normed.var(axis=0, ddof=1)
    mde = np.nan_to_num((var - (1.0 / size_factors).mean() * mean) / mean**2)
    return np.clip(np.minimum(rde, mde), MIN_DISP, max_disp(n))


def linear_mu(counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Initial means from a linear fit of normalised counts (designs with one row per cell).

    Returns
    -------
    numpy.ndarray
        Dims (sample, gene), floored at ``MIN_MU``.
    """
    normed = counts / size_factors[:, None]
    coef = lstsq(design, normed)[0]
    return np.maximum(size_factors[:, None] * (design @ coef), MIN_MU)


def _grid(post: DispersionPosterior, rows: np.ndarray, n_samples: int) -> np.ndarray:
    return np.exp(fit_disp_grid(post.subset(rows), n_samples, MIN_DISP))


def genewise_dispersions(
    counts: np.ndarray, design: np.ndarray, mu: np.ndarray, alpha_init: np.ndarray, backend: Backend
) -> np.ndarray:
    """Cox-Reid adjusted dispersion MLEs (R's ``estimateDispersionsGeneEst``, one iteration).

    R's line search from ``log(alpha_init)``; a gene whose log likelihood did not increase keeps
    ``alpha_init``; a gene that needed ``maxit`` steps or stopped after one (and is above
    ``10 * MIN_DISP``) is refitted on R's grid.

    Parameters
    ----------
    counts
        Dims (sample, gene), no all-zero gene.
    design
        Dims (sample, coefficient).
    mu
        Fitted means, floored at ``MIN_MU``, dims (sample, gene).
    alpha_init
        Rough estimates (:func:`moments_dispersions`), dims (gene,).
    backend
        Evaluates the log posterior (:mod:`gexplain.pipelines.de.deseq2.backends`).

    Returns
    -------
    numpy.ndarray
        Dims (gene,), clipped to ``[MIN_DISP, max_disp]``.
    """
    upper = max_disp(counts.shape[0])
    post = backend.posterior(counts, mu, design)
    res = fit_disp(post, np.log(alpha_init), min_log_alpha=np.log(MIN_DISP / 10), tol=DISP_TOL, maxit=MAXIT)
    disp = np.minimum(np.exp(res.log_alpha), upper)
    no_increase = res.last_lp < res.initial_lp + np.abs(res.initial_lp) / 1e6
    disp[no_increase] = alpha_init[no_increase]
    refit = ~((res.iter < MAXIT) & (res.iter != 1)) & (disp > MIN_DISP * 10)
    if refit.any():
        disp[refit] = _grid(post, np.flatnonzero(refit), counts.shape[0])
    return np.clip(disp, MIN_DISP, upper)


def map_dispersions(
    counts: np.ndarray,
    design: np.ndarray,
    mu: np.ndarray,
    genewise: np.ndarray,
    fitted: np.ndarray,
    prior_variance: float,
    backend: Backend,
) -> np.ndarray:
    """MAP dispersions with a normal prior on log dispersion centred on the trend (R's
    ``estimateDispersionsMAP``): line search from the gene-wise estimate (the trend where that is
    below a tenth of it), grid fit where it needed ``maxit`` steps, the log posterior evaluated by
    ``backend``. Dims (gene,), clipped."""
    upper = max_disp(counts.shape[0])
    init = np.where(genewise > 0.1 * fitted, genewise, fitted)
    post = backend.posterior(counts, mu, design, np.log(fitted), prior_variance)
    res = fit_disp(post, np.log(init), min_log_alpha=np.log(MIN_DISP / 10), tol=DISP_TOL, maxit=MAXIT)
    disp = np.exp(res.log_alpha)
    refit = res.iter >= MAXIT
    if refit.any():
        disp[refit] = _grid(post, np.flatnonzero(refit), counts.shape[0])
    return np.clip(disp, MIN_DISP, upper)


def for_fit(genewise: np.ndarray) -> np.ndarray:
    """Genes used for the trend: gene-wise dispersion above ``100 * MIN_DISP`` (dims (gene,) bool)."""
    return genewise > 100 * MIN_DISP


def mean_trend(genewise: np.ndarray) -> Trend:
    """DESeq2's ``fitType="mean"`` trend: 0.1%-trimmed mean of the dispersions used for the fit."""
    values = genewise[for_fit(genewise)]
    return Trend("mean", (float(trim_mean(values, proportiontocut=0.001)), 0.0))


def fit_trend(normed_means: np.ndarray, genewise: np.ndarray) -> Trend:
    """R's parametric trend ``a0 + a1 / mean`` (:func:`prior.parametric_trend`).

    Where it does not fit, R substitutes a local regression (``fitType = "local"``, locfit);
    gexplain uses DESeq2's ``"mean"`` trend instead and logs a warning.

    Parameters
    ----------
    normed_means
        Mean normalised count of every non-zero gene, dims (gene,).
    genewise
        Gene-wise dispersion MLEs of the same genes, dims (gene,).
    """
    use = for_fit(genewise)
    if not use.any():
        raise ValueError("all gene-wise dispersions are within 2 orders of magnitude of the minimum")
    try:
        return Trend("parametric", global_fits.parametric_trend(normed_means[use], genewise[use]))
    except global_fits.TrendFitError as exc:
        log.warning(
            "deseq2: parametric dispersion trend failed (%s); using DESeq2's mean trend "
            "(R would substitute a local regression)",
            exc,
        )
        return mean_trend(genewise)


def fit_prior(genewise: np.ndarray, fitted: np.ndarray, n_samples: int, n_coefs: int) -> Prior:
    """R's ``varLogDispEsts`` and ``dispPriorVar`` (:func:`prior.prior_variance`).

    Parameters
    ----------
    genewise, fitted
        Gene-wise and trend dispersions of the non-zero genes, dims (gene,).
    n_samples, n_coefs
        Design rows and columns.
    """
    above = genewise >= 100 * MIN_DISP
    residuals = np.log(genewise[above]) - np.log(fitted[above])
    var_log, variance = global_fits.prior_variance(residuals, n_samples, n_coefs)
    return Prior(var_log, variance)


def final_dispersions(
    genewise: np.ndarray, fitted: np.ndarray, map_disp: np.ndarray, prior: Prior
) -> np.ndarray:
    """MAP dispersions, except gene-wise ones for genes > 2 SDs (``sqrt(varLogDispEsts)``) above the trend."""
    outlier = np.log(genewise) > np.log(fitted) + OUTLIER_SD * np.sqrt(prior.squared_logres)
    return np.where(outlier, genewise, map_disp)
