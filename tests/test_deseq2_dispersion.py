"""The vectorised dispersion fits against their references: SciPy's L-BFGS-B and pydeseq2's kernel."""

from __future__ import annotations

import numpy as np
from gexplain.pipelines.de.deseq2 import dispersion, lbfgsb
from pydeseq2.utils import fit_alpha_mle
from scipy.optimize import minimize


def test_minimize_batch_follows_scipy_lbfgsb() -> None:
    """Each problem ends where its own ``minimize(method="L-BFGS-B")`` call ends, bounds included."""
    rng = np.random.default_rng(3)
    k = 40
    centres = rng.uniform(-6, 6, k)  # some minima outside [-4, 4]: solutions on the bounds
    tilts = rng.uniform(-2, 2, k)
    starts = rng.uniform(-5, 5, k)  # some starts outside the bounds: clipped, as minimize does

    def fun(x: np.ndarray, c: np.ndarray, t: np.ndarray) -> np.ndarray:
        return (x - c) ** 2 * (0.1 * (x + 1) ** 2 + 1) + t * x

    def grad(x: np.ndarray, c: np.ndarray, t: np.ndarray) -> np.ndarray:
        return 2 * (x - c) * (0.1 * (x + 1) ** 2 + 1) + (x - c) ** 2 * 0.2 * (x + 1) + t

    x, ok = lbfgsb.minimize_batch(
        lambda x, idx: (fun(x, centres[idx], tilts[idx]), grad(x, centres[idx], tilts[idx])),
        starts,
        -4.0,
        4.0,
    )
    for i in range(k):
        res = minimize(
            lambda v, i=i: float(fun(v, centres[i], tilts[i])[0]),
            x0=np.array([starts[i]]),
            jac=lambda v, i=i: grad(v, centres[i], tilts[i]),
            method="L-BFGS-B",
            bounds=[(-4.0, 4.0)],
        )
        assert ok[i] == res.success
        np.testing.assert_allclose(x[i], res.x[0], rtol=1e-12, atol=1e-12)
    assert (np.abs(x) == 4.0).any()  # the bound case was exercised


def _nb_block(n: int, g: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    design = np.column_stack([np.ones(n), np.arange(n) % 2, rng.normal(size=n)])
    base = rng.lognormal(2.5, 1.5, g)
    disp = 0.05 + 2 / base
    mu = rng.lognormal(0, 0.2, (n, 1)) * base
    counts = rng.negative_binomial(1 / disp, 1 / (1 + mu * disp)).astype(np.float64)
    counts[:, 0] = rng.poisson(mu[:, 0])  # a Poisson gene (no overdispersion)
    return counts, design, mu


def test_alpha_mle_and_map_match_pydeseq2_kernel() -> None:
    """Gene-wise MLE and MAP dispersions equal pydeseq2's per-gene ``fit_alpha_mle``."""
    counts, design, mu = _nb_block(40, 120, 7)
    start = np.full(counts.shape[1], 0.2)
    upper = dispersion.max_disp(counts.shape[0])
    for prior_var in (None, 0.4):
        mine = dispersion.alpha_mle(counts, design, mu, start, prior_var)
        ref = np.array(
            [
                fit_alpha_mle(
                    counts[:, i],
                    design,
                    mu[:, i],
                    start[i],
                    dispersion.MIN_DISP,
                    upper,
                    prior_disp_var=prior_var,
                    prior_reg=prior_var is not None,
                )[0]
                for i in range(counts.shape[1])
            ]
        )
        rel = np.abs(mine - np.clip(ref, dispersion.MIN_DISP, upper)) / ref
        assert np.median(rel) <= 1e-12 and rel.max() <= 1e-5, (prior_var, rel.max())
