"""Attributions of one sample block: every (model, repeat, reference) of every explainer, batched
within a memory budget and folded into streamed mean / std / count.

Random draws depend only on (run_seed, model_id, global sample index, repeat): references on
(run_seed, sample, repeat), dropout masks on (run_seed, model_id, sample, repeat), noise on the
same keys plus the reference index. Blocks can be split, reordered or recomputed freely.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pipelines.explain.aggregate import Moments, reduce_references
from pipelines.explain.fastpath import FAST_EXPLAINERS, MLPFastPath, fast_attributions, is_affine_mlp
from pipelines.explain.modes import DropoutMasks, explain_mode
from pipelines.explain.references import ReferenceStats, compute_reference_stats, draw_references
from pipelines.explain.registry import EXPLAINERS, Explainer, RowContext
from pipelines.explain.spec import ExplainSpec
from storage.errors import InputError

__all__ = ["BlockPartial", "ExplainSpec", "ReferenceStats", "compute_reference_stats", "explain_block"]

PAPER_STREAM = 5


@dataclass
class BlockPartial:
    """Partial aggregate of one sample block.

    Attributes
    ----------
    moments
        Explainer name -> :class:`Moments` over (block samples, genes).
    model_moments
        Explainer name -> model id -> :class:`Moments` (only with ``spec.per_model``).
    keys
        (model_id, repeat_start, repeat_stop) pieces folded in; :meth:`combine` merges in key order.
    """

    moments: dict[str, Moments]
    model_moments: dict[str, dict[int, Moments]] = field(default_factory=dict)
    keys: list[tuple[int, int, int]] = field(default_factory=list)

    def merge(self, other: BlockPartial) -> BlockPartial:
        """Fold ``other`` (same samples, genes and explainers) into this partial and return it."""
        for name, mom in other.moments.items():
            self.moments[name].merge(mom)
        for name, per_model in other.model_moments.items():
            mine = self.model_moments.setdefault(name, {})
            for model_id, mom in per_model.items():
                if model_id in mine:
                    mine[model_id].merge(mom)
                else:
                    mine[model_id] = mom
        self.keys.extend(other.keys)
        return self

    @staticmethod
    def combine(partials: Sequence[BlockPartial]) -> BlockPartial:
        """Merge partials in the order of their keys, so the result does not depend on arrival order."""
        if not partials:
            raise ValueError("nothing to combine")
        ordered = sorted(partials, key=lambda p: min(p.keys) if p.keys else (-1, -1, -1))
        first = ordered[0]
        total = BlockPartial(
            {n: Moments(m.count.copy(), m.mean.copy(), m.m2.copy()) for n, m in first.moments.items()},
            {
                n: {k: Moments(m.count.copy(), m.mean.copy(), m.m2.copy()) for k, m in d.items()}
                for n, d in first.model_moments.items()
            },
            list(first.keys),
        )
        for p in ordered[1:]:
            total.merge(p)
        return total

    def finalize(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Return explainer -> (mean float32 (samples, genes), std float32 (samples, genes; ddof=1),
        count int32 (samples,))."""
        return {name: mom.finalize() for name, mom in self.moments.items()}

    def model_means(self) -> dict[str, dict[int, np.ndarray]]:
        """Return explainer -> model id -> mean float32 (samples, genes) (with ``spec.per_model``)."""
        return {
            name: {k: m.finalize()[0] for k, m in sorted(d.items())} for name, d in self.model_moments.items()
        }


