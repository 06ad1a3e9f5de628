"""Backends: one ``attribute(batch)`` call that turns a batch of rows into attributions.

A :class:`Batch` holds rows formed by the row expansion of :mod:`gexplain.pipelines.explain.compute`:
explicit rows (one dropout mask each) or collapsed rows (the mean mask of a repeat range, all R
shared references). Two backends implement it:

* :class:`CaptumBackend`: any explainer of the registry through Captum (or SHAP), with the dropout
  masks applied by forward hooks; sub-batched within the memory budget.
* :class:`MLPBackend`: closed forms for the one-hidden-layer MLP (integrated gradients, DeepLIFT,
  DeepLIFT-SHAP, saliency, input x gradient). Collapsed rows use one BLAS-3 contraction over the
  shared references (:func:`gexplain.pipelines.explain.fastpath.contract_references`) and, on request, the
  exact spread across repeats from the per-unit terms (:func:`gexplain.pipelines.explain.fastpath.unit_terms`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from gexplain.pipelines.explain.exact import ReduceOptions, RowChunk, chunk_shape, reduce_rows
from gexplain.pipelines.explain.fastpath import (
    MLPFastPath,
    contract_references,
    fast_attributions,
    head,
    path_weights,
    repeat_variance,
    unit_terms,
    unit_weights,
)
from gexplain.pipelines.explain.modes import DropoutMasks, dropout_mask
from gexplain.pipelines.explain.rows import Explainer, KernelOptions, RowContext
from torch import nn

PAPER_STREAM = 5


def seed_int(*keys: int) -> int:
    """A 32-bit seed from integer keys."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


@dataclass
class Batch:
    """Rows of one backend call.

    Attributes
    ----------
    x
        (rows, genes) inputs.
    targets
        (rows,) target classes.
    refs
        References: (rows, R, genes) per row, (R, genes) shared by every row, or None.
    ctx
        Row keys (sample, repeat) of the masks and noise draws.
    collapse
        Repeats whose masks are averaged into each row's mask (collapsed rows), or None.
    reduce_refs
        Return the mean over the R references (one value per row) instead of R values.
    spread
        For collapsed rows, also return the exact spread across repeats (MLP only).
    """

    x: torch.Tensor
    targets: torch.Tensor
    refs: torch.Tensor | None
    ctx: RowContext
    collapse: range | None = None
    reduce_refs: bool = False
    spread: bool = False


@dataclass
class Attribution:
    """What a backend returns.

    Attributes
    ----------
    values
        (rows, R', genes): R' = 1 with ``reduce_refs`` or without references, else R.
    repeat_m2
        (rows, genes) sum over the collapsed repeats of the squared deviation of the
        reference-mean attribution from its repeat mean (mc_dropout, ``spread``), or None.
    repeat_var
        (rows, genes) analytic variance of one repeat around the dropout-off limit (``expected``
        mode, ``spread``), or None.
    """

    values: torch.Tensor
    repeat_m2: torch.Tensor | None = None
    repeat_var: torch.Tensor | None = None


class Backend(Protocol):
    """What the row loops of :mod:`gexplain.pipelines.explain.compute` call.

    Attributes
    ----------
    explainer
        The registry entry it computes.
    needs_grad
        The backend differentiates through the model (Captum); False for closed forms, which run
        under ``torch.no_grad``.
    """

    explainer: Explainer
    needs_grad: bool

    def attribute(self, batch: Batch) -> Attribution:
        """Attributions of the batch's rows (see :class:`Batch`)."""
        ...


