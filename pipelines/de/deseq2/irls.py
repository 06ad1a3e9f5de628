"""Negative binomial GLM fits by IRLS, vectorised over a gene block.

Reproduces R DESeq2's ``fitBeta`` gene by gene: start from the least-squares fit of
``log(counts / sf + 0.1)``, ridge ``1e-6 / log(2)^2`` (R's ``lambda = 1e-6`` on the log2 scale),
means floored at 0.5, stop when the relative deviance change is below ``1e-8`` after the first
step, at most 100 steps. The covariance of the coefficients is R's
``(X'WX + ridge)^-1 X'WX (X'WX + ridge)^-1`` with the weights of the last (floored) means.
Genes whose iterations diverge (a coefficient beyond +-30, or 100 steps) are refitted as R does,
by L-BFGS-B on the log posterior (:func:`optim_fit`).
"""

from __future__ import annotations

import numpy as np
from gexplain.pipelines.de.deseq2.dispersion import MIN_MU
from gexplain.pipelines.de.deseq2.tally import CountTally
from scipy.optimize import minimize
from scipy.special import gammaln
from scipy.stats import nbinom, norm

BETA_TOL = 1e-8
MAX_BETA = 30.0
MAX_ITER = 100
RIDGE = 1e-6 / np.log(2) ** 2


def log_binomial(tally: CountTally, alpha: np.ndarray) -> np.ndarray:
    """``sum_i log Gamma(y_i + 1/a) - log Gamma(y_i + 1) - log Gamma(1/a)`` per gene: the NB terms free of the mean.

    Parameters
    ----------
    tally
        The distinct counts of the genes.
    alpha
        Dispersions, dims (gene,).

    Returns
    -------
    numpy.ndarray
        Dims (gene,), nats.
    """
    every = np.arange(alpha.size)
    return tally.per_gene(gammaln, 1.0 / alpha, every) - tally.per_gene(gammaln, np.ones(alpha.size), every)


