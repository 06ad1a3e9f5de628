"""L-BFGS-B on many independent one-dimensional problems at once.

Each problem keeps its own state in SciPy's L-BFGS-B routine ``setulb`` (the code behind
``scipy.optimize.minimize(method="L-BFGS-B")``), called with the options ``minimize`` uses by
default, so every problem follows the path a separate ``minimize`` call would take. The objective
is evaluated for all problems that request it in one vectorised call, which removes the
per-problem Python overhead of ``minimize``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import _lbfgsb  # the routine minimize(method="L-BFGS-B") drives

MAXCOR = 10
FTOL = 2.2204460492503131e-09
GTOL = 1e-5
MAXLS = 20
MAXITER = 15000

_FG = 3  # task codes of setulb: evaluate f and g, new iterate, converged
_NEW_X = 1
_CONVERGENCE = 4

Objective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def minimize_batch(
    fun_and_grad: Objective, x0: np.ndarray, lower: float, upper: float
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``len(x0)`` scalar functions on ``[lower, upper]``, each with L-BFGS-B.

    Parameters
    ----------
    fun_and_grad
        ``fun_and_grad(x, idx)`` returns the values and derivatives (each dims (k,)) of problems
        ``idx`` (dims (k,), indices into ``x0``) at points ``x`` (dims (k,)).
    x0
        Starting points, dims (problem,); clipped to the bounds as ``minimize`` does.
    lower, upper
        Bounds shared by all problems.

    Returns
    -------
    x
        Solutions, dims (problem,).
    success
        Dims (problem,); False where L-BFGS-B stopped without convergence (as ``res.success``).
    """
    k = x0.size
    x = np.clip(np.asarray(x0, dtype=np.float64), lower, upper).reshape(k, 1).copy()
    f = np.zeros(k)
    g = np.zeros((k, 1))
    wa = np.zeros((k, 2 * MAXCOR + 5 + 11 * MAXCOR * MAXCOR + 8 * MAXCOR))
    iwa = np.zeros((k, 3), dtype=np.int32)
    task = np.zeros((k, 2), dtype=np.int32)
    ln_task = np.zeros((k, 2), dtype=np.int32)
    lsave = np.zeros((k, 4), dtype=np.int32)
    isave = np.zeros((k, 44), dtype=np.int32)
    dsave = np.zeros((k, 29))
    low, up = np.array([lower]), np.array([upper])
    nbd = np.array([2], dtype=np.int32)  # both bounds finite
    factr = FTOL / np.finfo(float).eps
    n_iter = np.zeros(k, dtype=np.int64)
    # as minimize: the objective at the (clipped) start is known before the first setulb call
    f[:], g[:, 0] = fun_and_grad(x[:, 0].copy(), np.arange(k))
    active = np.arange(k)
    while active.size:
        for i in active:
            _lbfgsb.setulb(
                MAXCOR, x[i], low, up, nbd, f[i], g[i], factr, GTOL, wa[i], iwa[i],
                task[i], lsave[i], isave[i], dsave[i], MAXLS, ln_task[i],
            )  # fmt: skip
        codes = task[active, 0]
        new_x = active[codes == _NEW_X]
        n_iter[new_x] += 1
        task[new_x[n_iter[new_x] >= MAXITER]] = (5, 504)  # minimize's "maxiter reached" stop
        want = active[codes == _FG]
        if want.size:
            f[want], g[want, 0] = fun_and_grad(x[want, 0].copy(), want)
        active = active[(codes == _FG) | (codes == _NEW_X)]
    return x[:, 0], task[:, 0] == _CONVERGENCE
