"""Saturation curves from per-item attributions of a small sample subset.

For each axis a pool of per-item attributions is computed once, with
:func:`gexplain.pipelines.explain.compute.explain_block`, on ``samples`` samples only, and kept in memory
(items x samples x genes float32); every curve point is then a cheap average of pool items:

* ``repeats``: item i of model j = repeat i of model j (the first ``models`` models) in ``mc_dropout`` mode (its own dropout mask,
  the ``n_references`` cohort references). For the MLP and the explainers linear in the mask the
  items are not recomputed: the per-hidden-unit terms L (unit, sample, gene) of the exact
  decomposition ``A(m) = sum_h m_h L_h`` (:func:`gexplain.pipelines.explain.fastpath.unit_terms`) are
  computed once and item i is ``sum_h m_ih L_h`` for its keyed mask; the curve also gets the
  exact variance of an n-repeat mean around the infinite-repeat limit, ``p/(1-p) sum_h L_h^2 / n``
  (column ``exact_var_mean``, averaged over samples and genes);
* ``references``: item i of model j = one reference (repeat i) of model j in ``deterministic`` mode,
  so a model's items differ only by their reference;
* ``models``: item i = model replicate i. Taken from stored partial results where possible: the
  per-model means ``attr_<explainer>_model`` (model, sample, gene) of a complete explain run made
  with ``per_model=true`` whose replicates belong to the model set (the first such run by name,
  among ``explain_runs`` when given); otherwise recomputed in ``deterministic`` mode with the same
  references (references depend only on (seed, sample, repeat)), so items differ only by the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.evaluate.inputs import explain_runs
from gexplain.pipelines.evaluate.params import SaturationParams
from gexplain.pipelines.evaluate.run import sample_subset
from gexplain.pipelines.evaluate.saturation import (
    inter_model_curve,
    resampled_curve,
    saturation_curve,
    summarise_saturation,
)
from gexplain.storage.checkpoints import list_model_sets
from gexplain.storage.schema import SAMPLE
from gexplain.storage.store import open_store

if TYPE_CHECKING:
    from gexplain.pipelines.evaluate.params import EvaluateParams
    from gexplain.pipelines.explain.engine import ModelSetInfo

MODEL = "model"


def stored_model_pool(
    runs: dict[str, xr.Dataset], explainer: str, model_ids: list[int], samples: np.ndarray, max_items: int
) -> np.ndarray | None:
    """The models-axis pool of ``explainer`` from stored per-model means, if a run has them.

    Parameters
    ----------
    runs
        Complete explain results by run name (:func:`gexplain.pipelines.evaluate.inputs.explain_runs`).
    explainer
        Explainer name; the run must hold ``attr_<explainer>_model`` (model, sample, gene).
    model_ids
        Replicate numbers of the evaluated model set; stored models outside it are ignored.
    samples
        Sample ids (store coordinate values) of the subset, shape (samples,).
    max_items
        At most this many models (in stored order).

    Returns
    -------
    numpy.ndarray or None
        float32 (item, sample, gene) in attribution units, from the first run (by name) with at
        least two of the model set's replicates; None when no run has them.
    """
    var = f"attr_{explainer}_model"
    wanted = set(int(m) for m in model_ids)
    for name in sorted(runs):
        res = runs[name]
        if var not in res or MODEL not in res.coords:
            continue
        keep = [i for i, m in enumerate(np.asarray(res[MODEL].values)) if int(m) in wanted][:max_items]
        if len(keep) < 2:
            continue
        return np.asarray(res[var].isel({MODEL: keep}).sel({SAMPLE: samples}).values, dtype=np.float32)
    return None


def saturation_pools(
    store_url: str, opts: EvaluateParams, params: SaturationParams
) -> dict[tuple[str, str], np.ndarray]:
    """(explainer, axis) -> pool on the sample subset: (model, item, sample, gene) for the repeats
    and references axes (the first ``params.models`` models of the set), (model, sample, gene) for
    the models axis.

    The ``models`` pools come from stored per-model means where a run has them
    (:func:`stored_model_pool`); every other pool is computed here with ``explain_block``.
    """
    from gexplain.pipelines.explain.engine import model_set_info

    ds = open_store(store_url)
    info = model_set_info(store_url, opts.model_set, None)
    pick = sample_subset(np.asarray(ds[SAMPLE].values), params.samples, opts.seed)
    pools: dict[tuple[str, str], np.ndarray] = {}
    todo = {axis: list(params.explainers) for axis in params.axes}
    if "models" in todo:
        runs = explain_runs(store_url, list(opts.explain_runs) or None)
        sample_ids = np.asarray(ds[SAMPLE].values)[pick]
        for e in params.explainers:
            pool = stored_model_pool(runs, e, list(info.model_ids), sample_ids, params.pool)
            if pool is not None:
                pools[(e, "models")] = pool
        todo["models"] = [e for e in params.explainers if (e, "models") not in pools]
    todo = {axis: names for axis, names in todo.items() if names}
    if todo:
        pools.update(_computed_pools(store_url, opts, params, info, pick, todo))
    return {(e, a): pools[(e, a)] for a in params.axes for e in params.explainers if (e, a) in pools}


def _computed_pools(
    store_url: str,
    opts: EvaluateParams,
    params: SaturationParams,
    info: ModelSetInfo,
    pick: np.ndarray,
    todo: dict[str, list[str]],
) -> dict[tuple[str, str], np.ndarray]:
    """Pools computed with ``explain_block`` for ``todo`` (axis -> explainers) on samples ``pick``."""
    from gexplain.pipelines.explain.compute import compute_reference_stats, explain_block
    from gexplain.pipelines.explain.engine import sample_targets
    from gexplain.pipelines.explain.params import ExplainParams
    from gexplain.pipelines.models.load import load_models

    ds = open_store(store_url)
    targets = sample_targets(ds, info)
    loaded = load_models(store_url, opts.model_set, genes=np.asarray(ds["gene"].values).astype(str))
    modules = [m.module for m in loaded]
    ids = [m.replicate for m in loaded]
    x = np.asarray(ds[info.layer].isel({SAMPLE: pick}).values, dtype=np.float32)
    ref_stats = compute_reference_stats(
        ds[info.layer].data, targets, medians=params.references == "universal"
    )
    common = {
        "references": f"{params.references}:{params.n_references}",
        "reference_scope": "sample",
        "repeat_mode": "explicit",
        "n_steps": params.n_steps,
    }
    specs = {
        "repeats": {**common, "mode": "mc_dropout"},
        "references": {**common, "mode": "deterministic", "references": f"{params.references}:1"},
        "models": {**common, "mode": "deterministic"},
    }
    pools: dict[tuple[str, str], np.ndarray] = {}
    n_models = min(params.models, len(modules))
    if "repeats" in todo:
        per_model = [
            exact_repeat_pools(
                modules[m], ids[m], x, targets[pick], pick, ref_stats, params, opts.seed, todo["repeats"], m
            )
            for m in range(n_models)
        ]
        for key in per_model[0]:
            pools[key] = np.stack([p[key] for p in per_model])
        todo = {**todo, "repeats": [e for e in todo["repeats"] if (e, "repeats") not in pools]}
    for axis, names in todo.items():
        if not names:
            continue
        spec = ExplainParams(explainers=list(names), **specs[axis])
        if axis == "models":
            n_items = min(params.pool, len(modules))
            if n_items < 2:
                continue
            pairs = [(i, 0) for i in range(n_items)]
        else:
            pairs = [(m, rep) for m in range(n_models) for rep in range(params.pool)]
        items = []
        for m, rep in pairs:
            partial = explain_block(
                [modules[m]],
                [ids[m]],
                x,
                targets[pick],
                pick,
                range(rep, rep + 1),
                ref_stats,
                spec,
                opts.seed,
            )
            items.append({e: np.asarray(v[0], dtype=np.float32) for e, v in partial.finalize().items()})
        for e in names:
            stacked = np.stack([item[e] for item in items])
            pools[(e, axis)] = (
                stacked if axis == "models" else stacked.reshape(n_models, params.pool, *x.shape)
            )
    return pools


def exact_repeat_pools(
    model: object,
    model_id: int,
    x: np.ndarray,
    targets: np.ndarray,
    sample_index: np.ndarray,
    ref_stats: object,
    params: SaturationParams,
    seed: int,
    explainers: list[str],
    model_index: int = 0,
) -> dict[tuple[str, str], np.ndarray]:
    """Repeats-axis pools from the exact per-unit decomposition (MLP only), without recomputing.

    Returns (explainer, "repeats") -> float32 (item, sample, gene) where item k is the attribution
    with the mask of repeat k (keyed by (seed, model, sample, k) as in the explain stage) and the
    ``n_references`` cohort references. Explainers or models outside the decomposition are left out
    (the caller recomputes them). The exact variance per item, ``p/(1-p) sum_h L_h^2``, is stored
    in :data:`EXACT_REPEAT_VARIANCE` under ``(explainer, model_index)`` for the curves'
    ``exact_var_mean`` column.
    """
    import torch
    from gexplain.pipelines.explain.fastpath import (
        MLPFastPath,
        explainer_terms,
        is_affine_mlp,
        repeat_variance,
    )
    from gexplain.pipelines.explain.modes import dropout_mask
    from gexplain.pipelines.explain.references import draw_reference_sets
    from gexplain.pipelines.explain.registry import EXPLAINERS

    if not isinstance(model, torch.nn.Module) or not is_affine_mlp(model):
        return {}
    model.eval()
    fast = MLPFastPath(model)
    p = float(model.dropout.p)
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    tt = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    n_classes = int(fast.w2.shape[0])
    sets = draw_reference_sets(params.references, params.n_references, ref_stats, seed, n_classes, x.shape[1])  # type: ignore[arg-type]
    masks = torch.from_numpy(
        np.stack(
            [
                np.stack(
                    [dropout_mask(seed, model_id, int(s), k, 0, (fast.hidden_size,), p) for s in sample_index]
                )
                for k in range(params.pool)
            ]
        )
    )  # (item, sample, hidden)
    out: dict[tuple[str, str], np.ndarray] = {}
    for name in explainers:
        factor = EXPLAINERS[name].closed_form
        if factor not in ("input", "delta"):  # saliency is |gradient| by default: not linear in the mask
            continue
        terms = []
        with torch.no_grad():
            for i in range(len(xt)):
                refs = torch.from_numpy(sets.values[int(sets.index(tt[i : i + 1].numpy())[0])])
                terms.append(
                    explainer_terms(
                        fast,
                        name,
                        factor,
                        xt[i : i + 1],
                        refs,
                        tt[i : i + 1],
                        params.n_steps,
                        "gausslegendre",
                    )[0]
                )
            units = torch.stack(terms)  # (sample, hidden, gene)
            out[(name, "repeats")] = torch.einsum("ksh,shg->ksg", masks, units).numpy().astype(np.float32)
            EXACT_REPEAT_VARIANCE[(name, model_index)] = float(repeat_variance(units, p).mean())
    return out


EXACT_REPEAT_VARIANCE: dict[tuple[str, int], float] = {}


def saturation_part(
    store_url: str, opts: EvaluateParams, params: SaturationParams
) -> dict[str, pd.DataFrame]:
    """Saturation curves and their summary for every explainer, axis and variant.

    Variants (column ``variant``; the curve name is ``<explainer>/<axis>/<variant>``):

    * ``inter_model`` (Zhao et al.'s Figure 2, repeats and references axes): replicate j is the mean
      of n items of model j, replicates of up to ``params.models`` models are compared pairwise
      (:func:`gexplain.pipelines.evaluate.saturation.inter_model_curve`); ``n_models`` says how many;
    * ``resampled`` (the paper's models axis): K = max(M / n, 4) replicates, each the mean of n of
      the M models drawn at random (:func:`gexplain.pipelines.evaluate.saturation.resampled_curve`);
    * ``intra_model`` (gexplain's earlier curves): disjoint subsets of one pool (the first model's
      for repeats and references, the models for the models axis) compared pairwise; these tend to
      1 and are not comparable with the paper's.

    Returns
    -------
    dict
        ``saturation_curves`` (columns curve, explainer, axis, variant, n_models, n, n_pairs,
        spearman_*, top_k_overlap_*, and ``exact_var_mean`` on the repeats axis where the exact
        decomposition exists) and ``saturation_summary``; empty without a model set. ``k`` is
        clipped to the number of genes.
    """
    EXACT_REPEAT_VARIANCE.clear()  # this evaluation's variances only
    if opts.model_set not in list_model_sets(store_url):
        return {}
    curves: dict[str, pd.DataFrame] = {}
    for (explainer, axis), pool in saturation_pools(store_url, opts, params).items():
        k = min(opts.k, pool.shape[-1])
        common = {"k": k, "seed": opts.seed, "absolute": True}
        found: dict[str, pd.DataFrame] = {}
        if axis == "models":
            n_models = pool.shape[0]
            if n_models >= 3:
                found["resampled"] = resampled_curve(pool, n_draws=params.draws, **common)
            found["intra_model"] = saturation_curve(
                pool, n_draws=params.draws, max_replicates=params.max_replicates, **common
            )
        else:
            n_models = pool.shape[0]
            if n_models >= 2:
                found["inter_model"] = inter_model_curve(pool, n_draws=params.draws, **common)
            found["intra_model"] = saturation_curve(
                pool[0], n_draws=params.draws, max_replicates=params.max_replicates, **common
            )
        for variant, curve in found.items():
            if axis == "repeats":
                models_used = range(n_models if variant == "inter_model" else 1)
                var = [EXACT_REPEAT_VARIANCE.get((explainer, m)) for m in models_used]
                if all(v is not None for v in var):
                    curve = curve.assign(exact_var_mean=float(np.mean(var)) / curve["n"])
            used = n_models if variant != "intra_model" or axis == "models" else 1
            curves[f"{explainer}/{axis}/{variant}"] = curve.assign(
                explainer=explainer, axis=axis, variant=variant, n_models=used
            )
    if not curves:
        return {}
    table = pd.concat([c.assign(curve=name) for name, c in curves.items()], ignore_index=True)
    return {"saturation_curves": table, "saturation_summary": summarise_saturation(curves, params.tol)}
