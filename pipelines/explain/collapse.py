"""When repeats collapse: one pass with the mean dropout mask equals the mean of K passes.

In Zhao et al.'s MLP dropout follows the last non-linearity (fc1 -> BN -> ReLU -> dropout -> fc2),
so the forward activations of every input, reference and integration step do not depend on the
mask, and an explainer whose backward pass is linear in the upstream gradient is linear in the
mask m:
``A(m) = sum_h m_h L_h``. Hence

* the mean of K repeats equals one pass with the mean of their K masks, exactly;
* K -> infinity gives the pass with E[m] = 1 (dropout off): mode ``expected``;
* with independent masks (values 0 or 1/(1-p)), one repeat's variance around that limit is
  ``p/(1-p) sum_h L_h**2`` per gene, and the mean of K repeats has 1/K of it.

The collapse is exact only for estimators that average over repeats before any non-linear step:
the signed mean over references and repeats (``abs = false``, no ``reference_reduce``), and the
median over references of the repeat mean (``reference_reduce = "median_of_repeat_mean"``). Taking
``abs`` or a median within each repeat (Zhao et al.'s script) is not linear in the mask and keeps
explicit repeats. References drawn per (sample, repeat) pair a reference with a mask, so the
collapse also needs ``reference_scope = "cohort"`` (or a reference-free explainer).

Their CNN is different: dropout acts on the last feature maps *before* global pooling,
BatchNorm and a ReLU (``drop -> gap -> bn -> relu -> fc`` in their ``cnn_v2.0.0.py``, and the same in
:class:`gexplain.pipelines.models.architectures.CNN`), so the head's ReLU sees the mask and no explainer is
linear in it: CNN repeats stay explicit.

Architectures declared here (the ``arch`` attribute of :mod:`gexplain.pipelines.models.architectures`):
``mlp`` collapses, ``cnn`` does not. Any other module is probed numerically (:func:`probe_linear`).
"""

from __future__ import annotations

import numpy as np
import torch
from gexplain.pipelines.explain.modes import DROPOUT_TYPES, DropoutMasks
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.explain.rows import Explainer, RowContext
from torch import nn

DECLARED_ARCHS = ("mlp",)  # dropout after the last non-linearity
NOT_LINEAR_ARCHS = ("cnn",)  # dropout before the head's ReLU
PROBE_ROWS = 2
PROBE_RTOL = 1e-5


def explainer_is_linear(explainer: Explainer, params: ExplainParams, arch: str | None) -> bool:
    """True when ``explainer`` is linear in a mask after the last non-linearity.

    Saliency only without ``saliency_abs``; guided backpropagation only on the one-hidden-layer MLP
    (its clamp acts on ``W2[t] * m`` with ``m >= 0``).
    """
    if explainer.name == "saliency":
        return not params.saliency_abs
    if explainer.name == "guided_backprop":
        return arch == "mlp"
    return explainer.linear


def estimator_collapses(explainer: Explainer, params: ExplainParams) -> bool:
    """True when the requested aggregation and references allow the repeat collapse."""
    refs_shared = (
        explainer.uses_reference == "none"
        or params.reference_scope == "cohort"
        or params.reference_kind == "zero"
    )
    return (
        params.repeat_mode == "auto"
        and params.mode in ("mc_dropout", "expected", "deterministic")
        and not params.abs
        and params.reference_reduce in (None, "median_of_repeat_mean")
        and explainer.uses_reference != "distribution"
        and not explainer.per_row
        and refs_shared
    )


def collapses(explainer: Explainer, params: ExplainParams, arch: str | None) -> bool:
    """True when ``explainer`` runs collapsed for a model of architecture ``arch``.

    ``arch`` is a declared architecture (:data:`DECLARED_ARCHS`) or the outcome of
    :func:`probe_linear` (pass ``"probed"``).
    """
    if arch not in (*DECLARED_ARCHS, "probed"):
        return False
    return estimator_collapses(explainer, params) and explainer_is_linear(explainer, params, arch)


def probe_linear(model: nn.Module, explainer: Explainer, x: torch.Tensor, params: ExplainParams) -> bool:
    """Numerical probe for undeclared models: is the mean-mask attribution the mean of two masks?

    Runs ``explainer`` on ``PROBE_ROWS`` inputs with a zero reference, with the masks of repeats 0
    and 1 and with their mean; the model must be in eval mode with dropout modules.
    """
    if not any(isinstance(m, DROPOUT_TYPES) for m in model.modules()):
        return True  # nothing random: every repeat is the same
    rows = x[:PROBE_ROWS]
    targets = torch.zeros(len(rows), dtype=torch.int64, device=x.device)
    base = torch.zeros_like(rows) if explainer.uses_reference == "each" else None
    samples = np.arange(len(rows))
    masks = DropoutMasks(model, 0, 0)
    try:
        outs = []
        for repeat, collapse in ((0, None), (1, None), (0, range(0, 2))):
            ctx = RowContext(
                samples,
                np.full(len(rows), repeat),
                np.zeros(len(rows), dtype=np.int64),
                0,
                0,
                params.kernel_options(),
                masks,
            )
            masks.set_rows(ctx.samples, ctx.repeats, collapse)
            outs.append(explainer.fn(model, rows, base, targets, ctx).detach())
    finally:
        masks.remove()
    mean_of_two = (outs[0] + outs[1]) / 2
    scale = float(mean_of_two.abs().max()) or 1.0
    return bool((outs[2] - mean_of_two).abs().max() <= PROBE_RTOL * scale)


def model_arch(
    model: nn.Module, explainers: list[Explainer], x: torch.Tensor, params: ExplainParams
) -> str | None:
    """The architecture used by :func:`collapses`: the declared ``arch``, ``"probed"`` when every
    linear explainer passes :func:`probe_linear`, else None."""
    arch = getattr(model, "arch", None)
    if arch in DECLARED_ARCHS:
        return str(arch)
    if arch in NOT_LINEAR_ARCHS:
        return None
    candidates = [e for e in explainers if estimator_collapses(e, params) and e.linear]
    if candidates and all(probe_linear(model, e, x, params) for e in candidates):
        return "probed"
    return None
