"""Exact fast path for MLPs whose first map is affine (Standardize + Linear).

For ``f(x) = fc2(mask * relu(bn(W1 s(x) + b1)))`` with ``s(x) = (x - m) / sd`` and BatchNorm in
eval mode (an affine map), the first map ``h(x) = W x / sd + b`` is affine, so along the path
``x' + a (x - x')`` the hidden pre-activation is ``h' + a (h - h')``, and every input gradient is
``(gamma @ W) / sd`` for a hidden-space gradient ``gamma`` (rows, hidden). Integrated gradients,
saliency, input x gradient and DeepLIFT (rescale rule) therefore need the wide first layer once
per input and reference, do the per-step work in hidden space, and project back with one
(rows x hidden) @ (hidden x genes) product. Results equal Captum's on the same model and dropout
masks up to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import torch
from gexplain.pipelines.explain.modes import DROPOUT_TYPES
from torch import nn

STEP_ELEMENTS = 1 << 24  # hidden-space elements per vectorised step chunk (64 MiB float32)
DEEPLIFT_EPS = 1e-10  # Captum's threshold below which the rescale rule falls back to the gradient


def _quadrature(method: str, n_steps: int) -> tuple[list[float], list[float]]:
    """Captum's ``approximation_parameters(method)`` evaluated at ``n_steps``: (step sizes, alphas).

    Written out so that the closed-form path does not import Captum (seconds of start-up); the
    values are Captum's, including its float32 ``torch.linspace`` for the Riemann alphas
    (tests/test_explain_exact.py compares them with Captum's).
    """
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return (0.5 * weights).tolist(), (0.5 * (1 + nodes)).tolist()
    rule = method.removeprefix("riemann_")
    if rule not in ("trapezoid", "left", "middle", "right") or not method.startswith("riemann_"):
        raise ValueError(f"Invalid integral approximation method name: {method}")
    if n_steps < 2:
        raise ValueError("The number of steps has to be larger than one")
    sizes = [1 / n_steps] * n_steps
    if rule == "trapezoid":
        sizes[0] /= 2
        sizes[-1] /= 2
    lo, hi = {
        "trapezoid": (0.0, 1.0),
        "left": (0.0, 1 - 1 / n_steps),
        "middle": (1 / (2 * n_steps), 1 - 1 / (2 * n_steps)),
        "right": (1 / n_steps, 1.0),
    }[rule]
    return sizes, torch.linspace(lo, hi, n_steps).tolist()


def ig_steps(method: str, n_steps: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integration points and step weights as Captum uses them: (n_steps,) each, in ``like``'s dtype.

    Captum casts the step weights to float32 before multiplying the gradients
    (``torch.tensor(step_sizes).float()``); the same rounding is applied here so that float64
    results agree with Captum's to 1e-12 rather than 1e-8.
    """
    sizes, alphas = _quadrature(method, n_steps)
    a = torch.tensor(alphas, dtype=like.dtype, device=like.device)
    w = torch.tensor(sizes).float().to(like.device, like.dtype)
    return a, w


def is_affine_mlp(model: nn.Module) -> bool:
    """True for modules shaped like :class:`gexplain.pipelines.models.architectures.MLP` (the fast path applies)."""
    parts = {
        name: getattr(model, name, None) for name in ("standardize", "fc1", "bn", "act", "dropout", "fc2")
    }
    return (
        isinstance(parts["fc1"], nn.Linear)
        and (
            isinstance(parts["bn"], nn.Identity)
            or (isinstance(parts["bn"], nn.BatchNorm1d) and parts["bn"].running_var is not None)
        )
        and isinstance(parts["act"], nn.ReLU)
        and isinstance(parts["dropout"], nn.Dropout)
        and isinstance(parts["fc2"], nn.Linear)
        and all(hasattr(parts["standardize"], a) for a in ("mean", "std"))
        and sum(isinstance(m, DROPOUT_TYPES) for m in model.modules()) == 1
    )


class MLPFastPath:
    """Hidden-space attributions of an eval-mode MLP.

    Parameters
    ----------
    model
        An MLP (:func:`is_affine_mlp`). Kept: ``weight`` (hidden, genes) = W1 / sd and ``bias``
        (hidden,) = b1, the standardisation ``mean`` m (genes,), the eval-mode BatchNorm as scale and
        shift (hidden,), and ``fc2``'s weight (classes, hidden) and bias (classes,). The first layer is
        applied as ``(W1 / sd) (x - m) + b1``: centring first keeps the digits that folding m into
        the bias would cancel when x is close to m.
    """

    def __init__(self, model: nn.Module) -> None:
        with torch.no_grad():
            weight = model.fc1.weight.detach()
            hidden = weight.shape[0]
            self.bias = model.fc1.bias.detach() if model.fc1.bias is not None else weight.new_zeros(hidden)
            std = getattr(model.standardize, "std", None)
            mean = getattr(model.standardize, "mean", None)
            self.mean = mean.detach() if mean is not None else None
            self.weight = weight if std is None else weight / std.detach()
            bn = model.bn
            if isinstance(bn, nn.BatchNorm1d):
                gain = torch.rsqrt(bn.running_var + bn.eps)
                if bn.weight is not None:
                    gain = gain * bn.weight
                self.bn_scale = gain
                self.bn_shift = (bn.bias if bn.bias is not None else 0.0) - bn.running_mean * gain
            else:  # no BatchNorm: identity scale and shift
                self.bn_scale = weight.new_ones(hidden)
                self.bn_shift = weight.new_zeros(hidden)
            self.w2 = model.fc2.weight.detach()
            self.b2 = (
                model.fc2.bias.detach() if model.fc2.bias is not None else self.w2.new_zeros(self.w2.shape[0])
            )
        self.hidden_size = self.weight.shape[0]

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-BatchNorm hidden activations W1 s(x) + b1: (rows, genes) -> (rows, hidden)."""
        return torch.addmm(self.bias, x if self.mean is None else x - self.mean, self.weight.T)

    def _head(self, masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """d logit_t / d relu-output times BN scale and mask: (rows, hidden)."""
        return masks * self.w2[targets] * self.bn_scale

    def logits(self, h: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Logits (rows, classes) from pre-BN hidden activations (rows, hidden) and masks."""
        return torch.relu(h * self.bn_scale + self.bn_shift) * masks @ self.w2.T + self.b2

    def project(self, gamma: torch.Tensor) -> torch.Tensor:
        """Input gradient (rows, genes) from a hidden-space gradient (rows, hidden)."""
        return gamma @ self.weight

    def gradient(self, h: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Input gradient of the target logit at inputs with hidden pre-activations ``h`` (rows, hidden)."""
        active = (h * self.bn_scale + self.bn_shift) > 0
        return self.project(active * self._head(masks, targets))

    def integrated_gradients(
        self,
        h: torch.Tensor,
        h_ref: torch.Tensor,
        delta: torch.Tensor,
        masks: torch.Tensor,
        targets: torch.Tensor,
        n_steps: int,
        method: str,
    ) -> torch.Tensor:
        """Integrated gradients (rows, genes) as Captum computes them.

        Parameters
        ----------
        h, h_ref
            (rows, hidden) pre-BN activations of the inputs and their references.
        delta
            (rows, genes) ``x - x'``.
        masks
            (rows, hidden) dropout masks (ones when off).
        targets
            (rows,) target classes.
        n_steps, method
            Captum's step count and quadrature.
        """
        a, w = ig_steps(method, n_steps, h)
        z_ref = h_ref * self.bn_scale + self.bn_shift
        z_span = (h - h_ref) * self.bn_scale
        weight_active = active_weight(z_ref, z_span, a, w)
        return self.project(weight_active * self._head(masks, targets)) * delta

    def deeplift(
        self,
        h: torch.Tensor,
        h_ref: torch.Tensor,
        delta: torch.Tensor,
        masks: torch.Tensor,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        """DeepLIFT rescale-rule attributions (rows, genes) as Captum's DeepLift computes them."""
        z = h * self.bn_scale + self.bn_shift
        z_ref = h_ref * self.bn_scale + self.bn_shift
        dz = z - z_ref
        small = dz.abs() < DEEPLIFT_EPS
        ratio = (torch.relu(z) - torch.relu(z_ref)) / torch.where(small, torch.ones_like(dz), dz)
        multiplier = torch.where(small, (z > 0).to(z.dtype), ratio)
        return self.project(multiplier * self._head(masks, targets)) * delta


def fast_attributions(
    fast: MLPFastPath,
    name: str,
    x: torch.Tensor,
    baselines: torch.Tensor | None,
    targets: torch.Tensor,
    masks: torch.Tensor,
    spec_n_steps: int,
    spec_method: str,
    saliency_abs: bool,
    h: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attributions (rows, genes) of explainer ``name`` (one with a ``closed_form``) by the fast path.

    ``h`` optionally gives the inputs' hidden activations (rows, hidden) when already computed.
    """
    h = fast.hidden(x) if h is None else h
    if name == "saliency":
        grad = fast.gradient(h, masks, targets)
        return grad.abs() if saliency_abs else grad
    if name == "input_x_gradient":
        return fast.gradient(h, masks, targets) * x
    assert baselines is not None
    h_ref = fast.hidden(baselines)
    delta = x - baselines
    if name == "integrated_gradients":
        return fast.integrated_gradients(h, h_ref, delta, masks, targets, spec_n_steps, spec_method)
    if name in ("deeplift", "deeplift_shap"):
        return fast.deeplift(h, h_ref, delta, masks, targets)
    raise ValueError(f"no fast path for '{name}'")


def head(fast: MLPFastPath, targets: torch.Tensor) -> torch.Tensor:
    """d logit_t / d pre-BN hidden activation at an active unit, without the mask: (rows, hidden)."""
    return fast.w2[targets] * fast.bn_scale


def path_weights(
    fast: MLPFastPath,
    name: str,
    h: torch.Tensor,
    h_ref: torch.Tensor,
    n_steps: int,
    method: str,
) -> torch.Tensor:
    """Hidden-space path weights of every (sample, shared reference) pair: (samples, R, hidden).

    For integrated gradients, the step-weighted fraction of the straight path from reference r to
    sample i on which unit h is active; for DeepLIFT (rescale rule), the unit's multiplier. The
    input attribution of the pair is ``(x - r) * ((weights * head * mask) @ W~)``.

    Parameters
    ----------
    fast
        The MLP.
    name
        ``integrated_gradients``, ``deeplift`` or ``deeplift_shap``.
    h, h_ref
        Pre-BN hidden activations of the samples (samples, hidden) and of the references (R, hidden).
    n_steps, method
        Integrated-gradients steps and quadrature (Captum's names).
    """
    z = (h * fast.bn_scale + fast.bn_shift).unsqueeze(1)  # (n, 1, H)
    z_ref = (h_ref * fast.bn_scale + fast.bn_shift).unsqueeze(0)  # (1, R, H)
    if name in ("deeplift", "deeplift_shap"):
        dz = z - z_ref
        small = dz.abs() < DEEPLIFT_EPS
        ratio = (torch.relu(z) - torch.relu(z_ref)) / torch.where(small, torch.ones_like(dz), dz)
        return torch.where(small, (z > 0).to(z.dtype).expand_as(dz), ratio)
    if name != "integrated_gradients":
        raise ValueError(f"no path weights for '{name}'")
    a, w = ig_steps(method, n_steps, h)
    return active_weight(z_ref, z - z_ref, a, w)


def active_weight(z_ref: torch.Tensor, span: torch.Tensor, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_s w_s [z_ref + a_s span > 0]`` elementwise, without a step axis.

    The path ``z_ref + a span`` is linear in ``a``, so the unit is active on one side of
    ``t = -z_ref / span``: the weight is a prefix or suffix sum of the (sorted) step weights, found
    by binary search. Equal to the per-step comparison except where ``a_s`` lies within rounding
    of ``t`` (as the per-step comparison itself differs from Captum's input-space path there).

    Parameters
    ----------
    z_ref, span
        Broadcastable tensors: post-BN activation at the reference and its change to the input.
    a, w
        (steps,) integration points and step weights.
    """
    order = torch.argsort(a)
    a_sorted = a[order].contiguous()
    cum = torch.cat([w.new_zeros(1), torch.cumsum(w[order], 0)])
    total = cum[-1]
    z_ref, span = torch.broadcast_tensors(z_ref, span)
    safe = torch.where(span == 0, torch.ones_like(span), span)
    t = (-z_ref / safe).contiguous()
    above = total - cum[torch.searchsorted(a_sorted, t, right=True)]  # steps with a_s > t
    below = cum[torch.searchsorted(a_sorted, t, right=False)]  # steps with a_s < t
    flat = torch.where(z_ref > 0, total, torch.zeros_like(total))
    return torch.where(span > 0, above, torch.where(span < 0, below, flat))


def contract_references(
    fast: MLPFastPath,
    x: torch.Tensor,
    refs: torch.Tensor,
    gamma: torch.Tensor,
    budget_bytes: int,
) -> torch.Tensor:
    """Reference-averaged attribution from hidden-space weights, as one BLAS-3 contraction.

    ``mean_r (x - r) * (gamma_r @ W~) = x * (mean_r gamma_r @ W~) - (1/R) gamma.reshape(n, R*H) @ M``
    with ``M[(r, h), j] = r_j W~_hj``, built and multiplied in reference chunks so that a chunk of M
    stays within ``budget_bytes``.

    Parameters
    ----------
    fast
        The MLP (``weight`` is W~ = W1 / sd, (hidden, genes)).
    x
        (samples, genes) inputs.
    refs
        (R, genes) references shared by the samples.
    gamma
        (samples, R, hidden) path weights times head and mask.
    budget_bytes
        Bytes for one chunk of M.

    Returns
    -------
    torch.Tensor
        (samples, genes) mean over the R references.
    """
    n, n_refs, hidden = gamma.shape
    weight = fast.weight.to(x.dtype)
    out = x * (gamma.mean(dim=1) @ weight)
    per_ref = hidden * weight.shape[1] * x.element_size()
    step = max(1, min(n_refs, budget_bytes // max(per_ref, 1)))
    for r0 in range(0, n_refs, step):
        r1 = min(r0 + step, n_refs)
        m = (refs[r0:r1, None, :] * weight[None, :, :]).reshape((r1 - r0) * hidden, -1)
        out.addmm_(gamma[:, r0:r1].reshape(n, -1), m, alpha=-1.0 / n_refs)
    return out


def unit_weights(
    fast: MLPFastPath,
    name: str,
    factor: str,
    h: torch.Tensor,
    refs: torch.Tensor | None,
    n_steps: int,
    method: str,
) -> torch.Tensor:
    """Hidden-space weights (samples, R, hidden) of an explainer with a closed form: the path weights
    of every (sample, shared reference) pair (``factor == "delta"``), else (R = 1) the gate of the
    ReLU at the input.

    Parameters
    ----------
    fast
        The MLP.
    name
        Explainer name (integrated gradients or DeepLIFT's multipliers for ``"delta"``).
    factor
        The explainer's ``closed_form``: ``"none"``, ``"input"`` or ``"delta"``.
    h
        (samples, hidden) pre-BN activations of the inputs.
    refs
        (R, genes) shared references, or None.
    n_steps, method
        Integrated-gradients steps and quadrature.
    """
    if factor != "delta" or refs is None:
        return ((h * fast.bn_scale + fast.bn_shift) > 0).to(h.dtype).unsqueeze(1)
    return path_weights(fast, name, h, fast.hidden(refs), n_steps, method)


def explainer_terms(
    fast: MLPFastPath,
    name: str,
    factor: str,
    x: torch.Tensor,
    refs: torch.Tensor | None,
    targets: torch.Tensor,
    n_steps: int,
    method: str,
) -> torch.Tensor:
    """Per-hidden-unit terms (samples, hidden, genes) of an explainer with shared references: the
    attribution with dropout mask m is ``sum_h m_h L[:, h, :]`` (:func:`unit_terms`).

    With :func:`repeat_variance`, the one place the MLP's repeat spread comes from: the explain
    backend (``repeat_std``, ``expected`` mode) and the evaluate stage's saturation curves.
    Parameters as :func:`unit_weights`; ``x`` (samples, genes) inputs, ``targets`` (samples,).
    """
    weights = unit_weights(fast, name, factor, fast.hidden(x), refs, n_steps, method)
    return unit_terms(fast, x, refs if factor == "delta" else None, weights, targets, factor != "none")


def repeat_variance(terms: torch.Tensor, p: float) -> torch.Tensor:
    """Variance (samples, genes) of one repeat around the dropout-off limit, ``p/(1-p) sum_h L_h**2``,
    for inverted-dropout masks (0 or 1/(1-p), independent per unit) and terms (samples, hidden, genes)."""
    if p >= 1:
        return torch.zeros_like(terms[:, 0])
    return (p / (1.0 - p)) * (terms * terms).sum(dim=1)


def unit_terms(
    fast: MLPFastPath,
    x: torch.Tensor,
    refs: torch.Tensor | None,
    weights: torch.Tensor,
    targets: torch.Tensor,
    times_input: bool,
) -> torch.Tensor:
    """Per-hidden-unit terms of the reference-averaged attribution: (samples, hidden, genes).

    ``L[i, h, j] = c_ih W~_hj (y_ij mean_r a_irh - mean_r a_irh r_rj)`` with c the head, a the
    path weights and y = x (or 1 for saliency, without references). An attribution with dropout
    mask m is ``sum_h m_ih L[i, h, j]``: the repeat mean uses the mean mask, and the repeat
    variance follows from the masks' law (:mod:`gexplain.pipelines.explain.collapse`).

    Parameters
    ----------
    fast
        The MLP.
    x
        (samples, genes) inputs.
    refs
        (R, genes) shared references, or None for reference-free explainers.
    weights
        (samples, R, hidden) path weights (R = 1 without references: the unit's gradient gate).
    targets
        (samples,) target classes.
    times_input
        Multiply by the input (input x gradient, IG, DeepLIFT) or not (saliency).
    """
    n, n_refs, hidden = weights.shape
    weight = fast.weight.to(x.dtype)
    c = head(fast, targets).to(x.dtype)
    mean_w = weights.mean(dim=1) * c  # (n, H)
    terms = mean_w[:, :, None] * weight[None]
    if times_input:
        terms = terms * x[:, None, :]
    if refs is not None:
        rho = (weights.permute(0, 2, 1).reshape(n * hidden, n_refs) @ refs).reshape(n, hidden, -1)
        terms -= (c[:, :, None] / n_refs) * weight[None] * rho
    return terms
