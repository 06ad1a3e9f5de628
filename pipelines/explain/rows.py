"""The uniform explainer call: row keys (:class:`RowContext`) and registry entries (:class:`Explainer`).

The registry itself is :mod:`gexplain.pipelines.explain.registry`; this module imports no explainer, so the
explainer modules can import it without a cycle.

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

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch
    from gexplain.pipelines.explain.modes import DropoutMasks
    from torch import nn

NOISE_STREAM = 3


@dataclass(frozen=True)
class KernelOptions:
    """What the explainers and backends read of the stage parameters: built once per run from
    :class:`gexplain.pipelines.explain.params.ExplainParams` (``params.kernel_options()``, the one
    source of these values), so the kernels never see the whole parameter model.

    Attributes
    ----------
    n_steps, ig_method
        Integrated-gradients steps and quadrature (Captum's names).
    saliency_abs
        Saliency returns absolute gradients.
    nt_samples, nt_stdev
        SmoothGrad noise draws per row and their standard deviation (input units).
    gs_samples, gs_stdev
        GradientSHAP draws per (row, reference) and input-noise standard deviation.
    shap_nsamples
        Samples per input of SHAP's GradientExplainer.
    kernel_samples
        Coalitions per input for kernel_shap and lime.
    """

    n_steps: int = 50
    ig_method: str = "gausslegendre"
    saliency_abs: bool = True
    nt_samples: int = 10
    nt_stdev: float = 0.2
    gs_samples: int = 5
    gs_stdev: float = 0.0
    shap_nsamples: int = 200
    kernel_samples: int = 200


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
        The kernel options (``n_steps`` and the other explainer settings).
    masks
        The dropout-mask hooks (``mc_dropout`` mode) or ``None``.
    """

    samples: np.ndarray
    repeats: np.ndarray
    refs: np.ndarray
    run_seed: int
    model_id: int
    spec: KernelOptions
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


ExplainFn = Callable[
    ["nn.Module", "torch.Tensor", "torch.Tensor | None", "torch.Tensor", "RowContext"], "torch.Tensor"
]


@cache
def _load(impl: str) -> ExplainFn:
    """The function named ``module:function`` (imported on first use: Captum and SHAP load only
    when an explainer that needs them runs, not on the closed-form MLP path or for the CLI)."""
    module, name = impl.split(":")
    return getattr(importlib.import_module(module), name)


@cache
def _smoothed(impl: str) -> ExplainFn:
    from gexplain.pipelines.explain.smoothgrad import smoothgrad  # noqa: PLC0415 - see _load

    return smoothgrad(_load(impl))


@dataclass(frozen=True)
class Explainer:
    """A registry entry.

    Attributes
    ----------
    name
        Registry name (``attr_<name>`` in results).
    impl
        ``module:function`` of the uniform call (see module docstring); :attr:`fn` loads it.
    uses_reference
        ``"none"``, ``"each"`` (one value per reference) or ``"distribution"`` (all R references at once).
    ref_reduce
        ``"mean"`` when the value per (sample, repeat) is the mean over references, else ``None``.
    expansion
        Forward rows per input row (memory planning), given the kernel options.
    arch
        Required architecture (``"cnn"`` for Grad-CAM variants) or ``None``.
    per_row
        The explainer handles one row per call itself (kernel methods, SHAP).
    linear
        Linear in the upstream gradient (saliency only without ``saliency_abs``): repeats whose
        dropout follows the last non-linearity may be collapsed into one mean-mask pass.
    closed_form
        The one-hidden-layer MLP has a closed form (:mod:`gexplain.pipelines.explain.fastpath`): what
        multiplies its projected gradient, ``"none"`` (saliency), ``"input"`` (input x gradient) or
        ``"delta"`` (``x - reference``); ``None`` = no closed form (Captum runs it).
    smoothed
        SmoothGrad around ``impl`` (noise draws per row, :mod:`gexplain.pipelines.explain.smoothgrad`).
    """

    name: str
    impl: str
    uses_reference: Literal["none", "each", "distribution"]
    ref_reduce: Literal["mean"] | None = None
    expansion: Callable[[KernelOptions], int] = lambda spec: 1
    arch: str | None = None
    per_row: bool = False
    linear: bool = False
    closed_form: Literal["none", "input", "delta"] | None = None
    smoothed: bool = False

    @property
    def fn(self) -> ExplainFn:
        """The uniform call ``fn(model, x, baselines, targets, ctx)``."""
        return _smoothed(self.impl) if self.smoothed else _load(self.impl)
