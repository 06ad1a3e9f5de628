"""SmoothGrad: a noise tunnel around any explainer of the registry."""

from __future__ import annotations

import numpy as np
import torch
from gexplain.pipelines.explain.rows import NOISE_STREAM, ExplainFn, RowContext
from torch import nn

SMOOTHGRAD_STREAM = NOISE_STREAM + 10


def smoothgrad(inner: ExplainFn) -> ExplainFn:
    """Wrap ``inner``: average it over ``spec.nt_samples`` copies of the input with N(0, nt_stdev)
    noise (input units) drawn per (row keys, draw), as Captum's NoiseTunnel ``smoothgrad``.

    The noisy copies are stacked draw-major (nt_samples x rows) and explained in one call, so
    dropout masks stay tied to their rows.
    """

    def explain(
        model: nn.Module,
        x: torch.Tensor,
        baselines: torch.Tensor | None,
        targets: torch.Tensor,
        ctx: RowContext,
    ) -> torch.Tensor:
        k = ctx.spec.nt_samples
        rows, genes = x.shape
        noise = np.empty((k, rows, genes), dtype=np.float32)
        for i in range(rows):
            noise[:, i] = ctx.rng(i, SMOOTHGRAD_STREAM).normal(0.0, ctx.spec.nt_stdev, size=(k, genes))
        noisy = (x.unsqueeze(0) + torch.from_numpy(noise).to(x)).reshape(k * rows, genes)
        tiled = np.tile(np.arange(rows), k)
        base = None if baselines is None else baselines.repeat(k, *([1] * (baselines.dim() - 1)))
        out = inner(model, noisy, base, targets.repeat(k), ctx.subset(tiled))
        return out.reshape(k, rows, genes).mean(0)

    return explain