def _seed_int(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


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


@dataclass
class _Plan:
    """Chunking of a block: samples and repeats per chunk, rows per explainer call."""

    sample_chunk: int
    repeat_chunk: int
    budget: int

    def rows_per_call(self, bytes_per_row: int) -> int:
        return max(1, self.budget // 2 // max(bytes_per_row, 1))


def _plan(spec: ExplainSpec, n: int, n_repeats: int, n_genes: int) -> _Plan:
    budget = int(spec.memory_budget_mb) * 2**20
    per_pair = spec.n_references * n_genes * 4 * 6  # references, values, float64 fold temporaries
    pairs = max(1, budget // 2 // per_pair)
    sample_chunk = min(n, pairs)
    return _Plan(sample_chunk, max(1, min(n_repeats, pairs // sample_chunk)), budget)


def _explain_rows(
    explainer: Explainer,
    model: nn.Module,
    fast: MLPFastPath | None,
    h_samples: torch.Tensor | None,
    x: torch.Tensor,
    refs: torch.Tensor | None,
    targets: torch.Tensor,
    ctx: RowContext,
    row_sample: np.ndarray,
    row_pair: np.ndarray,
    rows_per_call: int,
    spec: ExplainSpec,
) -> np.ndarray:
    """Attributions (rows, genes) of ``explainer`` for the rows of one chunk, in sub-batches."""
    n_rows = len(row_sample)
    out = np.empty((n_rows, x.shape[1]), dtype=np.float32)
    use_fast = fast is not None and explainer.name in FAST_EXPLAINERS
    step = n_rows if explainer.per_row else rows_per_call
    for start in range(0, n_rows, step):
        idx = np.arange(start, min(start + step, n_rows))
        xs = x[row_sample[idx]]
        ts = targets[row_sample[idx]]
        if explainer.uses_reference == "each":
            assert refs is not None
            bs = refs.reshape(-1, x.shape[1])[idx]
        elif explainer.uses_reference == "distribution":
            assert refs is not None
            bs = refs.reshape(-1, spec.n_references, x.shape[1])[row_pair[idx]]
        else:
            bs = None
        sub = ctx.subset(idx)
        if use_fast:
            assert fast is not None and h_samples is not None
            if ctx.masks is not None:
                ctx.masks.set_rows(sub.samples, sub.repeats)
                masks = ctx.masks.masks(0, (fast.hidden_size,), xs.device)
            else:
                masks = torch.ones(len(idx), fast.hidden_size, dtype=xs.dtype, device=xs.device)
            with torch.no_grad():
                attr = fast_attributions(
                    fast,
                    explainer.name,
                    xs,
                    bs,
                    ts,
                    masks,
                    spec.n_steps,
                    spec.ig_method,
                    spec.saliency_abs,
                    h_samples[row_sample[idx]],
                )
        else:
            sub.key_rows(np.arange(len(idx)))
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*(require gradients|non-linear).*", category=UserWarning
                )
                torch.manual_seed(
                    _seed_int(
                        ctx.run_seed, PAPER_STREAM, ctx.model_id, sub.samples[0], sub.repeats[0], sub.refs[0]
                    )
                )
                attr = explainer.fn(model, xs, bs, ts, sub)
        out[idx] = attr.detach().cpu().numpy()
    return out


def explain_block(
    models: Sequence[nn.Module],
    model_ids: Sequence[int],
    x: np.ndarray,
    targets: np.ndarray,
    sample_index: np.ndarray,
    repeat_range: range | tuple[int, int],
    ref_stats: ReferenceStats | None,
    spec: ExplainSpec,
    run_seed: int,
    *,
    classes: np.ndarray | None = None,
) -> BlockPartial:
    """Explain a block of samples with every model, repeat, reference and explainer of ``spec``.

    Parameters
    ----------
    models
        Torch modules taking (rows, genes) float32 in the stored layer's units -> (rows, classes) logits.
    model_ids
        Stable integer id of each model (keys of its dropout masks).
    x
        (samples, genes) float32 block.
    targets
        (samples,) int class index to explain per sample.
    sample_index
        (samples,) global sample indices (keys of every draw).
    repeat_range
        Repeats to compute, ``range(start, stop)`` or ``(start, stop)``.
    ref_stats
        Cohort statistics for ``universal``, ``specific`` and ``samples`` references.
    spec
        What to compute.
    run_seed
        Run seed.
    classes
        (samples,) class codes for ``specific`` references; default ``targets``.

    Returns
    -------
    BlockPartial
        Streamed moments over all (model, repeat, reference) values per explainer.
    """
    repeats = range(*repeat_range) if isinstance(repeat_range, tuple) else repeat_range
    x_np = np.ascontiguousarray(x, dtype=np.float32)
    n, n_genes = x_np.shape
    targets_np = np.asarray(targets, dtype=np.int64)
    sample_index = np.asarray(sample_index, dtype=np.int64)
    if targets_np.shape != (n,) or sample_index.shape != (n,):
        raise ValueError(f"targets and sample_index must have shape ({n},)")
    if len(models) != len(model_ids):
        raise ValueError("one model id per model")
    classes_np = targets_np if classes is None else np.asarray(classes, dtype=np.int64)
    if n and (targets_np.min() < 0 or classes_np.min() < 0):
        bad = int(sample_index[np.argmin(np.minimum(targets_np, classes_np))])
        raise InputError(
            f"sample {bad} has no class to explain (target {targets_np.min()}); "
            "give every sample a label in the label column or drop unlabelled samples"
        )
    explainers = [EXPLAINERS[name] for name in spec.explainers]
    needs_refs = any(e.uses_reference != "none" for e in explainers)
    device = torch.device(spec.device)
    xt = torch.from_numpy(x_np).to(device)
    tt = torch.from_numpy(targets_np).to(device)
    plan = _plan(spec, n, len(repeats), n_genes)
    partial = BlockPartial({e.name: Moments.empty(n, n_genes) for e in explainers})
    for model, model_id in sorted(zip(models, model_ids, strict=True), key=lambda p: int(p[1])):
        for e in explainers:
            if e.arch is not None and getattr(model, "arch", None) != e.arch:
                raise InputError(
                    f"--explainers: '{e.name}' needs a {e.arch.upper()} model; model {model_id} is not one"
                )
        model_mom = {e.name: Moments.empty(n, n_genes) for e in explainers}
        with explain_mode(model, spec.mode, run_seed, int(model_id)) as (module, masks):
            fast = (
                MLPFastPath(module)
                if spec.fast_path and spec.mode != "paper" and is_affine_mlp(module)
                else None
            )
            act = _activation_floats(module, xt, masks)
            for s0 in range(0, n, plan.sample_chunk):
                pos = np.arange(s0, min(s0 + plan.sample_chunk, n))
                h_samples = fast.hidden(xt[pos]).detach() if fast is not None else None
                for r0 in range(0, len(repeats), plan.repeat_chunk):
                    reps = np.asarray(repeats[r0 : r0 + plan.repeat_chunk], dtype=np.int64)
                    refs = None
                    if needs_refs:
                        drawn = np.stack(
                            [
                                draw_references(
                                    spec.references,
                                    spec.n_references,
                                    ref_stats,
                                    sample_index[pos],
                                    int(r),
                                    classes_np[pos],
                                    run_seed,
                                    n_genes,
                                )
                                for r in reps
                            ]
                        )
                        refs = torch.from_numpy(drawn).to(device)  # (repeats, samples, R, genes)
                    pair_pos = np.tile(np.arange(len(pos)), len(reps))  # repeat-major pairs
                    pair_rep = np.repeat(reps, len(pos))
                    for e in explainers:
                        k = spec.n_references if e.uses_reference == "each" else 1
                        row_pair = np.repeat(np.arange(len(pair_pos)), k)
                        ctx = RowContext(
                            samples=sample_index[pos][pair_pos[row_pair]],
                            repeats=pair_rep[row_pair],
                            refs=np.tile(np.arange(k), len(pair_pos)),
                            run_seed=int(run_seed),
                            model_id=int(model_id),
                            spec=spec,
                            masks=masks,
                        )
                        row_bytes = (
                            16 * n_genes + 16 * fast.hidden_size
                            if fast is not None and e.name in FAST_EXPLAINERS
                            else 4 * (3 * act + 4 * n_genes) * e.expansion(spec)
                        )
                        values = _explain_rows(
                            e,
                            module,
                            fast,
                            h_samples,
                            xt[pos],
                            refs,
                            tt[pos],
                            ctx,
                            pair_pos[row_pair],
                            row_pair,
                            plan.rows_per_call(row_bytes),
                            spec,
                        ).reshape(len(reps), len(pos), k, n_genes)
                        if e.ref_reduce == "mean":
                            values = values.mean(axis=2, keepdims=True)
                        if spec.abs:
                            values = np.abs(values)
                        for j in range(len(reps)):
                            model_mom[e.name].add(
                                reduce_references(values[j], spec.reference_reduce), rows=pos
                            )
        for name, mom in model_mom.items():
            partial.moments[name].merge(mom)
            if spec.per_model:
                partial.model_moments.setdefault(name, {})[int(model_id)] = mom
        partial.keys.append((int(model_id), repeats.start, repeats.stop))
    return partial
