"""DESeq2's dispersion fits (its C++ ``fitDisp`` and ``fitDispGrid``), vectorised over a gene block.

The log posterior of log dispersion ``a`` for one gene, with counts ``y``, fitted means ``mu``
(dims (sample,)) and design ``X``::

    l(a) = sum(lgamma(y + 1/alpha) - lgamma(1/alpha) - y log(mu + 1/alpha) - (1/alpha) log(1 + mu alpha))
           - 0.5 log det(X^T W X)                       (Cox-Reid, W = diag(1 / (1/mu + alpha)))
           - (a - prior_mean)^2 / (2 prior_var)         (MAP only)

``fit_disp`` runs R's line search for every gene at once: steps of ``kappa`` along the derivative,
accepted under the Armijo rule (sufficient increase ``1e-4 kappa l'(a)^2``), ``kappa`` halved on a
rejection, grown by 1.1 (at most ``kappa_0``) after an acceptance and halved every fifth one, log
dispersion kept in ``[-30, 10]``; a gene stops when an accepted step raises ``l`` by less than
``tol`` or ``a`` falls below ``min_log_alpha``, or after ``maxit`` steps. The arithmetic per gene is
R's, so every gene follows R's path up to floating-point rounding of the sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from gexplain.pipelines.de.deseq2.tally import CountTally
from scipy.special import digamma, gammaln

EPSILON = 1e-4  # Armijo constant of DESeq2's fitDisp
LOG_ALPHA_RANGE = (-30.0, 10.0)


class DispersionPosterior(Protocol):
    """What the line search and grid need of a log posterior (one implementation per backend)."""

    @property
    def n_genes(self) -> int:
        """Genes of this posterior."""
        ...

    def value(self, log_alpha: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Log posterior at ``log_alpha`` (dims (k,)) for genes ``idx`` (dims (k,)), numpy in and out."""
        ...

    def derivative(self, log_alpha: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Its derivative in log dispersion, dims (k,)."""
        ...

    def subset(self, rows: np.ndarray) -> DispersionPosterior:
        """The posterior of genes ``rows`` alone."""
        ...


@dataclass(frozen=True)
class Posterior:
    """The dispersion log posterior of a set of genes (rows are genes).

    Attributes
    ----------
    counts, mu
        Dims (gene, sample).
    outer
        ``x_i x_j`` per sample and coefficient pair, dims (sample, coefficient**2).
    n_coefs
        Number of design columns.
    tally
        The distinct counts of each gene (sums of ``lgamma`` and ``digamma`` terms of the counts).
    prior_mean
        Prior mean of log dispersion, dims (gene,), or None for the likelihood alone.
    prior_var
        Prior variance of log dispersion.
    """

    counts: np.ndarray
    mu: np.ndarray
    outer: np.ndarray
    n_coefs: int
    tally: CountTally
    prior_mean: np.ndarray | None = None
    prior_var: float = 1.0

    @classmethod
    def build(
        cls,
        counts: np.ndarray,
        mu: np.ndarray,
        design: np.ndarray,
        prior_mean: np.ndarray | None = None,
        prior_var: float = 1.0,
    ) -> Posterior:
        """From (sample, gene) counts and means and a (sample, coefficient) design."""
        p = design.shape[1]
        outer = (design[:, :, None] * design[:, None, :]).reshape(-1, p * p)
        rows = np.ascontiguousarray(counts.T, dtype=np.float64)
        return cls(
            rows,
            np.ascontiguousarray(mu.T, dtype=np.float64),
            outer,
            p,
            CountTally.of(rows),
            prior_mean,
            prior_var,
        )

    @property
    def n_genes(self) -> int:
        """Genes of this posterior."""
        return self.counts.shape[0]

    def subset(self, rows: np.ndarray) -> Posterior:
        """The posterior of genes ``rows`` (dims (k,)) alone."""
        counts = self.counts[rows]
        prior_mean = None if self.prior_mean is None else self.prior_mean[rows]
        return Posterior(
            counts, self.mu[rows], self.outer, self.n_coefs, CountTally.of(counts), prior_mean, self.prior_var
        )

    def _gram(self, w: np.ndarray) -> np.ndarray:
        return (w @ self.outer).reshape(-1, self.n_coefs, self.n_coefs)

    def value(self, log_alpha: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Log posterior at ``log_alpha`` (dims (k,)) for genes ``idx`` (dims (k,))."""
        y, mu = self.counts[idx], self.mu[idx]
        alpha = np.exp(log_alpha)[:, None]
        inv = 1.0 / alpha
        w = 1.0 / (1.0 / mu + alpha)
        cr = -0.5 * np.linalg.slogdet(self._gram(w))[1]
        ll = self.tally.per_gene(gammaln, inv[:, 0], idx) - (
            y * np.log(mu + inv) + inv * np.log(1.0 + mu * alpha)
        ).sum(axis=1)
        out = ll + cr
        if self.prior_mean is not None:
            out = out - 0.5 * (log_alpha - self.prior_mean[idx]) ** 2 / self.prior_var
        return out

    def derivative(self, log_alpha: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Derivative of the log posterior in log dispersion (dims (k,))."""
        y, mu = self.counts[idx], self.mu[idx]
        a = np.exp(log_alpha)
        alpha = a[:, None]
        inv = 1.0 / alpha
        w = 1.0 / (1.0 / mu + alpha)
        gram, d_gram = self._gram(w), self._gram(-(w**2))
        cr = -0.5 * np.einsum("gij,gji->g", np.linalg.inv(gram), d_gram)
        mu_a = mu * alpha
        terms = np.log(1.0 + mu_a) - mu_a / (1.0 + mu_a) + y / (mu + inv)
        ll = inv[:, 0] ** 2 * (terms.sum(axis=1) - self.tally.per_gene(digamma, inv[:, 0], idx))
        out = (ll + cr) * a
        if self.prior_mean is not None:
            out = out - (log_alpha - self.prior_mean[idx]) / self.prior_var
        return out


@dataclass(frozen=True)
class LineSearch:
    """Result of :func:`fit_disp` per gene (dims (gene,)): ``log_alpha``, ``iter`` (steps taken),
    ``initial_lp`` and ``last_lp`` (log posterior at the start and at the end)."""

    log_alpha: np.ndarray
    iter: np.ndarray
    initial_lp: np.ndarray
    last_lp: np.ndarray


def fit_disp(
    post: DispersionPosterior,
    log_alpha: np.ndarray,
    *,
    min_log_alpha: float,
    kappa_0: float = 1.0,
    tol: float = 1e-6,
    maxit: int = 100,
) -> LineSearch:
    """DESeq2's ``fitDisp`` line search from ``log_alpha`` (dims (gene,)) for every gene at once."""
    g = log_alpha.size
    a = np.asarray(log_alpha, dtype=np.float64).copy()
    every = np.arange(g)
    lp = post.value(a, every)
    dlp = post.derivative(a, every)
    initial = lp.copy()
    kappa = np.full(g, float(kappa_0))
    iters = np.zeros(g, dtype=np.int64)
    accepts = np.zeros(g, dtype=np.int64)
    active = every
    lo, hi = LOG_ALPHA_RANGE
    for _ in range(maxit):
        if not active.size:
            break
        iters[active] += 1
        a_k, d_k, k_k = a[active], dlp[active], kappa[active]
        proposal = a_k + k_k * d_k
        with np.errstate(divide="ignore", invalid="ignore"):
            k_k = np.where(proposal < lo, (lo - a_k) / d_k, k_k)
            k_k = np.where(proposal > hi, (hi - a_k) / d_k, k_k)
        step = a_k + k_k * d_k
        with np.errstate(invalid="ignore", over="ignore"):
            theta = -post.value(step, active)
            accept = theta <= -lp[active] - k_k * EPSILON * d_k**2
        rejected = active[~accept]
        kappa[rejected] = k_k[~accept] / 2.0
        took = active[accept]
        if not took.size:
            continue
        accepts[took] += 1
        a[took] = step[accept]
        lp_new = -theta[accept]  # log_posterior(a) at the accepted step, as R recomputes it
        change = lp_new - lp[took]
        converged = change < tol
        lp[took[converged]] = lp_new[converged]
        floored = ~converged & (a[took] < min_log_alpha)  # R leaves lp at its previous value here
        going = ~converged & ~floored
        moving = took[going]
        lp[moving] = lp_new[going]
        if moving.size:
            dlp[moving] = post.derivative(a[moving], moving)
            new_kappa = np.minimum(k_k[accept][going] * 1.1, kappa_0)
            kappa[moving] = np.where(accepts[moving] % 5 == 0, new_kappa / 2.0, new_kappa)
        done = np.zeros(g, dtype=bool)
        done[took[converged | floored]] = True
        active = active[~done[active]]
    return LineSearch(a, iters, initial, lp)


def fit_disp_grid(
    post: DispersionPosterior, n_samples: int, min_disp: float = 1e-8, n_grid: int = 20
) -> np.ndarray:
    """DESeq2's ``fitDispGrid``: the best of a 20-point log grid on ``[log(1e-8), log(max(10, n))]``,
    refined on 20 points within one grid step. Returns log dispersions, dims (gene,)."""
    grid = np.linspace(np.log(min_disp), np.log(max(10.0, n_samples)), n_grid)
    delta = grid[1] - grid[0]
    genes = np.arange(post.n_genes)
    with np.errstate(invalid="ignore", over="ignore"):
        coarse = np.stack([post.value(np.full(genes.size, v), genes) for v in grid], axis=1)
        best = grid[np.argmax(coarse, axis=1)]
        fine = best[:, None] + np.linspace(-delta, delta, n_grid)[None, :]
        scores = np.stack([post.value(fine[:, t], genes) for t in range(n_grid)], axis=1)
    return fine[genes, np.argmax(scores, axis=1)]
