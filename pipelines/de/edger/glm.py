"""edgeR's negative binomial GLM fits (``glmFit``): one-way layouts and the Levenberg damped Newton.

Vectorised over the genes of a block: every array is (gene, sample) or (gene, coefficient). The
link is log, ``mu = exp(X beta + offset)`` with ``offset = log(effective library size)``.
"""

from __future__ import annotations

import numpy as np

LOW_VALUE = 1e-10
SUPREMELY_LOW = 1e-13
MILDLY_LOW = 1e-8
ONE_GROUP_MAXIT = 50
ONE_GROUP_TOL = 1e-10
LEVENBERG_MAXIT = 250
LEVENBERG_TOL = 1e-6


def unit_deviance(y: np.ndarray, mu: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """edgeR's unit NB deviance (Poisson-like for ``phi < 1e-4``, gamma-like for ``mu phi > 1e6``).

    Parameters
    ----------
    y, mu
        Counts and means, dims (gene, sample).
    phi
        Dispersions, broadcastable to (gene, sample).

    Returns
    -------
    numpy.ndarray
        Dims (gene, sample), dimensionless.
    """
    y = y + MILDLY_LOW
    mu = mu + MILDLY_LOW
    phi = np.broadcast_to(phi, y.shape)
    resid = y - mu
    product = mu * phi
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pois = 2 * (y * np.log(y / mu) - resid - 0.5 * resid * resid * phi * (1 + phi * (2 / 3 * resid - y)))
        gamma = 2 * (resid / mu - np.log(y / mu)) * mu / (1 + product)
        inv = 1 / phi
        nb = 2 * (y * np.log(y / mu) + (y + inv) * np.log((mu + inv) / (y + inv)))
    return np.where(phi < 1e-4, pois, np.where(product > 1e6, gamma, nb))


def deviance(y: np.ndarray, mu: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Gene-wise NB deviance, dims (gene,)."""
    return unit_deviance(y, mu, phi).sum(axis=1)


def group_factor(design: np.ndarray) -> np.ndarray:
    """``designAsFactor``: the index of each sample's distinct design row, dims (sample,)."""
    _, first, inverse = np.unique(design, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number groups by first appearance
    return order[np.asarray(inverse).ravel()]


def one_group(
    y: np.ndarray, offset: np.ndarray, phi: np.ndarray, start: np.ndarray | None = None
) -> np.ndarray:
    """``mglmOneGroup``: the NB MLE of one log mean per gene (Newton, tol 1e-10, 50 iterations).

    Parameters
    ----------
    y, offset, phi
        Dims (gene, sample); ``offset`` natural log.
    start
        Starting values, dims (gene,), NaN where none (then the gamma-limit solution).

    Returns
    -------
    numpy.ndarray
        Dims (gene,), natural log scale; -inf for genes with no count above 1e-10.
    """
    nonzero = (y > LOW_VALUE).any(axis=1)
    with np.errstate(divide="ignore"):
        init = np.log(np.where(y > LOW_VALUE, y / np.exp(offset), 0.0).sum(axis=1) / y.shape[1])
    beta = init if start is None else np.where(np.isnan(start), init, start)
    beta = np.where(nonzero, beta, -np.inf)
    active = nonzero.copy()
    for _ in range(ONE_GROUP_MAXIT):
        if not active.any():
            break
        b = beta[active]
        mu = np.exp(b[:, None] + offset[active])
        denom = 1 + mu * phi[active]
        step = ((y[active] - mu) / denom).sum(axis=1) / (mu / denom).sum(axis=1)
        beta[active] = b + step
        idx = np.flatnonzero(active)
        active[idx[np.abs(step) < ONE_GROUP_TOL]] = False
    return beta


def one_way(
    y: np.ndarray, design: np.ndarray, offset: np.ndarray, phi: np.ndarray, start: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``mglmOneWay``: group-wise MLEs for a design equivalent to a one-way layout.

    Returns
    -------
    tuple of numpy.ndarray
        Coefficients (gene, coefficient) and fitted means (gene, sample).
    """
    group = group_factor(design)
    n_groups = design.shape[1]
    first = np.array([np.flatnonzero(group == g)[0] for g in range(n_groups)])
    unique = design[first]
    group_start = None if start is None else start @ unique.T
    beta_g = np.empty((y.shape[0], n_groups))
    for g in range(n_groups):
        cols = group == g
        s = None if group_start is None else group_start[:, g]
        beta_g[:, g] = one_group(y[:, cols], offset[:, cols], phi[:, cols], s)
    beta_g = np.maximum(beta_g, -1e8)
    mu = np.exp(beta_g[:, group] + offset)
    beta = np.linalg.solve(unique, beta_g.T).T
    return beta, mu


def levenberg_start(y: np.ndarray, design: np.ndarray, offset: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``get_levenberg_start`` (null method): every coefficient fitted to one weighted log mean."""
    lib = np.exp(offset)
    w = lib / (1 + phi * lib)
    with np.errstate(divide="ignore"):
        current = np.log((y * w / lib).sum(axis=1) / w.sum(axis=1))
    coef, *_ = np.linalg.lstsq(design, np.ones(design.shape[0]), rcond=None)
    return current[:, None] * coef[None, :]


def levenberg(
    y: np.ndarray, design: np.ndarray, offset: np.ndarray, phi: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``mglmLevenberg``: damped Newton (Levenberg) NB GLM fits, each gene stopping on its own.

    Returns
    -------
    tuple of numpy.ndarray
        Coefficients (gene, coefficient), fitted means (gene, sample), deviances (gene,).
    """
    beta = np.array(beta, dtype=np.float64)
    ymax = y.max(axis=1)
    empty = ymax < LOW_VALUE
    beta[empty] = np.nan
    with np.errstate(over="ignore", invalid="ignore"):
        mu = np.exp(beta @ design.T + offset)
    mu[empty] = 0.0
    dev = deviance(y, mu, phi)
    dev[empty] = 0.0
    n_coef = design.shape[1]
    eye = np.eye(n_coef)
    lam = np.zeros(y.shape[0])
    active = ~empty
    for it in range(LEVENBERG_MAXIT):
        if not active.any():
            break
        a = np.flatnonzero(active)
        ya, pa, oa, mua = y[a], phi[a], offset[a], mu[a]
        denom = 1 + mua * pa
        w = mua / denom
        xtwx = np.einsum("gs,si,sj->gij", w, design, design)
        dl = ((ya - mua) / denom) @ design
        maxinfo = np.diagonal(xtwx, axis1=1, axis2=2).max(axis=1)
        if it == 0:
            lam[a] = np.maximum(maxinfo * 1e-6, SUPREMELY_LOW)
        lev = np.zeros(a.size, dtype=int)
        pending = np.ones(a.size, dtype=bool)
        failed = np.zeros(a.size, dtype=bool)
        low_dev = np.zeros(a.size, dtype=bool)
        dbeta = np.zeros((a.size, n_coef))
        while pending.any():
            p = np.flatnonzero(pending)
            lev[p] += 1
            gi = a[p]
            step = np.linalg.solve(xtwx[p] + lam[gi][:, None, None] * eye, dl[p][..., None])[..., 0]
            dbeta[p] = step
            b_new = beta[gi] + step
            with np.errstate(over="ignore"):
                mu_new = np.exp(b_new @ design.T + oa[p])
            dev_new = deviance(ya[p], mu_new, pa[p])
            low = dev_new / ymax[gi] < SUPREMELY_LOW
            ok = (dev_new <= dev[gi]) | low
            acc = gi[ok]
            beta[acc], mu[acc], dev[acc] = b_new[ok], mu_new[ok], dev_new[ok]
            low_dev[p[ok]] = low[ok]
            pending[p[ok]] = False
            rej = p[~ok]
            lam[a[rej]] *= 2
            too_far = lam[a[rej]] / maxinfo[rej] > 1 / SUPREMELY_LOW
            failed[rej[too_far]] = True
            pending[rej[too_far]] = False
        divergence = (dl * dbeta).sum(axis=1)
        done = failed | low_dev | (divergence < LEVENBERG_TOL)
        lam[a[~done & (lev == 1)]] /= 10
        active[a[done]] = False
    return beta, mu, dev


def glm_fit(
    y: np.ndarray,
    design: np.ndarray,
    offset: np.ndarray,
    phi: np.ndarray,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``glmFit(prior.count = 0)``: one-way group MLEs when the design is a one-way layout, else Levenberg.

    Parameters
    ----------
    y
        Counts, dims (gene, sample).
    design
        Dims (sample, coefficient), full column rank.
    offset
        Natural-log offsets, dims (gene, sample) or (sample,).
    phi
        NB dispersions, dims (gene,) or (gene, sample).
    start
        Starting coefficients, dims (gene, coefficient), or None.

    Returns
    -------
    tuple of numpy.ndarray
        Coefficients (gene, coefficient; natural log), fitted means (gene, sample), deviances (gene,).
    """
    offset = np.broadcast_to(offset, y.shape)
    phi = np.broadcast_to(phi[:, None] if np.ndim(phi) == 1 else phi, y.shape)
    if np.unique(design, axis=0).shape[0] == design.shape[1]:
        beta, mu = one_way(y, design, offset, phi, start)
        return beta, mu, deviance(y, mu, phi)
    if start is None:
        start = levenberg_start(y, design, offset, phi)
    return levenberg(y, design, offset, phi, start)


def add_prior_count(y: np.ndarray, offset: np.ndarray, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """``addPriorCount``: a prior count scaled by library size, twice added to the library sizes.

    Parameters
    ----------
    y
        Counts, dims (gene, sample).
    offset
        Natural-log library sizes, dims (sample,).
    prior
        Average prior count per sample.

    Returns
    -------
    tuple of numpy.ndarray
        Counts with the prior (gene, sample) and the new offsets (sample,).
    """
    lib = np.exp(offset)
    adj = prior * lib / lib.mean()
    return y + adj, np.log(lib + 2 * adj)


def ave_log_cpm(y: np.ndarray, offset: np.ndarray, phi: float) -> np.ndarray:
    """``aveLogCPM(prior.count = 2)``: log2 of the one-group NB mean count per million, dims (gene,)."""
    yp, off = add_prior_count(y, offset, 2.0)
    off = np.broadcast_to(off, y.shape)
    beta = one_group(yp, off, np.full(y.shape, phi))
    return (beta + np.log(1e6)) / np.log(2)