class CaptumBackend:
    """Any registry explainer, rows expanded over references and sub-batched.

    Parameters
    ----------
    explainer
        The registry entry.
    model
        The module in its explain mode.
    options
        Explainer settings.
    rows_per_call
        Forward rows per Captum call (memory).
    """

    def __init__(
        self, explainer: Explainer, model: nn.Module, options: KernelOptions, rows_per_call: int
    ) -> None:
        self.explainer = explainer
        self.model = model
        self.options = options
        self.rows_per_call = max(1, rows_per_call)
        self.needs_grad = True

    def attribute(self, batch: Batch) -> Attribution:
        """Attributions of the batch's rows (see :class:`Batch`)."""
        e = self.explainer
        n, genes = batch.x.shape
        k = 1
        if e.uses_reference == "each":
            assert batch.refs is not None
            k = batch.refs.shape[-2]
        # rows x references, row-major: row i, reference r -> i * k + r
        row = np.repeat(np.arange(n), k)
        ref = np.tile(np.arange(k), n)
        ctx = RowContext(
            batch.ctx.samples[row],
            batch.ctx.repeats[row],
            ref if e.uses_reference == "each" else batch.ctx.refs[row],
            batch.ctx.run_seed,
            batch.ctx.model_id,
            batch.ctx.spec,
            batch.ctx.masks,
        )
        out = torch.empty((n * k, genes), dtype=batch.x.dtype, device=batch.x.device)
        step = n * k if e.per_row else self.rows_per_call
        for start in range(0, n * k, step):
            idx = np.arange(start, min(start + step, n * k))
            xs = batch.x[row[idx]]
            ts = batch.targets[row[idx]]
            if e.uses_reference == "each":
                assert batch.refs is not None
                bs = batch.refs[ref[idx]] if batch.refs.dim() == 2 else batch.refs[row[idx], ref[idx]]
            elif e.uses_reference == "distribution":
                assert batch.refs is not None
                bs = (
                    batch.refs.expand(n, *batch.refs.shape[-2:])[row[idx]]
                    if batch.refs.dim() == 2
                    else batch.refs[row[idx]]
                )
            else:
                bs = None
            sub = ctx.subset(idx)
            if sub.masks is not None:
                sub.masks.set_rows(sub.samples, sub.repeats, batch.collapse)
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*(require gradients|non-linear).*", category=UserWarning
                )
                torch.manual_seed(
                    seed_int(
                        sub.run_seed, PAPER_STREAM, sub.model_id, sub.samples[0], sub.repeats[0], sub.refs[0]
                    )
                )
                out[idx] = e.fn(self.model, xs, bs, ts, sub).detach().to(out.dtype)
        values = out.reshape(n, k, genes)
        if batch.reduce_refs:
            values = values.mean(dim=1, keepdim=True)
        return Attribution(values)


