"""Guided Grad-CAM++ for the CNN, batched over rows.

Grad-CAM++ (Chattopadhay et al. 2018) weights channel ``k`` of the rectified feature maps of the
last convolution block, ``A = act3(bn3(pool3(conv3(.))))`` (rows, K, h, w; non-negative, as the
paper's derivation assumes), with the gradient ``g = dy_c / dA`` as::

    alpha_kij = g_kij^2 / (2 g_kij^2 + g_kij^3 * sum_ab A_kab)   (0 where g_kij == 0 or the denominator is 0)
    w_k       = sum_ij alpha_kij * relu(g_kij)
    cam       = relu(sum_k w_k A_k)

The map is up-sampled bilinearly to the gene grid, mapped to genes (:meth:`CNN.grid_to_genes`)
and multiplied by guided backpropagation. Captum has no Grad-CAM++.
"""

from __future__ import annotations

import torch
from gexplain.pipelines.explain.captum_explainers import guided_backprop
from gexplain.pipelines.explain.rows import RowContext
from torch import nn


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Return Grad-CAM++ channel weights.

    Parameters
    ----------
    activations
        Rectified (non-negative) feature maps, shape (rows, K, h, w).
    grads
        Gradients of the target logit with respect to ``activations``, shape (rows, K, h, w).

    Returns
    -------
    torch.Tensor
        Weights (rows, K); ``alpha`` is 0 where the gradient or the denominator is 0.
    """
    g2 = grads * grads
    g3 = g2 * grads
    total = activations.sum(dim=(2, 3), keepdim=True)
    denom = 2.0 * g2 + g3 * total
    nonzero = (grads != 0) & (denom != 0)
    alpha = torch.where(
        nonzero, g2 / torch.where(nonzero, denom, torch.ones_like(denom)), torch.zeros_like(g2)
    )
    return (alpha * torch.relu(grads)).sum(dim=(2, 3))


def gradcampp_map(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Return the Grad-CAM++ map of the last block's rectified output ``model.act3``: (rows, h, w)."""
    captured: list[torch.Tensor] = []
    handle = model.act3.register_forward_hook(lambda m, i, o: captured.append(o))
    try:
        out = model(x)
    finally:
        handle.remove()
    acts = captured[0]
    (grads,) = torch.autograd.grad(out.gather(1, targets.unsqueeze(1)).sum(), acts)
    weights = gradcampp_weights(acts.detach(), grads)
    return torch.relu((weights[:, :, None, None] * acts.detach()).sum(dim=1))


def guided_gradcam_pp(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """Guided Grad-CAM++: the Grad-CAM++ map mapped to genes times guided backpropagation (rows, genes)."""
    cam = model.grid_to_genes(gradcampp_map(model, x, targets))
    return cam * guided_backprop(model, x, None, targets, ctx)
