"""The explain specification: which explainers, references, repeats mode and batching budget."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.explain.modes import MODES
from pipelines.explain.references import REFERENCE_KINDS
from storage.errors import InputError

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


@dataclass(frozen=True)
class ExplainSpec:
    """What to compute for every (sample, model, repeat).

    Attributes
    ----------
    explainers
        Registry names (see :data:`pipelines.explain.registry.EXPLAINERS`).
    references, n_references
        Reference kind (``zero``, ``normal``, ``universal``, ``specific``, ``samples``) and R, the
        references drawn per sample and repeat.
    mode
        ``mc_dropout`` (default), ``deterministic`` or ``paper`` (see :mod:`pipelines.explain.modes`).
    n_steps, ig_method
        Integrated-gradients steps and quadrature (Captum's names; default Gauss-Legendre as Captum).
    saliency_abs
        Saliency returns absolute gradients (Captum's default).
    nt_samples, nt_stdev
        SmoothGrad noise draws per row and their standard deviation (input units).
    gs_samples, gs_stdev
        GradientSHAP draws per (row, reference) and input-noise standard deviation (input units).
    shap_nsamples
        Samples per input of SHAP's GradientExplainer.
    kernel_samples
        Coalitions per input for kernel_shap and lime.
    abs
        Take absolute attributions before aggregating (as the paper).
    reference_reduce
        ``None``: every reference is one value of the mean/std; ``"median"``: the median over the R
        references of a (model, repeat) is one value.
    per_model
        Also keep per-model means.
    fast_path
        Use the exact MLP fast path where it applies.
    memory_budget_mb
        Working memory for one block (references, activations, outputs), in MiB.
    device
        Torch device.
    """

    explainers: tuple[str, ...] = ("integrated_gradients",)
    references: str = "universal"
    n_references: int = 10
    mode: str = "mc_dropout"
    n_steps: int = 50
    ig_method: str = "gausslegendre"
    saliency_abs: bool = True
    nt_samples: int = 10
    nt_stdev: float = 0.2
    gs_samples: int = 5
    gs_stdev: float = 0.0
    shap_nsamples: int = 200
    kernel_samples: int = 200
    abs: bool = False
    reference_reduce: str | None = None
    per_model: bool = False
    fast_path: bool = True
    memory_budget_mb: int = 512
    device: str = "cpu"

    def __post_init__(self) -> None:
        from pipelines.explain.registry import EXPLAINERS  # registry imports this module

        for name in self.explainers:
            if name not in EXPLAINERS:
                raise InputError(
                    f"--explainers: unknown explainer '{name}'; use any of {', '.join(sorted(EXPLAINERS))}"
                )
        if not self.explainers:
            raise InputError("--explainers: give at least one explainer, e.g. integrated_gradients")
        if self.references not in REFERENCE_KINDS:
            raise InputError(
                f"--references: unknown kind '{self.references}'; use one of {', '.join(REFERENCE_KINDS)}"
            )
        if self.mode not in MODES:
            raise InputError(f"--mode: unknown mode '{self.mode}'; use one of {', '.join(MODES)}")
        if self.ig_method not in IG_METHODS:
            raise InputError(
                f"--ig-method: unknown method '{self.ig_method}'; use one of {', '.join(IG_METHODS)}"
            )
        if self.reference_reduce not in (None, "median"):
            raise InputError("--reference-reduce: use 'median' or leave it unset")
        for name, value in (
            ("n_references", self.n_references),
            ("n_steps", self.n_steps),
            ("nt_samples", self.nt_samples),
            ("gs_samples", self.gs_samples),
            ("shap_nsamples", self.shap_nsamples),
            ("kernel_samples", self.kernel_samples),
            ("memory_budget_mb", self.memory_budget_mb),
        ):
            if int(value) < 1:
                raise InputError(f"explain option {name}={value}: must be a positive integer")
