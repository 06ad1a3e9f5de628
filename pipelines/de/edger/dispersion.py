"""edgeR's ``estimateDisp``: Cox-Reid adjusted profile likelihoods on a dispersion grid, smoothed.

The grid is 21 points ``t`` in [-10, 10], dispersions ``0.1 * 2^t``. Each gene's APL at every
grid point (:func:`apl_grid`) is maximised by FMM spline interpolation
(:func:`maximize_interpolant`): summed over genes for the common dispersion, smoothed over
``AveLogCPM`` by locfit's local-constant tricube nearest-neighbour fit for the trend (:func:`locfit_by_col`),
and added to ``prior.n`` times the smoothed curve for the tagwise dispersions.
"""

from __future__ import annotations

import numpy as np
from gexplain.pipelines.de.edger.glm import LOW_VALUE, glm_fit
from scipy.special import gammaln

GRID_POINTS = np.linspace(-10.0, 10.0, 21)
GRID_DISPERSIONS = 0.1 * 2.0**GRID_POINTS
ZERO_FIT = 1e-4
MIN_ROW_SUM = 5
LOCFIT_CUT = 0.8


def zero_fitted(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Observations with a zero count fitted as zero (both < 1e-4), dims (gene, sample)."""
    return (y < ZERO_FIT) & (mu < ZERO_FIT)


def independent_columns(design: np.ndarray) -> np.ndarray:
    """Indices of the columns kept by R's pivoted QR (``qr(x)$pivot[1:rank]``): the greedy independent ones."""
    kept: list[int] = []
    for j in range(design.shape[1]):
        trial = design[:, [*kept, j]]
        if np.linalg.matrix_rank(trial, tol=1e-7 * max(1.0, np.abs(trial).max())) == len(kept) + 1:
            kept.append(j)
    return np.array(kept, dtype=int)


def residual_df(zero: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``.residDF``: residual df with zero-fitted observations and the coefficients they fix removed."""
    n, p = design.shape
    nzero = zero.sum(axis=1)
    df = np.full(zero.shape[0], n - p, dtype=np.int64)
    df[nzero == n] = 0
    some = np.flatnonzero((nzero > 0) & (nzero < n))
    if some.size:
        patterns, inverse = np.unique(zero[some], axis=0, return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        for k, pattern in enumerate(patterns):
            rank = np.linalg.matrix_rank(design[~pattern])
            rows = some[inverse == k]
            df[rows] = np.maximum(n - nzero[rows] - rank, 0)
    return df


def _log_det_ldl(a: np.ndarray) -> np.ndarray:
    """Sum of log LDL' pivots of a stack of symmetric matrices, pivots < 1e-10 read as 1e-10."""
    a = a.copy()
    p = a.shape[1]
    total = np.zeros(a.shape[0])
    for k in range(p):
        d = a[:, k, k].copy()
        bad = ~np.isfinite(d) | (d < LOW_VALUE)
        total += np.log(np.where(bad, LOW_VALUE, d))
        if k + 1 < p:
            safe = np.where(bad, np.inf, d)
            col = a[:, k + 1 :, k]
            a[:, k + 1 :, k + 1 :] -= col[:, :, None] * col[:, None, :] / safe[:, None, None]
    return total


def apl(y: np.ndarray, mu: np.ndarray, phi: float, design: np.ndarray) -> np.ndarray:
    """``compute_apl``: NB log-likelihood minus half the log determinant of X'WX, dims (gene,)."""
    r = 1.0 / phi
    with np.errstate(divide="ignore", invalid="ignore"):
        logmur = np.log(mu + r)
        ll = (
            y * np.log(mu)
            - y * logmur
            + r * np.log(r)
            - r * logmur
            + gammaln(y + r)
            - gammaln(y + 1)
            - gammaln(r)
        )
    ll = np.where(mu == 0, 0.0, ll).sum(axis=1)
    w = np.where(mu == 0, 0.0, mu / (1 + phi * mu))
    if design.shape[1] == 1:
        return ll - 0.5 * np.log(np.abs(w.sum(axis=1)))
    xtwx = np.einsum("gs,si,sj->gij", w, design, design)
    return ll - 0.5 * _log_det_ldl(xtwx)


def apl_grid(y: np.ndarray, design: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The APL of each gene at each grid dispersion (estimateDisp's ``l0``), dims (gene, 21).

    Genes are grouped by their pattern of zero-fitted observations under a fit at dispersion
    0.05; those observations and the coefficients they alone determine are dropped, and genes
    left with no residual df keep zeros, as edgeR does.

    Parameters
    ----------
    y
        Counts of the genes with row sum >= 5, dims (gene, sample).
    design
        Dims (sample, coefficient).
    offset
        Natural-log effective library sizes, dims (sample,).
    """
    off = np.broadcast_to(offset, y.shape)
    _, mu, _ = glm_fit(y, design, off, np.full(y.shape[0], 0.05))
    zero = zero_fitted(y, mu)
    out = np.zeros((y.shape[0], GRID_DISPERSIONS.size))
    patterns, inverse = np.unique(zero, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    for k, pattern in enumerate(patterns):
        keep = ~pattern
        if not keep.any():
            continue
        rows = np.flatnonzero(inverse == k)
        sub = design if keep.all() else design[keep][:, independent_columns(design[keep])]
        if not keep.all() and sub.shape[0] == sub.shape[1]:
            continue
        cy, co = y[np.ix_(rows, keep)], off[np.ix_(rows, keep)]
        beta = None
        for j, phi in enumerate(GRID_DISPERSIONS):
            beta, fitted, _ = glm_fit(cy, sub, co, np.full(rows.size, phi), beta)
            out[rows, j] = apl(cy, fitted, phi, sub)
    return out


def _fmm_coefficients(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forsythe-Malcolm-Moler cubic spline coefficients (R's ``spline_coef``, method fmm) per row.

    Parameters
    ----------
    x
        Knots, dims (point,), increasing, at least 4.
    y
        Values, dims (row, point).

    Returns
    -------
    tuple of numpy.ndarray
        ``b``, ``c``, ``d``, each (row, point): on segment i the spline is
        ``y_i + b_i u + c_i u^2 + d_i u^3`` with ``u = x - x_i``.
    """
    n = x.size
    rows = y.shape[0]
    b = np.zeros((rows, n))
    c = np.zeros((rows, n))
    d = np.zeros((rows, n))
    h = np.diff(x)
    d[:, 0] = h[0]
    c[:, 1] = (y[:, 1] - y[:, 0]) / h[0]
    for i in range(1, n - 1):
        d[:, i] = h[i]
        b[:, i] = 2.0 * (h[i - 1] + h[i])
        c[:, i + 1] = (y[:, i + 1] - y[:, i]) / h[i]
        c[:, i] = c[:, i + 1] - c[:, i]
    b[:, 0] = -h[0]
    b[:, n - 1] = -h[n - 2]
    c0 = c[:, 2] / (x[3] - x[1]) - c[:, 1] / (x[2] - x[0])
    cn = c[:, n - 2] / (x[n - 1] - x[n - 3]) - c[:, n - 3] / (x[n - 2] - x[n - 4])
    c[:, 0] = c0 * h[0] * h[0] / (x[3] - x[0])
    c[:, n - 1] = -cn * h[n - 2] * h[n - 2] / (x[n - 1] - x[n - 4])
    for i in range(1, n):
        t = d[:, i - 1] / b[:, i - 1]
        b[:, i] = b[:, i] - t * d[:, i - 1]
        c[:, i] = c[:, i] - t * c[:, i - 1]
    c[:, n - 1] = c[:, n - 1] / b[:, n - 1]
    for i in range(n - 2, -1, -1):
        c[:, i] = (c[:, i] - d[:, i] * c[:, i + 1]) / b[:, i]
    for i in range(n - 1):
        b[:, i] = (y[:, i + 1] - y[:, i]) / h[i] - h[i] * (c[:, i + 1] + 2.0 * c[:, i])
        d[:, i] = (c[:, i + 1] - c[:, i]) / h[i]
        c[:, i] = 3.0 * c[:, i]
    return b, c, d


def _segment_max(
    b: np.ndarray, c: np.ndarray, d: np.ndarray, y0: np.ndarray, width: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The smaller root ``u`` of a segment's derivative inside (0, width) and the spline there (-inf if none)."""
    qa, qb, qc = 3 * d, 2 * c, b
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = qb * qb - 4 * qa * qc
        quad = (-qb / (2 * qa)) - np.sqrt(disc) / (2 * qa)
        lin = -qc / qb
    u = np.where(qa == 0, lin, quad)
    ok = np.where(qa == 0, qb != 0, disc >= 0) & (u > 0) & (u < width)
    value = ((d * u + c) * u + b) * u + y0
    return u, np.where(ok, value, -np.inf)


def maximize_interpolant(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``maximizeInterpolant``: where each row's FMM spline through ``(x, y)`` peaks, dims (row,).

    The largest grid value is refined within its left, then its right segment.
    """
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    b, c, d = _fmm_coefficients(x, y)
    rows = np.arange(y.shape[0])
    n = x.size
    at = y.argmax(axis=1)
    best = y[rows, at]
    x_max = x[at].astype(np.float64)
    i = np.maximum(at - 1, 0)
    u, value = _segment_max(b[rows, i], c[rows, i], d[rows, i], y[rows, i], x[at] - x[i])
    take = (at > 0) & (value > best)
    best = np.where(take, value, best)
    x_max = np.where(take, u + x[i], x_max)
    j = np.minimum(at + 1, n - 1)
    u, value = _segment_max(b[rows, at], c[rows, at], d[rows, at], y[rows, at], x[j] - x[at])
    take = (at < n - 1) & (value > best)
    return np.where(take, u + x[at], x_max)


def _local_means(x: np.ndarray, y: np.ndarray, at: np.ndarray, k: int, block: int) -> np.ndarray:
    """Tricube nearest-neighbour local means of the columns of ``y`` at points ``at``, dims (point, column)."""
    out = np.empty((at.size, y.shape[1]))
    for lo in range(0, at.size, block):
        dist = np.abs(at[lo : lo + block, None] - x[None, :])
        h = np.partition(dist, k - 1, axis=1)[:, k - 1]
        u = dist / h[:, None]
        w = np.where(u < 1, (1 - u**3) ** 3, 0.0)
        out[lo : lo + block] = (w @ y) / w.sum(axis=1)[:, None]
    return out


def _bandwidth(x: np.ndarray, at: float, k: int) -> float:
    """Distance from ``at`` to its ``k``-th nearest covariate value."""
    return float(np.partition(np.abs(x - at), k - 1)[k - 1])


def tree_vertices(x: np.ndarray, k: int, cut: float = LOCFIT_CUT) -> np.ndarray:
    """locfit's adaptive tree (``ev = "tree"``, 1-D): the sorted vertices, dims (vertex,).

    Starting from the covariate's range, a cell is halved while its width exceeds ``cut`` times
    the smaller nearest-neighbour bandwidth of its two ends.
    """
    lo, hi = float(x.min()), float(x.max())
    h = {lo: _bandwidth(x, lo, k), hi: _bandwidth(x, hi, k)}
    cells = [(lo, hi)]
    while cells:
        a, b = cells.pop()
        if b - a > cut * min(h[a], h[b]):
            mid = (a + b) / 2
            h[mid] = _bandwidth(x, mid, k)
            cells += [(a, mid), (mid, b)]
    return np.array(sorted(h))


def locfit_by_col(y: np.ndarray, x: np.ndarray, span: float, block: int = 512) -> np.ndarray:
    """``locfitByCol(degree = 0)``: each column's tricube nearest-neighbour local mean over ``x``.

    As R's locfit by default: the local fits are made at the vertices of its adaptive tree
    (:func:`tree_vertices`) and, the fit being of degree 0, interpolated linearly between them.
    The bandwidth at a point is the distance to its ``floor(n * span)``-th nearest covariate value.

    Parameters
    ----------
    y
        Dims (gene, column).
    x
        Covariate, dims (gene,).
    span
        Fraction of genes in each neighbourhood.
    block
        Vertices fitted at once (memory ``block * gene`` float64).

    Returns
    -------
    numpy.ndarray
        Dims (gene, column).
    """
    n = x.size
    if span * n < 2 or n <= 1:
        return y.copy()
    k = int(np.floor(n * span + 1e-12))
    vertices = tree_vertices(x, k)
    at_vertices = _local_means(x, y, vertices, k, block)
    if vertices.size == 1:
        return np.broadcast_to(at_vertices, y.shape).copy()
    return np.stack([np.interp(x, vertices, at_vertices[:, j]) for j in range(y.shape[1])], axis=1)


def wleb_span(n_genes: int) -> float:
    """WLEB's default span: 1 up to 50 genes, else ``0.25 + 0.75 sqrt(50 / n)``."""
    return 1.0 if n_genes <= 50 else 0.25 + 0.75 * (50 / n_genes) ** 0.5