def nb_nll(
    counts: np.ndarray,
    mu: np.ndarray,
    alpha: np.ndarray,
    logbinom: np.ndarray,
    work: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Negative binomial negative log-likelihood per gene.

    Parameters
    ----------
    counts, mu
        Dims (sample, gene).
    alpha
        Dispersions, dims (gene,).
    logbinom
        ``log_binomial(tally, alpha)`` of these genes, dims (gene,).
    work
        Two scratch arrays, dims (sample, gene); overwritten.

    Returns
    -------
    numpy.ndarray
        Dims (gene,), nats.
    """
    inv = 1.0 / alpha
    terms = np.add(inv, mu, out=work[0])  # (y + 1/a) log(1/a + mu) - y log(mu)
    np.log(terms, out=terms)
    terms *= np.add(counts, inv, out=work[1])
    logmu = np.log(mu, out=work[1])
    logmu *= counts
    terms -= logmu
    return counts.shape[0] * inv * np.log(alpha) - logbinom + terms.sum(axis=0)


def weighted_gram(design: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``X^T diag(w_g) X`` per gene, dims (gene, coefficient, coefficient).

    One vector-matrix product over samples per coefficient pair, ``(x_i x_j) @ w``, with no
    (sample, gene) temporary. Each gene's entry is a sum over its own column of ``w``, so it does
    not depend on the other genes of the block (``test_results_independent_of_gene_block``).
    """
    p = design.shape[1]
    out = np.empty((weights.shape[1], p, p))
    for i in range(p):
        for j in range(i, p):
            out[:, i, j] = out[:, j, i] = (design[:, i] * design[:, j]) @ weights
    return out


def _normal_matrix(design: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``X^T diag(w) X + ridge`` per gene, dims (gene, coefficient, coefficient)."""
    return weighted_gram(design, weights) + RIDGE * np.eye(design.shape[1])


def coefficient_covariance(
    design: np.ndarray, mu: np.ndarray, disp: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R's covariance of the coefficients, ``(X'WX + ridge)^-1 X'WX (X'WX + ridge)^-1``.

    Parameters
    ----------
    design
        Dims (sample, coefficient).
    mu
        Fitted means floored at ``MIN_MU``, dims (sample, gene).
    disp
        Dispersions, dims (gene,).

    Returns
    -------
    weights
        ``w = mu / (1 + mu a)``, dims (sample, gene).
    inv
        ``(X'WX + ridge)^-1``, dims (gene, coefficient, coefficient).
    cov
        The covariance, dims (gene, coefficient, coefficient), natural-log units.
    """
    w = np.multiply(mu, disp)
    w += 1.0
    np.divide(mu, w, out=w)
    gram = weighted_gram(design, w)
    inv = np.linalg.inv(gram + RIDGE * np.eye(design.shape[1]))
    return w, inv, inv @ gram @ inv


def _means(design: np.ndarray, beta: np.ndarray, sf: np.ndarray) -> np.ndarray:
    """``sf * exp(X beta)`` per gene (dims (sample, gene)), computed in place."""
    mu = design @ beta.T
    np.exp(mu, out=mu)
    mu *= sf
    return mu


def irls(
    counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, disp: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    cov
        Covariance of ``beta``, dims (gene, coefficient, coefficient), natural-log units.
    """
    sf = size_factors[:, None]
    q, r = np.linalg.qr(design)
    log_normed = np.divide(counts, sf)  # log(counts / sf + 0.1), in place
    log_normed += 0.1
    beta = np.linalg.solve(r, q.T @ np.log(log_normed, out=log_normed)).T
    del log_normed
    beta_start = beta.copy()
    mu = _means(design, beta, sf)
    np.maximum(mu, MIN_MU, out=mu)
    dev = np.zeros(counts.shape[1])
    active = np.arange(counts.shape[1])
    diverged: list[np.ndarray] = []
    logbinom = log_binomial(CountTally.of(counts.T), disp)
    n_iter = 0
    # (sample, gene) work arrays: contiguous views of one pool, reused across iterations, since
    # fresh block-sized temporaries cost page faults (Dask workers return freed memory at once)
    pool = np.empty((5, counts.size))

    def scratch(i: int, k: int) -> np.ndarray:
        return pool[i, : counts.shape[0] * k].reshape(-1, k)

    while active.size:
        k = active.size
        y = np.take(counts, active, axis=1, out=scratch(0, k), mode="clip")  # "clip": idx valid
        m = np.take(mu, active, axis=1, out=scratch(1, k), mode="clip")
        w = np.multiply(m, disp[active], out=scratch(2, k))  # w = m / (1 + m a)
        w += 1.0
        np.divide(m, w, out=w)
        z = np.divide(m, sf, out=scratch(3, k))  # z = log(m / sf) + (y - m) / m, then w z
        np.log(z, out=z)
        resid = np.subtract(y, m, out=scratch(4, k))
        resid /= m
        z += resid
        z *= w
        rhs = np.einsum("ni,ng->gi", design, z)
        beta_hat = np.linalg.solve(_normal_matrix(design, w), rhs[..., None])[..., 0]
        n_iter += 1
        bad = (np.abs(beta_hat) > MAX_BETA).any(axis=1) | (n_iter >= MAX_ITER)
        if bad.any():
            diverged.append(active[bad])
            beta[active[bad]] = beta_hat[bad]  # R keeps the last iterate (the optim start below)
            active, beta_hat, y = active[~bad], beta_hat[~bad], y[:, ~bad]
        k = active.size
        if not k:
            break
        beta[active] = beta_hat
        m = np.matmul(design, beta_hat.T, out=scratch(1, k))  # m = max(sf exp(X beta), MIN_MU)
        np.exp(m, out=m)
        m *= sf
        np.maximum(m, MIN_MU, out=m)
        mu[:, active] = m
        new_dev = -2.0 * nb_nll(y, m, disp[active], logbinom[active], (scratch(2, k), scratch(3, k)))
        ratio = np.abs(new_dev - dev[active]) / (np.abs(new_dev) + 0.1)
        dev[active] = new_dev
        active = active[(ratio >= BETA_TOL) | (n_iter == 1)]  # R: converged only after the first step
    w, inv, cov = coefficient_covariance(design, mu, disp)
    p = design.shape[1]
    pairs = (design[:, :, None] * design[:, None, :]).reshape(-1, p * p)  # x_i x_j, (sample, pair)
    hat = pairs @ inv.reshape(-1, p * p).T
    hat *= w
    mu_out = _means(design, beta, sf)
    genes = np.concatenate(diverged) if diverged else np.zeros(0, dtype=np.int64)
    refit_diverged(counts, size_factors, design, disp, genes, beta_start, (beta, mu_out, cov))
    return beta, mu_out, hat, cov


def refit_diverged(
    counts: np.ndarray,
    size_factors: np.ndarray,
    design: np.ndarray,
    disp: np.ndarray,
    genes: np.ndarray,
    beta_start: np.ndarray,
    fit: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Refit the genes whose IRLS diverged by :func:`optim_fit`, in place (every backend's IRLS).

    Parameters
    ----------
    counts, size_factors, design, disp
        As :func:`irls`.
    genes
        The diverged genes, dims (k,).
    beta_start
        The least-squares start of IRLS, natural-log units, dims (gene, coefficient).
    fit
        ``(beta, mu, cov)`` of the IRLS fit (dims (gene, coefficient), (sample, gene), (gene,
        coefficient, coefficient)); ``beta`` holds the last iterate of the diverged genes.
    """
    beta, mu_out, cov = fit
    if not genes.size:
        return
    for gene in genes:
        last = beta[gene] / np.log(2)
        # R's start: the last iterate (log2) if finite and inside +-30, else the initial natural-log fit as is
        start = last if np.isfinite(last).all() and (np.abs(last) < MAX_BETA).all() else beta_start[gene]
        beta[gene] = optim_fit(counts[:, gene], size_factors, design, float(disp[gene]), start)
    mu_out[:, genes] = _means(design, beta[genes], size_factors[:, None])
    _, _, cov[genes] = coefficient_covariance(design, np.maximum(mu_out[:, genes], MIN_MU), disp[genes])


def optim_fit(
    counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, alpha: float, start: np.ndarray
) -> np.ndarray:
    """R DESeq2's ``fitNbinomGLMsWithOptim`` for one gene whose IRLS diverged.

    Minimises the negative log posterior on the log2 scale (NB log likelihood plus a normal prior
    of variance ``1 / 1e-6`` per coefficient) with L-BFGS-B in ``[-30, 30]``, as R's
    ``optim(method = "L-BFGS-B")`` does it: central finite differences with step ``1e-3``
    (shortened at a bound), 5 correction pairs, ``factr = 1e7``, ``pgtol = 0``, 100 iterations.
    SciPy's L-BFGS-B (v3.0) and R's (v2.3) can stop at slightly different points on such flat,
    degenerate likelihoods. Returns natural-log coefficients, dims (coefficient,).
    """
    size = 1.0 / alpha
    lam = 1e-6
    prior_sd = np.sqrt(1.0 / lam)

    def objective(p: np.ndarray) -> float:
        mu = size_factors * np.exp2(design @ p)
        with np.errstate(all="ignore"):
            ll = nbinom.logpmf(counts, size, size / (size + mu)).sum()
            value = -(ll + norm.logpdf(p, 0.0, prior_sd).sum())
        return float(value) if np.isfinite(value) else 1e300

    def gradient(p: np.ndarray) -> np.ndarray:
        out = np.empty_like(p)
        for i in range(p.size):
            up, down = p.copy(), p.copy()
            up[i] = min(p[i] + 1e-3, MAX_BETA)
            down[i] = max(p[i] - 1e-3, -MAX_BETA)
            out[i] = (objective(up) - objective(down)) / (up[i] - down[i])
        return out

    res = minimize(
        objective,
        np.clip(np.asarray(start, dtype=np.float64), -MAX_BETA, MAX_BETA),
        jac=gradient,
        method="L-BFGS-B",
        bounds=[(-MAX_BETA, MAX_BETA)] * design.shape[1],
        options={"maxcor": 5, "ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0, "maxiter": 100},
    )
    return res.x * np.log(2)