class MLPBackend:
    """Closed-form attributions of an eval-mode MLP (:func:`gexplain.pipelines.explain.fastpath.is_affine_mlp`).

    Parameters
    ----------
    explainer
        An explainer with a closed form (``explainer.closed_form``).
    model
        The MLP.
    options
        Explainer settings.
    budget_bytes
        Working memory for one chunk of the reference contraction, in bytes.
    """

    def __init__(
        self, explainer: Explainer, model: nn.Module, options: KernelOptions, budget_bytes: int
    ) -> None:
        if explainer.closed_form is None:
            raise ValueError(f"the MLP backend has no '{explainer.name}'")
        self.factor = explainer.closed_form
        self.explainer = explainer
        self.needs_grad = False
        self.fast = MLPFastPath(model)
        self.options = options
        self.budget_bytes = budget_bytes
        self.p = float(model.dropout.p)

    def exact_rows(
        self,
        x: torch.Tensor,
        targets: torch.Tensor,
        samples: np.ndarray,
        repeats: range,
        pool: torch.Tensor | None,
        index: np.ndarray,
        masks: DropoutMasks | None,
        options: ReduceOptions,
    ) -> Iterator[RowChunk]:
        """Every (sample, repeat, reference) row, reduced over references per (sample, repeat).

        Parameters
        ----------
        x
            (samples, genes) inputs.
        targets
            (samples,) target classes.
        samples
            (samples,) global sample indices (keys of the dropout masks).
        repeats
            The repeats to compute.
        pool
            (P, genes) reference pool, or None for reference-free explainers.
        index
            (repeats, R) int64: pool row of reference r in repeat k (R = 1 without references).
        masks
            The dropout-mask hooks (``mc_dropout``) or None (dropout off).
        options
            Abs, median or mean (:class:`gexplain.pipelines.explain.exact.ReduceOptions`).

        Yields
        ------
        RowChunk
            Chunks of samples and repeats, in (sample chunk, repeat chunk) order.
        """
        fast = self.fast
        n, genes = x.shape
        hidden = fast.hidden_size
        n_refs = index.shape[1]
        name = self.explainer.name
        with torch.no_grad():
            h = fast.hidden(x)
            if pool is None:
                weights = ((h * fast.bn_scale + fast.bn_shift) > 0).to(x.dtype).unsqueeze(1)  # (n, 1, H)
            else:
                weights = path_weights(
                    fast, name, h, fast.hidden(pool), self.options.n_steps, self.options.ig_method
                )  # (n, P, H)
            c = head(fast, targets).to(x.dtype)
            w_t = fast.weight.to(x.dtype).T.contiguous()  # (genes, hidden)
            ns, kc = chunk_shape(n, len(repeats), n_refs, genes, x.element_size(), self.budget_bytes)
            idx_all = torch.as_tensor(index, device=x.device)
            # one output buffer for every chunk: no fresh pages to fault in per GEMM
            out = torch.empty(genes * min(ns, n) * kc * n_refs, dtype=x.dtype, device=x.device)
            for s0 in range(0, n, ns):
                pos = np.arange(s0, min(s0 + ns, n))
                for k0 in range(0, len(repeats), kc):
                    k1 = min(k0 + kc, len(repeats))
                    sub = repeats[k0:k1]
                    m = self._repeat_masks(masks, samples[pos], sub, x)  # (ns, kc, H)
                    gamma = weights[pos][:, idx_all[k0:k1]] if pool is not None else weights[pos][:, None]
                    gamma = gamma * (c[pos][:, None, None, :] * m[:, :, None, :])  # (ns, kc, R, H)
                    # genes x rows (sample, repeat, reference)
                    rows = gamma.shape[0] * gamma.shape[1] * n_refs
                    proj = torch.mm(
                        w_t, gamma.reshape(rows, hidden).T, out=out[: genes * rows].view(genes, rows)
                    )
                    center, m2 = reduce_rows(proj, x[pos], pool, index[k0:k1], options)
                    yield RowChunk(pos, sub, center, m2)

    def _repeat_masks(
        self, masks: DropoutMasks | None, samples: np.ndarray, repeats: range, like: torch.Tensor
    ) -> torch.Tensor:
        """(samples, repeats, hidden) dropout masks, ones when dropout is off."""
        hidden = self.fast.hidden_size
        if masks is None:
            return torch.ones((len(samples), len(repeats), hidden), dtype=like.dtype, device=like.device)
        keys = np.repeat(np.asarray(samples, dtype=np.int64), len(repeats))
        reps = np.tile(np.asarray(repeats, dtype=np.int64), len(samples))
        masks.set_rows(keys, reps)
        out = masks.masks(0, (hidden,), like.device).to(like.dtype)
        return out.reshape(len(samples), len(repeats), hidden)

    def _masks(self, batch: Batch, shape: tuple[int, ...]) -> torch.Tensor:
        ctx = batch.ctx
        if ctx.masks is None:
            return torch.ones(shape, dtype=batch.x.dtype, device=batch.x.device)
        ctx.masks.set_rows(ctx.samples, ctx.repeats, batch.collapse)
        return ctx.masks.masks(0, (self.fast.hidden_size,), batch.x.device).to(batch.x.dtype)

    def attribute(self, batch: Batch) -> Attribution:
        """Attributions of the batch's rows (see :class:`Batch`)."""
        if batch.refs is not None and batch.refs.dim() == 3:
            return self._per_row(batch)
        return self._shared(batch)

    def _per_row(self, batch: Batch) -> Attribution:
        """Rows with their own references (rows, R, genes): one closed form per (row, reference)."""
        assert batch.refs is not None
        n, n_refs, genes = batch.refs.shape
        masks = self._masks(batch, (n, self.fast.hidden_size))
        h = self.fast.hidden(batch.x)
        rows = np.repeat(np.arange(n), n_refs)
        out = fast_attributions(
            self.fast,
            self.explainer.name,
            batch.x[rows],
            batch.refs.reshape(n * n_refs, genes),
            batch.targets[rows],
            masks[rows],
            self.options.n_steps,
            self.options.ig_method,
            self.options.saliency_abs,
            h[rows],
        ).reshape(n, n_refs, genes)
        if batch.reduce_refs:
            out = out.mean(dim=1, keepdim=True)
        return Attribution(out)

    def _weights(self, batch: Batch, h: torch.Tensor) -> torch.Tensor:
        """Path weights (rows, R, hidden); R = 1 for the reference-free explainers."""
        return unit_weights(
            self.fast,
            self.explainer.name,
            self.factor,
            h,
            batch.refs,
            self.options.n_steps,
            self.options.ig_method,
        )

    def _shared(self, batch: Batch) -> Attribution:
        """Rows sharing one reference set (or none): contraction over references, mean mask."""
        factor = self.factor
        x = batch.x
        n = x.shape[0]
        hidden = self.fast.hidden_size
        refs = batch.refs if factor == "delta" else None
        if refs is not None and not batch.reduce_refs and refs.shape[0] > 1:
            # per-reference values wanted: expand to rows with their own references
            expanded = Batch(x, batch.targets, refs.expand(n, *refs.shape), batch.ctx, batch.collapse)
            return self._per_row(expanded)
        mean_mask = self._masks(batch, (n, hidden))
        h = self.fast.hidden(x)
        weights = self._weights(batch, h)
        c = head(self.fast, batch.targets).to(x.dtype)
        spread = batch.spread and (
            batch.collapse is not None and len(batch.collapse) > 1 or batch.ctx.masks is None
        )
        if factor == "none" and self.options.saliency_abs and not spread:
            grad = ((weights[:, 0] * c * mean_mask) @ self.fast.weight.to(x.dtype)).abs()
            return Attribution(grad.unsqueeze(1))
        if not spread:
            if refs is None:
                values = (weights[:, 0] * c * mean_mask) @ self.fast.weight.to(x.dtype)
                if factor == "input":
                    values = values * x
            else:
                values = contract_references(
                    self.fast, x, refs, weights * (c * mean_mask)[:, None, :], self.budget_bytes
                )
            return Attribution(values.unsqueeze(1))
        terms = unit_terms(self.fast, x, refs, weights, batch.targets, factor != "none")
        values = torch.bmm(mean_mask.unsqueeze(1), terms)[:, 0]
        if batch.ctx.masks is None:  # expected / deterministic: analytic variance of one repeat
            return Attribution(values.unsqueeze(1), repeat_var=repeat_variance(terms, self.p))
        assert batch.collapse is not None
        each = torch.stack(
            [
                torch.from_numpy(
                    np.stack(
                        [
                            dropout_mask(
                                batch.ctx.run_seed, batch.ctx.model_id, int(s), r, 0, (hidden,), self.p
                            )
                            for r in batch.collapse
                        ]
                    )
                )
                for s in batch.ctx.samples
            ]
        ).to(x)  # (rows, K, hidden)
        dev = torch.bmm(each - mean_mask.unsqueeze(1), terms)  # (rows, K, genes)
        return Attribution(values.unsqueeze(1), repeat_m2=(dev * dev).sum(dim=1))


def make_backend(
    explainer: Explainer,
    model: nn.Module,
    options: KernelOptions,
    *,
    mlp: bool,
    rows_per_call: int,
    budget_bytes: int,
) -> CaptumBackend | MLPBackend:
    """The backend for one explainer and model: the MLP closed forms when ``mlp`` (the model is an
    affine MLP and the closed forms are allowed) and the explainer has one, else Captum."""
    if mlp and explainer.closed_form is not None:
        return MLPBackend(explainer, model, options, budget_bytes)
    return CaptumBackend(explainer, model, options, rows_per_call)


__all__ = [
    "Attribution",
    "Backend",
    "Batch",
    "CaptumBackend",
    "DropoutMasks",
    "MLPBackend",
    "make_backend",
    "seed_int",
]
