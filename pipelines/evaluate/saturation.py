"""Saturation curves: how reproducibility grows with the number of aggregated items.

Three constructions of the replicates compared at each n (every pair of replicates gives a
per-sample Spearman and top-k overlap; a curve point is the mean over pairs and samples):

* :func:`inter_model_curve`, Zhao et al. (2022) Methods, "Simulation for optimal repeat number on
  the same model" and "... optimal number of references": replicate j is the mean of n items
  (repeats or references) of model j, drawn at random from that model's pool; the replicates of
  the 5 models are compared over all C(5, 2) pairs.
* :func:`resampled_curve`, the paper's "Simulation for an optimal number of aggregated models":
  K = max(M / n, 4) replicates, each the mean of n of the M models drawn at random; all C(K, 2)
  pairs.
* :func:`saturation_curve`, gexplain's earlier "intra-model" construction: disjoint subsets of one
  pool. Its replicates share the model, so its curves tend to 1 and their saturation points are not
  the paper's.

Saturation is the first n whose doubling gains less than ``tol`` (0.01 by default).

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


def _pair_metrics(
    reps: Sequence[np.ndarray], k: int, absolute: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rho, ovl = [], []
    for i, j in combinations(range(len(reps)), 2):
        rho.append(per_sample_spearman(reps[i], reps[j], absolute=absolute))
        ovl.append(top_k_overlap(reps[i], reps[j], k, absolute=absolute))
    return rho, ovl


def _row(n: int, rho: list[np.ndarray], ovl: list[np.ndarray]) -> dict[str, Any]:
    r_all, o_all = np.concatenate(rho), np.concatenate(ovl)
    return {
        "n": n,
        "n_pairs": len(rho),
        "spearman_mean": float(np.nanmean(r_all)),
        "spearman_sd": float(np.nanstd(r_all)),
        "top_k_overlap_mean": float(np.mean(o_all)),
        "top_k_overlap_sd": float(np.std(o_all)),
    }


def full_doubling_grid(n_max: int) -> list[int]:
    """1, 2, 4, ... and ``n_max`` itself (the paper uses every n; doubling keeps the cost low)."""
    grid, n = [], 1
    while n < n_max:
        grid.append(n)
        n *= 2
    return [*grid, n_max]


def inter_model_curve(
    pools: np.ndarray,
    *,
    grid: Sequence[int] | None = None,
    k: int = 100,
    n_draws: int = 5,
    seed: int = 0,
    absolute: bool = True,
) -> pd.DataFrame:
    """Zhao et al.'s repeats / references curve: replicates of different models, n items each.

    Parameters
    ----------
    pools
        Per-item attributions of each model, shape (model, item, sample, gene); at least 2 models.
    grid
        Values of n, each in [1, items] (default :func:`full_doubling_grid` of the items).
    k
        Top-k size of the overlap metric.
    n_draws
        Independent draws of the n items per model.
    seed
        Seed: draw ``d`` of model ``j`` at ``n`` takes the first n of
        ``default_rng([seed, n, d, j]).permutation(items)``.
    absolute
        Rank genes by absolute attribution.

    Returns
    -------
    pandas.DataFrame
        As :func:`saturation_curve`; ``n_pairs`` = C(models, 2) x draws.
    """
    pools = np.asarray(pools, dtype=np.float64)
    if pools.ndim != 4 or pools.shape[0] < 2:
        raise InputError(
            f"inter-model pools must be (model >= 2, item, sample, gene), got shape {pools.shape}"
        )
    n_models, n_items = pools.shape[:2]
    grid = list(grid) if grid is not None else full_doubling_grid(n_items)
    rows = []
    for n in grid:
        if not 1 <= n <= n_items:
            raise InputError(f"saturation grid value n={n} must be between 1 and the pool size {n_items}")
        rho: list[np.ndarray] = []
        ovl: list[np.ndarray] = []
        for d in range(n_draws):
            reps = [
                pools[j, np.random.default_rng([seed, n, d, j]).permutation(n_items)[:n]].mean(axis=0)
                for j in range(n_models)
            ]
            r, o = _pair_metrics(reps, k, absolute)
            rho += r
            ovl += o
        rows.append(_row(n, rho, ovl))
    return pd.DataFrame(rows)


def resampled_replicates(n_models: int, n: int) -> int:
    """The paper's K = max(M / n, 4) replicates (M / n rounded down)."""
    return max(n_models // n, 4)


def resampled_curve(
    pool: np.ndarray,
    *,
    grid: Sequence[int] | None = None,
    k: int = 100,
    n_draws: int = 1,
    seed: int = 0,
    absolute: bool = True,
) -> pd.DataFrame:
    """Zhao et al.'s models-axis curve: K = max(M / n, 4) replicates of n random models each.

    Parameters
    ----------
    pool
        Per-model attributions, shape (model, sample, gene), M >= 3 models.
    grid
        Values of n in [1, M - 1] (default: 1, 2, 4, ... up to max(2, M // 3), the paper's 20 of 60).
    k
        Top-k size of the overlap metric.
    n_draws
        Independent sets of K replicates per n.
    seed
        Seed: replicate ``r`` of draw ``d`` at ``n`` is the first n of
        ``default_rng([seed, n, d, r]).permutation(M)``.
    absolute
        Rank genes by absolute attribution.

    Returns
    -------
    pandas.DataFrame
        As :func:`saturation_curve`; ``n_pairs`` = C(K, 2) x draws.
    """
    pool = np.asarray(pool, dtype=np.float64)
    if pool.ndim != 3 or pool.shape[0] < 3:
        raise InputError(
            f"a resampled models pool must be (model >= 3, sample, gene), got shape {pool.shape}"
        )
    n_models = pool.shape[0]
    if grid is None:
        top = min(max(2, n_models // 3), n_models - 1)
        grid = [n for n in full_doubling_grid(top) if n <= top]
    rows = []
    for n in grid:
        if not 1 <= n < n_models:
            raise InputError(f"saturation grid value n={n} must be between 1 and models - 1 = {n_models - 1}")
        rho: list[np.ndarray] = []
        ovl: list[np.ndarray] = []
        for d in range(n_draws):
            reps = [
                pool[np.random.default_rng([seed, n, d, r]).permutation(n_models)[:n]].mean(axis=0)
                for r in range(resampled_replicates(n_models, n))
            ]
            r_, o_ = _pair_metrics(reps, k, absolute)
            rho += r_
            ovl += o_
        rows.append(_row(n, rho, ovl))
    return pd.DataFrame(rows)


def saturation_point(curve: pd.DataFrame, metric: str = "spearman_mean", tol: float = 0.01) -> int | None:
    """The first n whose doubling improves ``metric`` by less than ``tol``.

    Parameters
    ----------
    curve
        A curve (columns ``n`` and ``metric``); pairs (n, 2n) both on its grid are tested.
    metric
        Column to test.
    tol
        Gain per doubling below which the curve counts as saturated.

    Returns
    -------
    int or None
        That n, or None when the curve still gains at its last doubling.
    """
    values = dict(zip(curve["n"].astype(int), curve[metric], strict=True))
    for n in sorted(values):
        if 2 * n in values and values[2 * n] - values[n] < tol:
            return n
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
        first = curve.iloc[0]
        rows.append(
            {
                "curve": name,
                **{c: first[c] for c in ("explainer", "axis", "variant", "n_models") if c in curve},
                "max_n": int(curve["n"].max()),
                "spearman_at_max": float(curve.sort_values("n")["spearman_mean"].iloc[-1]),
                "saturation_n_spearman": saturation_point(curve, "spearman_mean", tol),
                "saturation_n_top_k": saturation_point(curve, "top_k_overlap_mean", tol),
            }
        )
    return pd.DataFrame(rows)
