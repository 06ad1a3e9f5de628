"""Attributions of one sample block: the row expansion, the backends, the streamed folds.

Row expansion (the one place where rows are formed). A task explains n samples with one model
over the repeats ``[k0, k1)`` (K of them) and R references; for each explainer the rows are

* **explicit**: one row per (repeat k, sample i), repeat-major, each with the dropout mask of
  (model, i, k) and its R references: the cohort set of i's class (``reference_scope = "cohort"``)
  or the references drawn for (i, k) (``"sample"``). The backend returns R values per row (one
  after a reference mean), folded per (k, i) into the streamed moments; ``attr_<e>_std`` is the
  standard deviation over all (model, repeat, reference) values.
* **collapsed** (:mod:`gexplain.pipelines.explain.collapse`): one row per sample i with the mean of its K
  masks (no dropout in ``expected``/``deterministic`` mode) and the R cohort references of its
  class. The backend returns the mean over the K x R (repeat, reference) pairs, exactly; the
  optional ``attr_<e>_repeat_std`` is the spread across repeats of the reference-mean
  attribution (empirical over the K masks, or analytic in ``expected`` mode).

Random draws depend only on keys: cohort references on (run_seed, reference, class), sample
references on (run_seed, sample, repeat), masks on (run_seed, model_id, sample, repeat), noise
on the same keys plus the reference index. Blocks can be split, reordered or recomputed freely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from gexplain.pipelines.explain.aggregate import Moments, reduce_references
from gexplain.pipelines.explain.backends import Attribution, Backend, Batch, MLPBackend, make_backend
from gexplain.pipelines.explain.collapse import collapses, model_arch
from gexplain.pipelines.explain.exact import ReduceOptions
from gexplain.pipelines.explain.fastpath import is_affine_mlp
from gexplain.pipelines.explain.modes import DropoutMasks, explain_mode
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.explain.references import (
    ReferenceSets,
    ReferenceStats,
    compute_reference_stats,
    draw_reference_sets,
    draw_references,
    repeat_reference_index,
)
from gexplain.pipelines.explain.registry import EXPLAINERS
from gexplain.pipelines.explain.rows import Explainer, RowContext
from gexplain.storage.errors import InputError
from torch import nn

__all__ = ["BlockPartial", "ReferenceStats", "compute_reference_stats", "explain_block"]


@dataclass
class BlockPartial:
    """Partial aggregate of one sample block.

    Attributes
    ----------
    moments
        Explainer name -> :class:`Moments` over (block samples, genes).
    model_moments
        Explainer name -> model id -> :class:`Moments` (only with ``params.per_model``).
    repeat_moments
        Explainer name -> model id -> :class:`Moments` over the K repeat values of the
        reference-mean attribution (collapsed ``mc_dropout`` with ``repeat_std``).
    repeat_var
        Explainer name -> model id -> analytic variance (samples, genes) of one repeat around
        the limit (``expected`` mode with ``repeat_std``).
    keys
        (model_id, repeat_start, repeat_stop) pieces folded in; :meth:`combine` merges in key order.
    """

    moments: dict[str, Moments]
    model_moments: dict[str, dict[int, Moments]] = field(default_factory=dict)
    repeat_moments: dict[str, dict[int, Moments]] = field(default_factory=dict)
    repeat_var: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    keys: list[tuple[int, int, int]] = field(default_factory=list)

    def merge(self, other: BlockPartial) -> BlockPartial:
        """Fold ``other`` (same samples, genes and explainers) into this partial and return it."""
        for name, mom in other.moments.items():
            self.moments[name].merge(mom)
        for mine_all, theirs_all in (
            (self.model_moments, other.model_moments),
            (self.repeat_moments, other.repeat_moments),
        ):
            for name, per_model in theirs_all.items():
                mine = mine_all.setdefault(name, {})
                for model_id, mom in per_model.items():
                    if model_id in mine:
                        mine[model_id].merge(mom)
                    else:
                        mine[model_id] = mom.copy()
        for name, per_model in other.repeat_var.items():
            self.repeat_var.setdefault(name, {}).update({k: v.copy() for k, v in per_model.items()})
        self.keys.extend(other.keys)
        return self

    def embed(self, rows: np.ndarray, n: int) -> BlockPartial:
        """This partial of a subset placed at ``rows`` of an n-sample block (others: count 0)."""

        def grow(m: Moments) -> Moments:
            out = Moments.empty(n, m.mean.shape[1])
            out.count[rows], out.mean[rows], out.m2[rows] = m.count, m.mean, m.m2
            return out

        def grow_var(v: np.ndarray) -> np.ndarray:
            out = np.zeros((n, v.shape[1]))
            out[rows] = v
            return out

        return BlockPartial(
            {k: grow(m) for k, m in self.moments.items()},
            {k: {i: grow(m) for i, m in d.items()} for k, d in self.model_moments.items()},
            {k: {i: grow(m) for i, m in d.items()} for k, d in self.repeat_moments.items()},
            {k: {i: grow_var(v) for i, v in d.items()} for k, d in self.repeat_var.items()},
            list(self.keys),
        )

    def finalize(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Return explainer -> (mean float32 (samples, genes), std float32 (samples, genes; ddof=1),
        count int32 (samples,)). The std is meaningful for explicit explainers only."""
        return {name: mom.finalize() for name, mom in self.moments.items()}

    def model_means(self) -> dict[str, dict[int, np.ndarray]]:
        """Return explainer -> model id -> mean float32 (samples, genes) (with ``params.per_model``)."""
        return {
            name: {k: m.finalize()[0] for k, m in sorted(d.items())} for name, d in self.model_moments.items()
        }

    def repeat_std(self) -> dict[str, np.ndarray]:
        """Explainer -> float32 (samples, genes): the square root of the mean over models of the
        variance across repeats (ddof=1 over the drawn masks; analytic in ``expected`` mode)."""
        out: dict[str, np.ndarray] = {}
        for name, per_model in self.repeat_moments.items():
            var = [m.m2 / np.maximum(m.count[:, None] - 1, 1) for _, m in sorted(per_model.items())]
            out[name] = np.sqrt(np.mean(var, axis=0)).astype(np.float32)
        for name, per_var in self.repeat_var.items():
            out[name] = np.sqrt(np.mean([v for _, v in sorted(per_var.items())], axis=0)).astype(np.float32)
        return out


