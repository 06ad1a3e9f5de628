"""Saturation curves from per-item attributions of a small sample subset.

For each axis a pool of per-item attributions is computed once, with
:func:`pipelines.explain.compute.explain_block`, on ``samples`` samples only, and kept in memory
(items x samples x genes float32); every curve point is then a cheap average of pool items:

* ``repeats``: item i = repeat i of the first model in ``mc_dropout`` mode (its own dropout mask
  and its own ``n_references`` references);
* ``references``: item i = one reference (repeat i) of the first model in ``deterministic`` mode,
  so items differ only by their reference;
* ``models``: item i = model replicate i in ``deterministic`` mode with the same references
  (references depend only on (seed, sample, repeat)), so items differ only by the model.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from pipelines.evaluate.run import EvaluateOptions, sample_subset
from pipelines.evaluate.saturation import saturation_curve, summarise_saturation
from pipelines.stages import StageParams
from storage.checkpoints import list_model_sets
from storage.schema import SAMPLE
from storage.store import open_store

Axis = Literal["repeats", "references", "models"]


class SaturationParams(StageParams):
    """Parameters of the saturation curves (``[stage.params.saturation]``)."""

    enabled: bool = Field(False, description="Compute saturation curves (needs a model set).")
    explainers: list[str] = Field(default_factory=lambda: ["integrated_gradients"], description="Explainers.")
    axes: list[Axis] = Field(
        default_factory=lambda: ["repeats", "references", "models"], description="Pools."
    )
    pool: int = Field(16, ge=2, description="Items per pool (curves go up to pool / 2).")
    samples: int = Field(16, ge=1, description="Samples of the subset the pools are computed on.")
    references: str = Field("universal", description="Reference kind.")
    n_references: int = Field(
        1, ge=1, description="References per repeat in the 'repeats' and 'models' pools."
    )
    n_steps: int = Field(20, ge=1, description="Integrated-gradients steps.")
    draws: int = Field(5, ge=1, description="Permutations of the pool per n.")
    max_replicates: int = Field(
        8, ge=2, description="Disjoint replicates per permutation (all pairs compared)."
    )
    tol: float = Field(0.01, gt=0, description="Gain per doubling below which a curve is saturated.")


def saturation_pools(
    store_url: str, opts: EvaluateOptions, params: SaturationParams
) -> dict[tuple[str, str], np.ndarray]:
    """(explainer, axis) -> pool (item, sample, gene) on the sample subset."""
    from pipelines.explain.compute import ExplainSpec, compute_reference_stats, explain_block
    from pipelines.explain.engine import model_set_info, sample_targets
    from pipelines.models.load import load_models

    ds = open_store(store_url)
    info = model_set_info(store_url, opts.model_set, None)
    targets = sample_targets(ds, info)
    loaded = load_models(store_url, opts.model_set, genes=np.asarray(ds["gene"].values).astype(str))
    modules = [m.module for m in loaded]
    ids = [m.replicate for m in loaded]
    pick = sample_subset(np.asarray(ds[SAMPLE].values), params.samples, opts.seed)
    x = np.asarray(ds[info.layer].isel({SAMPLE: pick}).values, dtype=np.float32)
    ref_stats = compute_reference_stats(ds[info.layer].data, targets)
    base = ExplainSpec(
        explainers=tuple(params.explainers),
        references=params.references,
        n_references=params.n_references,
        n_steps=params.n_steps,
    )
    specs = {
        "repeats": dataclasses.replace(base, mode="mc_dropout"),
        "references": dataclasses.replace(base, mode="deterministic", n_references=1),
        "models": dataclasses.replace(base, mode="deterministic"),
    }
    pools: dict[tuple[str, str], np.ndarray] = {}
    for axis in params.axes:
        n_items = min(params.pool, len(modules)) if axis == "models" else params.pool
        if n_items < 2:
            continue
        items = []
        for i in range(n_items):
            m, rep = (i, 0) if axis == "models" else (0, i)
            partial = explain_block(
                [modules[m]],
                [ids[m]],
                x,
                targets[pick],
                pick,
                range(rep, rep + 1),
                ref_stats,
                specs[axis],
                opts.seed,
            )
            items.append({e: np.asarray(v[0], dtype=np.float32) for e, v in partial.finalize().items()})
        for e in params.explainers:
            pools[(e, axis)] = np.stack([item[e] for item in items])
    return pools


def saturation_part(
    store_url: str, opts: EvaluateOptions, params: SaturationParams
) -> dict[str, pd.DataFrame]:
    """Saturation curves and their summary for every explainer and axis.

    Returns
    -------
    dict
        ``saturation_curves`` (columns curve, explainer, axis, n, n_pairs, spearman_*, top_k_overlap_*)
        and ``saturation_summary`` (:func:`summarise_saturation`); empty when the store has no
        model set. ``k`` is clipped to the number of genes.
    """
    if opts.model_set not in list_model_sets(store_url):
        return {}
    curves: dict[str, pd.DataFrame] = {}
    for (explainer, axis), pool in saturation_pools(store_url, opts, params).items():
        curve = saturation_curve(
            pool,
            k=min(opts.k, pool.shape[2]),
            n_draws=params.draws,
            max_replicates=params.max_replicates,
            seed=opts.seed,
            absolute=True,
        )
        curves[f"{explainer}/{axis}"] = curve.assign(explainer=explainer, axis=axis)
    if not curves:
        return {}
    table = pd.concat([c.assign(curve=name) for name, c in curves.items()], ignore_index=True)
    return {"saturation_curves": table, "saturation_summary": summarise_saturation(curves, params.tol)}
