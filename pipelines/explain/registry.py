"""One registry of explainers with a uniform call.

Every explainer is called as ``fn(model, x, baselines, targets, ctx) -> Tensor`` with

* ``x``: (rows, genes) inputs in the stored layer's units; one row per (sample, repeat[, reference]);
* ``baselines``: (rows, genes) references for ``uses_reference == "each"``, (rows, R, genes) for
  ``"distribution"`` explainers, ``None`` for reference-free ones;
* ``targets``: (rows,) int64 class indices;
* ``ctx``: the :class:`RowContext` of the rows (keys of every random draw);

and returns (rows, genes) attributions. ``ref_reduce="mean"`` marks explainers whose value per
(sample, repeat) is the mean over its references (DeepLIFT-SHAP, GradientSHAP).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from pipelines.explain.modes import DropoutMasks
    from pipelines.explain.spec import ExplainSpec

NOISE_STREAM = 3


@dataclass
class RowContext:
    """Keys of the rows in one call.

    Attributes
    ----------
    samples, repeats, refs
        (rows,) global sample index, repeat index and reference index (0 for reference-free rows).
    run_seed, model_id
        Run seed and model id.
    spec
        The explain specification (explainer options).
    masks
        The dropout-mask hooks (``mc_dropout`` mode) or ``None``.
    """

    samples: np.ndarray
    repeats: np.ndarray
    refs: np.ndarray
    run_seed: int
    model_id: int
    spec: ExplainSpec
    masks: DropoutMasks | None

    def rng(self, row: int, stream: int) -> np.random.Generator:
        """Generator keyed by (run_seed, stream, model_id, sample, repeat, reference) of ``row``."""
        return np.random.default_rng(
            [
                self.run_seed,
                stream,
                self.model_id,
                int(self.samples[row]),
                int(self.repeats[row]),
                int(self.refs[row]),
            ]
        )

    def key_rows(self, index: np.ndarray) -> None:
        """Key the dropout masks to rows ``index`` of this context (before a forward)."""
        if self.masks is not None:
            self.masks.set_rows(self.samples[index], self.repeats[index])

    def subset(self, index: np.ndarray) -> RowContext:
        """Return the context of rows ``index``."""
        return RowContext(
            self.samples[index],
            self.repeats[index],
            self.refs[index],
            self.run_seed,
            self.model_id,
            self.spec,
            self.masks,
        )


ExplainFn = Callable[[nn.Module, torch.Tensor, torch.Tensor | None, torch.Tensor, RowContext], torch.Tensor]


@dataclass(frozen=True)
class Explainer:
    """A registry entry.

    Attributes
    ----------
    name
        Registry name (``attr_<name>`` in results).
    fn
        The uniform call (see module docstring).
    uses_reference
        ``"none"``, ``"each"`` (one value per reference) or ``"distribution"`` (all R references at once).
    ref_reduce
        ``"mean"`` when the value per (sample, repeat) is the mean over references, else ``None``.
    expansion
        Forward rows per input row (memory planning), given the spec.
    arch
        Required architecture (``"cnn"`` for Grad-CAM variants) or ``None``.
    per_row
        The explainer handles one row per call itself (kernel methods, SHAP).
    """

    name: str
    fn: ExplainFn
    uses_reference: Literal["none", "each", "distribution"]
    ref_reduce: Literal["mean"] | None = None
    expansion: Callable[[ExplainSpec], int] = lambda spec: 1
    arch: str | None = None
    per_row: bool = False


def _build() -> dict[str, Explainer]:
    from pipelines.explain import captum_explainers as ce
    from pipelines.explain import gradcampp, shap_explainers
    from pipelines.explain.smoothgrad import smoothgrad

    base = [
        Explainer("saliency", ce.saliency, "none", expansion=lambda s: 2),
        Explainer("input_x_gradient", ce.input_x_gradient, "none", expansion=lambda s: 2),
        Explainer("guided_backprop", ce.guided_backprop, "none", expansion=lambda s: 2),
        Explainer("integrated_gradients", ce.integrated_gradients, "each", expansion=lambda s: 2 * s.n_steps),
        Explainer("deeplift", ce.deeplift, "each", expansion=lambda s: 4),
        Explainer("deeplift_shap", ce.deeplift, "each", ref_reduce="mean", expansion=lambda s: 4),
        Explainer(
            "gradient_shap", ce.gradient_shap, "each", ref_reduce="mean", expansion=lambda s: 2 * s.gs_samples
        ),
        Explainer("guided_gradcam", ce.guided_gradcam, "none", expansion=lambda s: 4, arch="cnn"),
        Explainer(
            "guided_gradcam_pp", gradcampp.guided_gradcam_pp, "none", expansion=lambda s: 4, arch="cnn"
        ),
    ]
    registry = {e.name: e for e in base}
    for e in base:
        if e.arch is None:
            registry[f"smoothgrad_{e.name}"] = Explainer(
                f"smoothgrad_{e.name}",
                smoothgrad(e.fn),
                e.uses_reference,
                ref_reduce=e.ref_reduce,
                expansion=lambda s, inner=e.expansion: s.nt_samples * inner(s),
            )
    registry["shap_gradient"] = Explainer(
        "shap_gradient", shap_explainers.shap_gradient, "distribution", expansion=lambda s: 100, per_row=True
    )
    registry["shap_deep"] = Explainer(
        "shap_deep", shap_explainers.shap_deep, "distribution", expansion=lambda s: 4, per_row=True
    )
    registry["kernel_shap"] = Explainer(
        "kernel_shap", shap_explainers.kernel_shap, "each", expansion=lambda s: 50, per_row=True
    )
    registry["lime"] = Explainer("lime", shap_explainers.lime, "each", expansion=lambda s: 50, per_row=True)
    return registry


EXPLAINERS: dict[str, Explainer] = _build()
