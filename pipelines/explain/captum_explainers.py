"""Captum-backed explainers behind the uniform call of :mod:`gexplain.pipelines.explain.registry`.

Each function takes (rows, genes) inputs and returns (rows, genes) attributions for the row's
target class. Rows go through Captum in one call (Captum's own step-major expansion keeps the
dropout masks aligned, see :class:`gexplain.pipelines.explain.modes.DropoutMasks`).
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import DeepLift, GuidedBackprop, InputXGradient, IntegratedGradients, LayerGradCam, Saliency
from gexplain.pipelines.explain.rows import NOISE_STREAM, RowContext
from torch import nn


def saliency(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """Gradient of the target logit (absolute when ``spec.saliency_abs``, Captum's default)."""
    return Saliency(model).attribute(x, target=targets, abs=ctx.spec.saliency_abs)


def input_x_gradient(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """Input times gradient of the target logit."""
    return InputXGradient(model).attribute(x, target=targets)


def guided_backprop(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """Guided backpropagation (ReLU backward passes only positive gradients)."""
    return GuidedBackprop(model).attribute(x, target=targets)


def integrated_gradients(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """Integrated gradients from each row's reference (``spec.n_steps``, ``spec.ig_method``)."""
    return IntegratedGradients(model).attribute(
        x, baselines=baselines, target=targets, n_steps=ctx.spec.n_steps, method=ctx.spec.ig_method
    )


def deeplift(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """DeepLIFT (rescale rule) from each row's reference; averaged over references it is DeepLIFT-SHAP."""
    return DeepLift(model).attribute(x, baselines=baselines, target=targets)


def gradient_shap(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """GradientSHAP (expected gradients) term of each (row, reference), as Captum's GradientShap.

    For each row, ``spec.gs_samples`` draws of alpha ~ U(0, 1) and input noise N(0, gs_stdev) keyed
    by the row: ``grad f(x' + alpha (x + e - x')) * (x + e - x')``, averaged over the draws.
    Averaged over the R references this is Captum's GradientShap with those references as baselines.
    """
    assert baselines is not None
    k = ctx.spec.gs_samples
    rows, genes = x.shape
    alphas = np.empty((k, rows), dtype=np.float32)
    noise = np.zeros((k, rows, genes), dtype=np.float32)
    for i in range(rows):
        rng = ctx.rng(i, NOISE_STREAM)
        alphas[:, i] = rng.random(k)
        if ctx.spec.gs_stdev > 0:
            noise[:, i] = rng.normal(0.0, ctx.spec.gs_stdev, size=(k, genes))
    noisy = x.unsqueeze(0) + torch.from_numpy(noise).to(x)
    a = torch.from_numpy(alphas).to(x).unsqueeze(-1)
    scaled = (
        (baselines.unsqueeze(0) + a * (noisy - baselines.unsqueeze(0)))
        .reshape(k * rows, genes)
        .requires_grad_(True)
    )
    out = model(scaled)
    picked = out.gather(1, targets.repeat(k).unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(picked, scaled)
    return (grad.reshape(k, rows, genes) * (noisy - baselines.unsqueeze(0))).mean(0).detach()


def grad_cam_genes(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of ``model.last_conv`` (ReLU of the channel-weighted map) mapped to genes: (rows, genes)."""
    cam = LayerGradCam(model, model.last_conv).attribute(x, target=targets, relu_attributions=True)
    return model.grid_to_genes(cam[:, 0])


def guided_gradcam(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """Guided Grad-CAM for the CNN: Grad-CAM of the last convolution, up-sampled bilinearly to the
    gene grid and mapped to genes, times guided backpropagation (as Captum's GuidedGradCam with
    ``interpolate_mode="bilinear"`` on the grid)."""
    cam = grad_cam_genes(model, x, targets)
    return cam.detach() * guided_backprop(model, x, None, targets, ctx)
