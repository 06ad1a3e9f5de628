"""Negative binomial GLM fits by IRLS, vectorised over a gene block.

Reproduces pydeseq2's ``irls_solver`` gene by gene (same start, ridge, convergence rule on the
deviance, thresholds); genes whose iterations diverge (a coefficient beyond +-30 or 250 steps)
are handed to that kernel, which falls back to L-BFGS-B.
"""

from __future__ import annotations

import numpy as np
from pydeseq2.utils import irls_solver
from scipy.special import gammaln

from pipelines.de.deseq2.dispersion import MIN_MU

BETA_TOL = 1e-8
MAX_BETA = 30.0
MAX_ITER = 250
RIDGE = 1e-6


def nb_nll(counts: np.ndarray, mu: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Negative binomial negative log-likelihood per gene.

    Parameters
    ----------
    counts, mu
        Dims (sample, gene).
    alpha
        Dispersions, dims (gene,).

    Returns
    -------
    numpy.ndarray
        Dims (gene,), nats.
    """
    inv = 1.0 / alpha
    logbinom = gammaln(counts + inv) - gammaln(counts + 1) - gammaln(inv)
    terms = -logbinom + (counts + inv) * np.log(inv + mu) - counts * np.log(mu)
    return counts.shape[0] * inv * np.log(alpha) + terms.sum(axis=0)


def weighted_gram(design: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``X^T diag(w_g) X`` per gene, dims (gene, coefficient, coefficient).

    An elementwise einsum, not a matrix product: each gene's sum runs in the same order whatever
    the other genes of the block, so results do not depend on the block size.
    """
    return np.einsum("ni,ng,nj->gij", design, weights, design)


def _normal_matrix(design: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``X^T diag(w) X + ridge`` per gene, dims (gene, coefficient, coefficient)."""
    return weighted_gram(design, weights) + RIDGE * np.eye(design.shape[1])


def irls(
    counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, disp: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``log mu = log s + X beta`` per gene at fixed dispersion.

    Parameters
    ----------
    counts
        Dims (sample, gene).
    size_factors
        Dims (sample,).
    design
        Full-rank design matrix, dims (sample, coefficient).
    disp
        Dispersions, dims (gene,).

    Returns
    -------
    beta
        Coefficients in natural-log units, dims (gene, coefficient).
    mu
        Fitted means without the ``MIN_MU`` floor, dims (sample, gene).
    hat
        Diagonal of the weighted hat matrix, dims (sample, gene).
    """
    sf = size_factors[:, None]
    q, r = np.linalg.qr(design)
    beta_init = np.linalg.solve(r, q.T @ np.log(counts / sf + 0.1)).T
    beta = beta_init.copy()
    mu = np.maximum(sf * np.exp(design @ beta.T), MIN_MU)
    dev = np.full(counts.shape[1], 1000.0)
    active = np.arange(counts.shape[1])
    diverged: list[np.ndarray] = []
    n_iter = 0
    while active.size:
        y, m, a = counts[:, active], mu[:, active], disp[active]
        w = m / (1.0 + m * a)
        z = np.log(m / sf) + (y - m) / m
        rhs = np.einsum("ni,ng->gi", design, w * z)
        beta_hat = np.linalg.solve(_normal_matrix(design, w), rhs[..., None])[..., 0]
        n_iter += 1
        bad = (np.abs(beta_hat) > MAX_BETA).any(axis=1) | (n_iter >= MAX_ITER)
        if bad.any():
            diverged.append(active[bad])
        keep = ~bad
        active, beta_hat = active[keep], beta_hat[keep]
        beta[active] = beta_hat
        mu[:, active] = np.maximum(sf * np.exp(design @ beta_hat.T), MIN_MU)
        new_dev = -2.0 * nb_nll(counts[:, active], mu[:, active], disp[active])
        ratio = np.abs(new_dev - dev[active]) / (np.abs(new_dev) + 0.1)
        dev[active] = new_dev
        active = active[ratio > BETA_TOL]
    w = mu / (1.0 + mu * disp)
    inv = np.linalg.inv(_normal_matrix(design, w))
    hat = np.einsum("ni,gij,nj->ng", design, inv, design) * w
    mu_out = sf * np.exp(design @ beta.T)
    for gene in np.concatenate(diverged) if diverged else []:
        b, m_g, h_g, _ = irls_solver(counts[:, gene], size_factors, design, float(disp[gene]), min_mu=MIN_MU)
        beta[gene], mu_out[:, gene], hat[:, gene] = b, m_g, h_g
    return beta, mu_out, hat
