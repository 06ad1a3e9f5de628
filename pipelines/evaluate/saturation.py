"""Saturation curves: how reproducibility grows with the number of aggregated items.

Zhao et al.'s subsampling protocol. From a pool of N per-item attributions (one item = one
dropout repeat, one reference or one trained model) we form, for each n in a grid, replicate
explanations that each average n distinct items; replicates are disjoint (items are drawn without
replacement from a permutation of the pool), and every pair of replicates is compared (per-sample
Spearman and top-k overlap). The curve is the mean over pairs and samples; saturation is the
first n whose doubling gains less than ``tol`` (0.01 by default).

The pool is built from per-item partial results kept for a small sample subset
(:func:`gexplain.pipelines.evaluate.saturation_stage.saturation_pools`), so curves never recompute the
full attribution run.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from gexplain.pipelines.evaluate.reproducibility import per_sample_spearman, top_k_overlap
from gexplain.storage.errors import InputError


def doubling_grid(n_pool: int) -> list[int]:
    """Return 1, 2, 4, ... up to half the pool (two disjoint replicates must fit).

    Parameters
    ----------
    n_pool
        Number of items in the pool (>= 2).
    """
    if n_pool < 2:
        raise InputError(f"a saturation pool needs at least 2 items, got {n_pool}; raise the pool size")
    grid, n = [], 1
    while n <= n_pool // 2:
        grid.append(n)
        n *= 2
    return grid


def saturation_curve(
    pool: np.ndarray,
    *,
    grid: Sequence[int] | None = None,
    k: int = 100,
    n_draws: int = 5,
    max_replicates: int = 8,
    seed: int = 0,
    absolute: bool = True,
) -> pd.DataFrame:
    """Reproducibility versus the number n of aggregated items.

    Parameters
    ----------
    pool
        Per-item attributions, shape (item, sample, gene).
    grid
        Values of n (default :func:`doubling_grid`); each must satisfy ``2 * n <= items``.
    k
        Top-k size of the overlap metric.
    n_draws
        Independent permutations of the pool per n.
    max_replicates
        At most this many disjoint replicates per permutation (all their pairs are compared).
    seed
        Seed of the permutations (draw ``d`` of size ``n`` uses ``(seed, n, d)``).
    absolute
        Rank genes by absolute attribution.

    Returns
    -------
    pandas.DataFrame
        One row per n: ``n``, ``n_pairs`` (replicate pairs compared), ``spearman_mean``,
        ``spearman_sd``, ``top_k_overlap_mean``, ``top_k_overlap_sd`` (over pairs x samples).
    """
    pool = np.asarray(pool, dtype=np.float64)
    if pool.ndim != 3:
        raise InputError(f"pool must be (item, sample, gene), got shape {pool.shape}")
    n_items = pool.shape[0]
    grid = list(grid) if grid is not None else doubling_grid(n_items)
    rows = []
    for n in grid:
        if n < 1 or 2 * n > n_items:
            raise InputError(
                f"saturation grid value n={n} needs 2*n <= pool size {n_items}; drop it or enlarge the pool"
            )
        n_rep = min(n_items // n, max_replicates)
        rho: list[np.ndarray] = []
        ovl: list[np.ndarray] = []
        for d in range(n_draws):
            order = np.random.default_rng([seed, n, d]).permutation(n_items)
            reps = [pool[order[r * n : (r + 1) * n]].mean(axis=0) for r in range(n_rep)]
            for i, j in combinations(range(n_rep), 2):
                rho.append(per_sample_spearman(reps[i], reps[j], absolute=absolute))
                ovl.append(top_k_overlap(reps[i], reps[j], k, absolute=absolute))
        r_all = np.concatenate(rho)
        o_all = np.concatenate(ovl)
        rows.append(
            {
                "n": n,
                "n_pairs": len(rho),
                "spearman_mean": float(np.nanmean(r_all)),
                "spearman_sd": float(np.nanstd(r_all)),
                "top_k_overlap_mean": float(np.mean(o_all)),
                "top_k_overlap_sd": float(np.std(o_all)),
            }
        )
    return pd.DataFrame(rows)


def saturation_point(curve: pd.DataFrame, metric: str = "spearman_mean", tol: float = 0.01) -> int | None:
    """The first n whose doubling improves ``metric`` by less than ``tol``.

    Parameters
    ----------
    curve
        Output of :func:`saturation_curve` (rows sorted by n, consecutive n doubling).
    metric
        Column to test.
    tol
        Gain per doubling below which the curve counts as saturated.

    Returns
    -------
    int or None
        That n, or None when the curve still gains at its last doubling.
    """
    c = curve.sort_values("n")
    ns = c["n"].to_numpy()
    vals = c[metric].to_numpy()
    for i in range(len(ns) - 1):
        if ns[i + 1] == 2 * ns[i] and vals[i + 1] - vals[i] < tol:
            return int(ns[i])
    return None


def summarise_saturation(curves: dict[str, pd.DataFrame], tol: float = 0.01) -> pd.DataFrame:
    """One row per curve: its saturation n for Spearman and for top-k overlap.

    Parameters
    ----------
    curves
        Curve name (e.g. ``"integrated_gradients/repeats"``) -> :func:`saturation_curve` output.
    tol
        Gain-per-doubling threshold.
    """
    rows: list[dict[str, Any]] = []
    for name, curve in curves.items():
        rows.append(
            {
                "curve": name,
                "max_n": int(curve["n"].max()),
                "spearman_at_max": float(curve.sort_values("n")["spearman_mean"].iloc[-1]),
                "saturation_n_spearman": saturation_point(curve, "spearman_mean", tol),
                "saturation_n_top_k": saturation_point(curve, "top_k_overlap_mean", tol),
            }
        )
    return pd.DataFrame(rows)
