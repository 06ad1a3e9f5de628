"""DESeq2 dispersions: rough and gene-wise estimates, the trend curve, its prior, MAP estimates.

Per-gene functions take one gene block (dims (sample, gene)) and are vectorised over genes,
including the one-dimensional L-BFGS-B dispersion fits: every gene runs SciPy's L-BFGS-B routine
on pydeseq2's objective, as pydeseq2's ``fit_alpha_mle`` does, with the objective evaluated for
all genes at once (:mod:`lbfgsb`). Trend and prior functions are the global steps: they take one
value per gene over all genes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from gexplain.pipelines.de.deseq2 import lbfgsb
from pydeseq2.utils import fit_alpha_mle
from scipy.linalg import lstsq
from scipy.optimize import minimize
from scipy.special import gammaln, polygamma, psi
from scipy.stats import norm, trim_mean

MIN_DISP = 1e-8
MIN_MU = 0.5


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
    """Log-dispersion prior: ``squared_logres`` (MAD^2 of log residuals) and its ``variance``."""

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


def alpha_mle(
    counts: np.ndarray,
    design: np.ndarray,
    mu: np.ndarray,
    alpha_hat: np.ndarray,
    prior_variance: float | None = None,
) -> np.ndarray:
    """Cox-Reid adjusted dispersion MLE (or MAP with a log-normal prior centred on ``alpha_hat``).

    Minimises pydeseq2's objective (``fit_alpha_mle``: NB negative log-likelihood, Cox-Reid term
    and, for MAP, the prior on log dispersion) over log dispersion by L-BFGS-B from
    ``log(alpha_hat)``, for all genes at once (see :mod:`lbfgsb`); genes where L-BFGS-B does not
    converge go to ``fit_alpha_mle`` itself, which falls back to its grid search.

    Parameters
    ----------
    counts
        Dims (sample, gene).
    design
        Dims (sample, coefficient).
    mu
        Fitted means, dims (sample, gene).
    alpha_hat
        Start (MLE) or prior centre (MAP), dims (gene,).
    prior_variance
        Variance of the log-dispersion prior; None for the gene-wise MLE.

    Returns
    -------
    numpy.ndarray
        Dims (gene,), clipped to ``[MIN_DISP, max_disp]``.
    """
    upper = max_disp(counts.shape[0])
    objective = _DispersionObjective(counts, design, mu, np.log(alpha_hat), prior_variance)
    log_alpha, converged = lbfgsb.minimize_batch(
        objective, np.log(alpha_hat), np.log(MIN_DISP), np.log(upper)
    )
    out = np.exp(log_alpha)
    for i in np.flatnonzero(~converged):
        out[i] = fit_alpha_mle(
            counts=objective.counts[i],
            design_matrix=design,
            mu=objective.mu[i],
            alpha_hat=alpha_hat[i],
            min_disp=MIN_DISP,
            max_disp=upper,
            prior_disp_var=prior_variance,
            cr_reg=True,
            prior_reg=prior_variance is not None,
        )[0]
    return np.clip(out, MIN_DISP, upper)


class _DispersionObjective:
    """pydeseq2's dispersion loss and its derivative in log dispersion, for a subset of genes.

    The terms are those of ``pydeseq2.utils.fit_alpha_mle`` (``nb_nll``, ``dnb_nll``, Cox-Reid
    ``0.5 log det(X^T W X)``, prior ``(log a - log a_hat)^2 / (2 var)``) in the same order, with
    the parts that do not depend on the dispersion computed once.
    """

    def __init__(
        self,
        counts: np.ndarray,
        design: np.ndarray,
        mu: np.ndarray,
        log_alpha_hat: np.ndarray,
        prior_variance: float | None,
    ) -> None:
        # one contiguous row per gene (dims (gene, sample)): each gene's sums run as pydeseq2's
        self.counts = np.ascontiguousarray(counts.T)
        self.mu = np.ascontiguousarray(mu.T)
        self.lgamma_counts = gammaln(self.counts + 1)
        self.counts_log_mu = self.counts * np.log(self.mu)
        self.resid = self.counts - self.mu
        self._buffers = np.empty((6, *self.counts.shape))
        # X^T diag(w) X = w @ outer, one row of X_i X_j products per coefficient pair
        p = design.shape[1]
        self.outer = (design[:, :, None] * design[:, None, :]).reshape(-1, p * p)
        self.p = p
        self.log_alpha_hat = log_alpha_hat
        self.prior_variance = prior_variance

    def __call__(self, log_alpha: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loss and its derivative in log dispersion at ``log_alpha`` for genes ``idx`` (dims (k,)).

        Each term is pydeseq2's expression (same operands, same order). The (gene, sample) work
        arrays are preallocated and reused: fresh block-sized temporaries at every evaluation
        cost page faults, the more so in Dask workers, which return freed memory to the system.
        (``np.take`` uses ``mode="clip"``: ``idx`` is valid, and ``"raise"`` copies via a temporary.)
        """
        k = idx.size
        y, mu, y_inv, dterms, terms, work = (buf[:k] for buf in self._buffers)
        np.take(self.counts, idx, axis=0, out=y, mode="clip")
        np.take(self.mu, idx, axis=0, out=mu, mode="clip")
        alpha = np.exp(log_alpha)
        inv = (1 / alpha)[:, None]
        n = y.shape[1]
        np.add(y, inv, out=y_inv)
        psi(y_inv, out=dterms)  # -> psi(1/a) - psi(y + 1/a) + log(1 + mu a) + (y - mu) / (mu + 1/a)
        gammaln(y_inv, out=terms)  # -> -logbinom + (y + 1/a) log(1/a + mu) - y log(mu)
        terms -= np.take(self.lgamma_counts, idx, axis=0, out=work, mode="clip")
        terms -= gammaln(inv)
        np.negative(terms, out=terms)
        mu_inv = np.add(mu, inv, out=work)
        log_mu_inv = np.log(mu_inv, out=y)  # y is no longer needed
        log_mu_inv *= y_inv
        terms += log_mu_inv
        terms -= np.take(self.counts_log_mu, idx, axis=0, out=log_mu_inv, mode="clip")
        nll = n * inv[:, 0] * np.log(alpha) + terms.sum(axis=1)
        np.subtract(psi(inv), dterms, out=dterms)
        q = np.multiply(mu, alpha[:, None], out=y_inv)
        q += 1
        dterms += np.log(q, out=y)
        resid = np.take(self.resid, idx, axis=0, out=terms, mode="clip")
        dterms += np.divide(resid, mu_inv, out=y)
        dnll = -(inv[:, 0] ** 2 * dterms.sum(axis=1))
        w = np.divide(mu, q, out=q)
        gram = (w @ self.outer).reshape(-1, self.p, self.p)
        d_gram = -(np.square(w, out=w) @ self.outer).reshape(-1, self.p, self.p)
        reg = 0.5 * np.linalg.slogdet(gram)[1]
        reg_grad = 0.5 * (np.linalg.inv(gram) * d_gram).sum(axis=(1, 2)) * alpha
        if self.prior_variance is not None:
            centred = log_alpha - self.log_alpha_hat[idx]
            reg = reg + centred**2 / (2 * self.prior_variance)
            reg_grad = reg_grad + centred / self.prior_variance
        return nll + reg, alpha * dnll + reg_grad