@dataclass(frozen=True)
class ExplainerPlan:
    """How one explainer runs on one model: collapsed or explicit, with which backend."""

    explainer: Explainer
    collapsed: bool


def plan_explainers(
    explainers: Sequence[Explainer], model: nn.Module, x: torch.Tensor, params: ExplainParams
) -> list[ExplainerPlan]:
    """Decide the row expansion of every explainer for ``model`` (declared architecture or probe)."""
    arch = model_arch(model, list(explainers), x, params) if params.mode != "paper" else None
    return [ExplainerPlan(e, collapses(e, params, arch)) for e in explainers]


def check_architectures(explainers: Sequence[str], arch: str | None, model_id: int) -> None:
    """Refuse an explainer that needs another architecture (before any work starts).

    Raises
    ------
    InputError
        Names the explainer, the model and the fix.
    """
    for name in explainers:
        need = EXPLAINERS[name].arch
        if need is not None and arch != need:
            raise InputError(
                f"explainers: '{name}' needs a {need.upper()} model; model {model_id} is "
                f"{(arch or 'another architecture').upper()}: drop '{name}' or explain a model set trained with arch = \"{need}\""
            )


def _activation_floats(model: nn.Module, x: torch.Tensor, masks: DropoutMasks | None) -> int:
    """Floats of all leaf-module outputs for one input row (memory planning)."""
    total = 0

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    if masks is not None:
        masks.set_rows(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    was_training = model.training
    model.eval()  # BatchNorm in train mode cannot run one row
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.float32


class _Refs:
    """References of a block for the explicit rows and the collapsed rows."""

    def __init__(
        self,
        params: ExplainParams,
        stats: ReferenceStats | None,
        sets: ReferenceSets | None,
        sample_index: np.ndarray,
        classes: np.ndarray,
        run_seed: int,
        n_genes: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.params = params
        self.stats = stats
        self.sample_index = sample_index
        self.classes = classes
        self.run_seed = run_seed
        self.n_genes = n_genes
        self.device = device
        self.dtype = dtype
        if params.reference_scope in ("cohort", "repeat") and sets is None:
            n_classes = int(classes.max()) + 1 if len(classes) else 1
            if stats is not None:
                n_classes = max(n_classes, stats.class_mean.shape[0])
            sets = draw_reference_sets(
                params.reference_kind, params.reference_set_size, stats, run_seed, n_classes, n_genes
            )
        self.sets = sets
        self._tensors: dict[int, torch.Tensor] = {}

    def set_index(self, pos: np.ndarray) -> np.ndarray:
        """Cohort set of each sample position (zeros for class-free kinds)."""
        assert self.sets is not None
        return self.sets.index(self.classes[pos])

    def shared(self, index: int) -> torch.Tensor:
        """Cohort reference set ``index``: (R, genes)."""
        assert self.sets is not None
        if index not in self._tensors:
            # a copy: the broadcast set is read-only shared memory, which torch will not wrap
            self._tensors[index] = torch.tensor(self.sets.values[index], dtype=self.dtype, device=self.device)
        return self._tensors[index]

    def repeat_index(self, index: int, repeats: range) -> np.ndarray:
        """Rows of cohort set ``index`` used by each repeat: int64 (repeats, R).

        Scope ``cohort``: the whole set in every repeat; ``repeat``: R of the pool drawn per repeat
        (:func:`gexplain.pipelines.explain.references.repeat_reference_index`).
        """
        assert self.sets is not None
        n_refs = self.params.n_references
        if self.params.reference_scope != "repeat":
            return np.tile(np.arange(n_refs, dtype=np.int64), (len(repeats), 1))
        key = index if self.sets.by_class else -1
        return repeat_reference_index(self.run_seed, repeats, key, self.sets.values.shape[1], n_refs)

    def for_repeat(self, index: int, repeat: int) -> torch.Tensor:
        """The (R, genes) references of cohort set ``index`` in ``repeat``."""
        if self.params.reference_scope != "repeat":
            return self.shared(index)
        rows = torch.as_tensor(self.repeat_index(index, range(repeat, repeat + 1))[0], device=self.device)
        return self.shared(index)[rows]

    def per_sample(self, pos: np.ndarray, repeat: int) -> torch.Tensor:
        """Sample-scope references of positions ``pos`` in ``repeat``: (samples, R, genes)."""
        drawn = draw_references(
            self.params.reference_kind,
            self.params.n_references,
            self.stats,
            self.sample_index[pos],
            int(repeat),
            self.classes[pos],
            self.run_seed,
            self.n_genes,
        )
        return torch.from_numpy(drawn).to(self.device, self.dtype)


def _budget_rows(params: ExplainParams, bytes_per_row: int) -> int:
    return max(1, int(params.memory_budget_mb) * 2**20 // 2 // max(bytes_per_row, 1))


def explain_block(
    models: Sequence[nn.Module],
    model_ids: Sequence[int],
    x: np.ndarray,
    targets: np.ndarray,
    sample_index: np.ndarray,
    repeat_range: range | tuple[int, int],
    ref_stats: ReferenceStats | None,
    params: ExplainParams,
    run_seed: int,
    *,
    classes: np.ndarray | None = None,
    ref_sets: ReferenceSets | None = None,
    device: str = "cpu",
) -> BlockPartial:
    """Explain a block of samples with every model, repeat, reference and explainer of ``params``.

    Parameters
    ----------
    models
        Torch modules taking (rows, genes) in the stored layer's units -> (rows, classes) logits;
        the computation runs in the modules' dtype (float32 from checkpoints).
    model_ids
        Stable integer id of each model (keys of its dropout masks).
    x
        (samples, genes) block.
    targets
        (samples,) int class index to explain per sample.
    sample_index
        (samples,) global sample indices (keys of every draw).
    repeat_range
        Repeats to compute, ``range(start, stop)`` or ``(start, stop)``.
    ref_stats
        Cohort statistics for drawn references (``sample`` scope, or to draw the cohort sets).
    params
        What to compute.
    run_seed
        Run seed.
    classes
        (samples,) class codes for the ``specific`` kinds; default ``targets``.
    ref_sets
        Cohort reference sets (:func:`gexplain.pipelines.explain.references.draw_reference_sets`); drawn
        here from ``ref_stats`` when None.
    device
        Torch device.

    Returns
    -------
    BlockPartial
        Streamed moments per explainer (see the module docstring for what they hold).
    """
    repeats = range(*repeat_range) if isinstance(repeat_range, tuple) else repeat_range
    n, n_genes = x.shape
    targets_np = np.asarray(targets, dtype=np.int64)
    sample_index = np.asarray(sample_index, dtype=np.int64)
    if targets_np.shape != (n,) or sample_index.shape != (n,):
        raise ValueError(f"targets and sample_index must have shape ({n},)")
    if len(models) != len(model_ids):
        raise ValueError("one model id per model")
    classes_np = targets_np if classes is None else np.asarray(classes, dtype=np.int64)
    unlabelled = (targets_np < 0) | (classes_np < 0)
    if unlabelled.any() and params.unlabelled == "exclude":
        keep = np.flatnonzero(~unlabelled)
        sub = explain_block(
            models,
            model_ids,
            x[keep],
            targets_np[keep],
            sample_index[keep],
            repeats,
            ref_stats,
            params,
            run_seed,
            classes=classes_np[keep],
            ref_sets=ref_sets,
            device=device,
        )
        return sub.embed(keep, n)
    if n and (targets_np.min() < 0 or classes_np.min() < 0):
        bad = int(sample_index[np.argmin(np.minimum(targets_np, classes_np))])
        raise InputError(
            f"sample {bad} has no class to explain (target {targets_np.min()}); "
            'give every sample a label in the label column or set unlabelled = "exclude"'
        )
    explainers = [EXPLAINERS[name] for name in params.explainers]
    options = params.kernel_options()
    dev = torch.device(device)
    partial = BlockPartial({e.name: Moments.empty(n, n_genes) for e in explainers})
    for model, model_id in sorted(zip(models, model_ids, strict=True), key=lambda p: int(p[1])):
        check_architectures(params.explainers, getattr(model, "arch", None), int(model_id))
        dtype = _model_dtype(model)
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev, dtype)
        tt = torch.from_numpy(targets_np).to(dev)
        refs = _Refs(params, ref_stats, ref_sets, sample_index, classes_np, run_seed, n_genes, dev, dtype)
        with explain_mode(model, params.mode, run_seed, int(model_id)) as (module, masks):
            mlp = params.mode != "paper" and params.backend == "auto" and is_affine_mlp(module)
            plans = plan_explainers(explainers, module, xt, params)
            act = _activation_floats(module, xt, masks)
            for plan in plans:
                e = plan.explainer
                row_bytes = 4 * (3 * act + 4 * n_genes) * e.expansion(options)
                backend = make_backend(
                    e,
                    module,
                    options,
                    mlp=mlp,
                    rows_per_call=_budget_rows(params, row_bytes),
                    budget_bytes=int(params.memory_budget_mb) * 2**20 // 4,
                )
                run = _run_collapsed if plan.collapsed else _run_explicit
                model_mom = run(
                    backend, e, xt, tt, refs, masks, repeats, params, run_seed, int(model_id), partial
                )
                partial.moments[e.name].merge(model_mom)
                if params.per_model:
                    partial.model_moments.setdefault(e.name, {})[int(model_id)] = model_mom
        partial.keys.append((int(model_id), repeats.start, repeats.stop))
    return partial


def _context(
    samples: np.ndarray,
    repeats: np.ndarray,
    params: ExplainParams,
    run_seed: int,
    model_id: int,
    masks: DropoutMasks | None,
) -> RowContext:
    return RowContext(
        samples,
        repeats,
        np.zeros(len(samples), dtype=np.int64),
        run_seed,
        model_id,
        params.kernel_options(),
        masks,
    )


def _run_collapsed(
    backend: Backend,
    e: Explainer,
    xt: torch.Tensor,
    tt: torch.Tensor,
    refs: _Refs,
    masks: DropoutMasks | None,
    repeats: range,
    params: ExplainParams,
    run_seed: int,
    model_id: int,
    partial: BlockPartial,
) -> Moments:
    """Collapsed rows: one per sample, mean mask over ``repeats``, all cohort references."""
    n, n_genes = xt.shape
    n_refs = params.n_references if e.uses_reference == "each" else 1
    single_pass = masks is None  # expected / deterministic: every repeat is the same
    median = params.reference_reduce == "median_of_repeat_mean" and n_refs > 1
    spread = (
        params.repeat_std
        and params.reference_reduce is None
        and (params.mode == "expected" or (not single_pass and len(repeats) > 1))
    )
    hidden = backend.fast.hidden_size if isinstance(backend, MLPBackend) else 256
    per_sample = (
        4 * (n_refs * hidden * 4 + 6 * n_genes)
        + (12 * hidden * n_genes if spread else 0)
        + (24 * n_refs * n_genes if median else 0)  # per-reference values (rows x R x genes)
    )
    chunk = max(1, min(n, _budget_rows(params, per_sample)))
    mom = Moments.empty(n, n_genes)
    rep_mom = Moments.empty(n, n_genes) if spread and not single_pass else None
    rep_var = np.zeros((n, n_genes)) if spread and single_pass else None
    count = (1 if single_pass and params.mode == "expected" else len(repeats)) * n_refs
    positions = np.arange(n)
    groups = (
        [(positions, None)]
        if e.uses_reference == "none"
        else [(positions[refs.set_index(positions) == g], g) for g in np.unique(refs.set_index(positions))]
    )
    for members, group in groups:
        for s0 in range(0, len(members), chunk):
            pos = members[s0 : s0 + chunk]
            batch = Batch(
                xt[pos],
                tt[pos],
                None if group is None else refs.shared(int(group)),
                _context(
                    refs.sample_index[pos],
                    np.full(len(pos), repeats.start),
                    params,
                    run_seed,
                    model_id,
                    masks,
                ),
                collapse=None if single_pass else repeats,
                reduce_refs=not median,
                spread=spread,
            )
            with contextlib.nullcontext() if backend.needs_grad else torch.no_grad():
                out: Attribution = backend.attribute(batch)
            values = out.values.detach().cpu().numpy().astype(np.float64)
            mean = np.median(values, axis=1) if median else values[:, 0]
            mom.add_mean(mean, count, rows=pos)
            if rep_mom is not None and out.repeat_m2 is not None:
                rep_mom.add_summary(
                    mean, out.repeat_m2.detach().cpu().numpy().astype(np.float64), len(repeats), rows=pos
                )
            if rep_var is not None and out.repeat_var is not None:
                rep_var[pos] = out.repeat_var.detach().cpu().numpy()
    if rep_mom is not None and isinstance(backend, MLPBackend):
        partial.repeat_moments.setdefault(e.name, {})[model_id] = rep_mom
    if rep_var is not None and isinstance(backend, MLPBackend):
        partial.repeat_var.setdefault(e.name, {})[model_id] = rep_var
    return mom


def exact_applies(backend: Backend, e: Explainer, params: ExplainParams) -> bool:
    """True when the explicit rows run as GEMMs with the streamed reduction (:mod:`.exact`):
    the MLP closed forms, one value per reference (not DeepLIFT-SHAP's mean), references shared by
    the samples of a repeat, and a median or no reduction over references."""
    return (
        isinstance(backend, MLPBackend)
        and e.ref_reduce is None
        and params.reference_reduce in ("median", None)
        and (e.uses_reference == "none" or params.reference_scope in ("cohort", "repeat"))
    )


def _run_exact(
    backend: MLPBackend,
    e: Explainer,
    xt: torch.Tensor,
    tt: torch.Tensor,
    refs: _Refs,
    masks: DropoutMasks | None,
    repeats: range,
    params: ExplainParams,
) -> Moments:
    """Every (repeat, sample, reference) row of the MLP, as in :func:`_run_explicit`, by
    :meth:`MLPBackend.exact_rows`: the same moments (median per repeat, or every value) without
    holding samples x repeats x references x genes."""
    n, n_genes = xt.shape
    assert e.closed_form is not None
    options = ReduceOptions(
        factor=e.closed_form,
        take_abs=params.abs or (e.name == "saliency" and params.saliency_abs),
        median=params.reference_reduce == "median",
    )
    positions = np.arange(n)
    if e.uses_reference == "none":
        groups: list[tuple[np.ndarray, int | None]] = [(positions, None)]
    else:
        idx = refs.set_index(positions)
        groups = [(positions[idx == g], int(g)) for g in np.unique(idx)]
    # without dropout and with the same references in every repeat, all repeats are one
    same = masks is None and (e.uses_reference == "none" or params.reference_scope != "repeat")
    run = range(repeats.start, repeats.start + 1) if same else repeats
    mom = Moments.empty(n, n_genes)
    for members, g in groups:
        pool = None if g is None else refs.shared(g)
        index = np.zeros((len(run), 1), dtype=np.int64) if g is None else refs.repeat_index(g, run)
        n_refs = index.shape[1]
        chunks = backend.exact_rows(
            xt[members], tt[members], refs.sample_index[members], run, pool, index, masks, options
        )
        for chunk in chunks:
            rows = members[chunk.positions]
            if chunk.m2 is None and not same:
                mom.add(chunk.center, rows=rows)
                continue
            if chunk.m2 is None:  # median, every repeat the same
                mom.add_summary(chunk.center[:, 0], np.zeros_like(chunk.center[:, 0]), len(repeats), rows)
                continue
            mean = chunk.center.mean(axis=1)
            m2 = chunk.m2.sum(axis=1) + n_refs * ((chunk.center - mean[:, None]) ** 2).sum(axis=1)
            copies = len(repeats) if same else 1
            mom.add_summary(mean, m2 * copies, copies * len(chunk.repeats) * n_refs, rows)
    return mom


def _run_explicit(
    backend: Backend,
    e: Explainer,
    xt: torch.Tensor,
    tt: torch.Tensor,
    refs: _Refs,
    masks: DropoutMasks | None,
    repeats: range,
    params: ExplainParams,
    run_seed: int,
    model_id: int,
    partial: BlockPartial,
) -> Moments:
    """Explicit rows: one per (repeat, sample), each with its own mask and R references."""
    if exact_applies(backend, e, params):
        assert isinstance(backend, MLPBackend)
        return _run_exact(backend, e, xt, tt, refs, masks, repeats, params)
    n, n_genes = xt.shape
    n_refs = params.n_references if e.uses_reference != "none" else 1
    per_sample = n_refs * n_genes * 4 * 6
    chunk = max(1, min(n, _budget_rows(params, per_sample)))
    reduce = e.ref_reduce == "mean"
    median_of_mean = params.reference_reduce == "median_of_repeat_mean"
    sums = np.zeros((n, 1 if reduce else n_refs, n_genes)) if median_of_mean else None
    mom = Moments.empty(n, n_genes)
    for k in repeats:
        for s0 in range(0, n, chunk):
            pos = np.arange(s0, min(s0 + chunk, n))
            ctx = _context(refs.sample_index[pos], np.full(len(pos), k), params, run_seed, model_id, masks)
            values: list[tuple[np.ndarray, np.ndarray]] = []
            if e.uses_reference == "none":
                groups = [(pos, None)]
            elif params.reference_scope in ("cohort", "repeat"):
                idx = refs.set_index(pos)
                groups = [(pos[idx == g], refs.for_repeat(int(g), k)) for g in np.unique(idx)]
            else:
                groups = [(pos, refs.per_sample(pos, k))]
            for members, ref in groups:
                sel = np.searchsorted(pos, members)
                batch = Batch(
                    xt[members],
                    tt[members],
                    ref if ref is None or ref.dim() == 2 or len(members) == len(pos) else ref[sel],
                    ctx.subset(sel),
                    reduce_refs=reduce,
                )
                with contextlib.nullcontext() if backend.needs_grad else torch.no_grad():
                    out: Attribution = backend.attribute(batch)
                values.append((members, out.values.detach().cpu().numpy()))
            for members, v in values:
                if params.abs:
                    v = np.abs(v)
                if sums is not None:
                    sums[members] += v
                else:
                    mom.add(reduce_references(v, params.reference_reduce), rows=members)
    if sums is not None:  # median over references of the mean over repeats
        mom.add_mean(np.median(sums / max(len(repeats), 1), axis=1), len(repeats) * sums.shape[1])
    return mom
