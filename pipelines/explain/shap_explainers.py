"""SHAP-family explainers: SHAP's GradientExplainer / DeepExplainer for torch models, and Captum's
model-agnostic KernelShap and Lime for small gene panels and non-differentiable models.

These explain one (sample, repeat) -- or one (sample, repeat, reference) -- per call; the random
draws of each call are seeded from the row's keys, so results do not depend on block or order.
"""

from __future__ import annotations

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnLinearRegression
from captum.attr import KernelShap, Lime
from gexplain.pipelines.explain.rows import RowContext
from torch import nn

SHAP_STREAM = 4


def _row_seed(ctx: RowContext, row: int) -> int:
    return int(ctx.rng(row, SHAP_STREAM).integers(0, 2**31 - 1))


def _pick(values: object, target: int) -> np.ndarray:
    """Select the target class from SHAP output (list per class, or array (..., classes))."""
    if isinstance(values, list):
        return np.asarray(values[target])
    arr = np.asarray(values)
    return arr[..., target]


def shap_gradient(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """SHAP GradientExplainer (expected gradients) with each row's R references as background.

    ``x`` (rows, genes), ``baselines`` (rows, R, genes); ``spec.shap_nsamples`` samples per row.
    """
    import shap  # heavy import, only when used

    assert baselines is not None
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        ctx.key_rows(np.array([i]))
        explainer = shap.GradientExplainer(model, baselines[i])
        values = explainer.shap_values(x[i : i + 1], nsamples=ctx.spec.shap_nsamples, rseed=_row_seed(ctx, i))
        out[i] = torch.as_tensor(_pick(values, int(targets[i]))[0], dtype=x.dtype)
    return out


def shap_deep(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """SHAP DeepExplainer (DeepLIFT multipliers averaged over the background) with each row's R
    references as background; the SHAP values of a row sum to f(x) - mean f(references)."""
    import shap  # heavy import, only when used

    assert baselines is not None
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        ctx.key_rows(np.array([i]))
        explainer = shap.DeepExplainer(model, baselines[i])
        values = explainer.shap_values(x[i : i + 1], check_additivity=False)
        out[i] = torch.as_tensor(_pick(values, int(targets[i]))[0], dtype=x.dtype)
    return out


def _perturbation(
    method: type,
    model: nn.Module,
    x: torch.Tensor,
    baselines: torch.Tensor | None,
    targets: torch.Tensor,
    ctx: RowContext,
) -> torch.Tensor:
    assert baselines is not None
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        ctx.key_rows(np.array([i]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_row_seed(ctx, i))
            kwargs = {} if method is KernelShap else {"interpretable_model": SkLearnLinearRegression()}
            attr = method(model, **kwargs).attribute(
                x[i : i + 1],
                baselines=baselines[i : i + 1],
                target=int(targets[i]),
                n_samples=ctx.spec.kernel_samples,
                perturbations_per_eval=min(ctx.spec.kernel_samples, 64),
            )
        out[i] = attr[0].detach()
    return out


def kernel_shap(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """Kernel SHAP (Captum KernelShap, ``spec.kernel_samples`` coalitions) from each row's reference."""
    with torch.no_grad():
        return _perturbation(KernelShap, model, x, baselines, targets, ctx)


def lime(
    model: nn.Module, x: torch.Tensor, baselines: torch.Tensor | None, targets: torch.Tensor, ctx: RowContext
) -> torch.Tensor:
    """LIME (Captum Lime with an ordinary least-squares surrogate) from each row's reference."""
    with torch.no_grad():
        return _perturbation(Lime, model, x, baselines, targets, ctx)