def _gamma_glm(covariates: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, bool]:
    """Gamma-family GLM ``targets ~ a0 + a1 * covariates`` with identity link (L-BFGS-B)."""
    x = np.column_stack([np.ones_like(covariates), covariates])

    def loss(coeffs: np.ndarray) -> float:
        mu = x @ coeffs
        return float(np.nanmean(targets / mu + np.log(mu), axis=0))

    def grad(coeffs: np.ndarray) -> np.ndarray:
        mu = x @ coeffs
        return -np.nanmean(((targets / mu - 1)[:, None] * x) / mu[:, None], axis=0)

    with np.errstate(all="ignore"):
        res = minimize(
            loss, x0=np.array([1.0, 1.0]), jac=grad, method="L-BFGS-B", bounds=[(1e-12, np.inf)] * 2
        )
    return res.x, bool(res.success) and bool(np.isfinite(res.x).all())


def mean_trend(genewise: np.ndarray) -> Trend:
    """DESeq2's ``fitType="mean"`` trend: 0.1%-trimmed mean of dispersions above ``10 * MIN_DISP``."""
    values = genewise[genewise > 10 * MIN_DISP]
    return Trend("mean", (float(trim_mean(values, proportiontocut=0.001)), 0.0))


def fit_trend(normed_means: np.ndarray, genewise: np.ndarray) -> Trend:
    """Parametric trend ``a0 + a1 / mean`` fitted iteratively, falling back to the mean trend.

    Parameters
    ----------
    normed_means
        Mean normalised count of every non-zero gene, dims (gene,).
    genewise
        Gene-wise dispersion MLEs of the same genes, dims (gene,).

    Returns
    -------
    Trend
    """
    covariates = 1.0 / normed_means
    keep = np.isfinite(covariates)
    cov, tgt = covariates[keep], genewise[keep]
    old = np.array([0.1, 0.1])
    coeffs = np.array([1.0, 1.0])
    while (coeffs > 1e-10).all() and (np.log(np.abs(coeffs / old)) ** 2).sum() >= 1e-6:
        old = coeffs
        coeffs, converged = _gamma_glm(cov, tgt)
        if not converged or (coeffs <= 1e-10).any():
            warnings.warn(
                "dispersion trend fit did not converge; using DESeq2's mean trend", UserWarning, stacklevel=2
            )
            return mean_trend(genewise)
        ratio = tgt / (coeffs[0] + coeffs[1] * cov)
        ok = ~((ratio < 1e-4) | (ratio >= 15))
        cov, tgt = cov[ok], tgt[ok]
    return Trend("parametric", (float(coeffs[0]), float(coeffs[1])))


def fit_prior(genewise: np.ndarray, fitted: np.ndarray, n_samples: int, n_coefs: int) -> Prior:
    """Prior variance of log dispersions around the trend (DESeq2's ``estimateDispersionsPriorVar``).

    Parameters
    ----------
    genewise, fitted
        Gene-wise and trend dispersions of the non-zero genes, dims (gene,).
    """
    residuals = np.log(genewise) - np.log(fitted)
    res = residuals[genewise >= 100 * MIN_DISP]
    mad = np.median(np.abs(res - np.median(res))) / norm.ppf(0.75)
    squared = float(mad**2)
    return Prior(squared, float(max(squared - polygamma(1, (n_samples - n_coefs) / 2), 0.25)))


def final_dispersions(
    genewise: np.ndarray, fitted: np.ndarray, map_disp: np.ndarray, prior: Prior
) -> np.ndarray:
    """MAP dispersions, except gene-wise ones for genes > 2 prior SDs above the trend (dims (gene,))."""
    outlier = np.log(genewise) > np.log(fitted) + 2 * np.sqrt(prior.squared_logres)
    return np.where(outlier, genewise, map_disp)
