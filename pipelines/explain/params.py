"""Parameters of the ``explain`` stage: the one declaration of every attribution option.

The engine, the workers and the saturation curves all take this frozen model; the CLI and the
config keys derive from its fields. The kernels (explainers, backends) take the small
:class:`gexplain.pipelines.explain.rows.KernelOptions` built from it by :meth:`ExplainParams.kernel_options`.
Explainer names are checked against the registry, which imports neither this module nor Captum.
"""

from __future__ import annotations

from typing import Any, Literal

from gexplain.pipelines.explain.references import parse_references
from gexplain.pipelines.explain.registry import EXPLAINERS
from gexplain.pipelines.explain.rows import KernelOptions
from gexplain.pipelines.labels import UnlabelledPolicy
from gexplain.pipelines.params import Name, StageParams
from gexplain.pipelines.presets import EXPLAIN_PRESETS
from gexplain.storage.errors import InputError
from pydantic import Field, field_validator, model_validator


class ExplainParams(StageParams):
    """Parameters of the ``explain`` stage (and of ``gexplain explain``).

    See docs/explain.md for the row expansion, the repeat collapse and the reference variants.
    """

    preset: Literal["zhao"] | None = Field(
        None,
        description="Defaults of a published protocol for every option not set explicitly: 'zhao' = "
        "Zhao et al.'s released code (pipelines/presets.py cites file and line of each value).",
    )

    explainers: list[str] = Field(
        default_factory=lambda: ["integrated_gradients"], description="Explainer registry names."
    )
    references: str = Field(
        "universal:10",
        description="Reference kind and count, 'kind:count'; kinds zero, normal, universal, specific, "
        "universal_range, specific_range, samples (docs/explain.md).",
    )
    reference_scope: Literal["cohort", "repeat", "sample"] = Field(
        "cohort",
        description="'cohort': one reference set per (seed, class) shared by every sample and repeat; "
        "'repeat': each repeat draws its R references from a cohort pool of reference_pool per (seed, "
        "class), shared by every sample of the repeat (Zhao et al.'s code: 64 of 128, reshuffled every "
        "run); 'sample': references drawn per (sample, repeat).",
    )
    reference_pool: int = Field(
        0,
        ge=0,
        description="Pool size for reference_scope = 'repeat' (Zhao et al.: 128); 0 = R, every repeat "
        "sees the same R references.",
    )
    repeats: int = Field(10, ge=1, description="Repeats per (sample, model) (dropout masks in mc_dropout).")
    repeat_mode: Literal["auto", "explicit"] = Field(
        "auto",
        description="'auto': average the repeats in one pass with the mean dropout mask where that is "
        "exact (linear explainers, dropout after the last non-linearity, signed mean, cohort "
        "references); 'explicit': one pass per repeat.",
    )
    repeat_std: bool = Field(
        True,
        description="With collapsed repeats (or mode 'expected'), also write the exact spread across "
        "repeats, attr_<explainer>_repeat_std (MLP only; about doubles the cost).",
    )
    models: Literal["all"] | list[int] = Field("all", description="Replicates to explain: 'all' or numbers.")
    model_set: Name = Field("default", description="Model set stored with the store.")
    mode: Literal["mc_dropout", "expected", "deterministic", "paper"] = Field(
        "mc_dropout",
        description="mc_dropout: explicit dropout masks; expected: the exact infinite-repeat limit "
        "(dropout off) with the analytic repeat spread; deterministic: dropout off; paper: train mode.",
    )
    unlabelled: UnlabelledPolicy = Field(
        "exclude", description="Samples without a label: leave them out (logged) or refuse the store."
    )
    abs: bool = Field(False, description="Aggregate absolute attributions (as the paper).")
    n_steps: int = Field(50, ge=1, description="Integrated-gradients steps.")
    ig_method: Literal[
        "gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"
    ] = Field("gausslegendre", description="Integrated-gradients quadrature (Captum's names).")
    saliency_abs: bool = Field(True, description="Saliency returns absolute gradients (Captum's default).")
    nt_samples: int = Field(10, ge=1, description="SmoothGrad noise draws per row.")
    nt_stdev: float = Field(0.2, ge=0, description="SmoothGrad noise standard deviation (input units).")
    gs_samples: int = Field(5, ge=1, description="GradientSHAP draws per (row, reference).")
    gs_stdev: float = Field(
        0.0, ge=0, description="GradientSHAP input-noise standard deviation (input units)."
    )
    shap_nsamples: int = Field(200, ge=1, description="Samples per input of SHAP's GradientExplainer.")
    kernel_samples: int = Field(200, ge=1, description="Coalitions per input for kernel_shap and lime.")
    reference_reduce: Literal["median", "median_of_repeat_mean"] | None = Field(
        None,
        description="'median': one value per (model, repeat) = median over its references (Zhao et al.'s "
        "order, explicit repeats); 'median_of_repeat_mean': one value per model = median over references "
        "of the mean over repeats (collapses exactly).",
    )
    per_model: bool = Field(False, description="Also write per-model means (attr_<explainer>_model).")
    backend: Literal["auto", "captum"] = Field(
        "auto",
        description="'auto': closed-form MLP backend where it applies, else Captum; 'captum': always Captum.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Torch device of the actors ('auto': the actor's GPU when Ray assigned one)."
    )
    allow_tf32: bool = Field(False, description="Allow TF32 matmuls on CUDA (faster, ~1e-3 relative).")
    memory_budget_mb: int = Field(512, ge=1, description="Working memory per task, MiB.")
    name: str = Field("", description="Result name (default: the stage name, or 'explain').")
    actors: int = Field(
        0,
        ge=0,
        description="Actors (0: one per GPU, else one per cpus_per_actor CPUs); at most one per sample block.",
    )
    cpus_per_actor: int = Field(1, ge=1, description="CPU cores (torch threads) per actor.")
    gpus_per_actor: float | None = Field(None, gt=0, description="GPU share per actor when GPUs exist.")
    sample_block: int = Field(256, ge=1, description="Samples per block (unit of writing and resuming).")
    repeat_block: int = Field(
        0,
        ge=0,
        description=(
            "Repeats per part of a block (0: all at once); an actor sums a block's parts in a fixed "
            "order, so a given value gives the same bytes with any number of actors."
        ),
    )
    overwrite: bool = Field(True, description="Replace a result of the same name made with other parameters.")
    seed: int | None = Field(
        None,
        ge=0,
        description="Seed of this run's draws (default: the run's seed); vary it for replicate runs.",
    )

    @field_validator("references")
    @classmethod
    def _known_references(cls, value: str) -> str:
        parse_references(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("preset") in EXPLAIN_PRESETS:
            return {**EXPLAIN_PRESETS[values["preset"]], **values}
        return values

    @model_validator(mode="after")
    def _pool_fits(self) -> ExplainParams:
        if self.reference_pool and self.reference_scope != "repeat":
            raise ValueError(
                f"reference_pool ({self.reference_pool}) applies to reference_scope = 'repeat' only; "
                "set reference_scope = 'repeat' or drop reference_pool"
            )
        if self.reference_pool and self.reference_pool < self.n_references:
            raise ValueError(
                f"reference_pool ({self.reference_pool}) is smaller than the {self.n_references} references "
                f"drawn per repeat ({self.references!r}); raise reference_pool or lower the count"
            )
        return self

    @model_validator(mode="after")
    def _known_explainers(self) -> ExplainParams:
        if not self.explainers:
            raise InputError("explainers: give at least one explainer, e.g. integrated_gradients")
        for name in self.explainers:
            if name not in EXPLAINERS:
                raise InputError(
                    f"explainers: unknown explainer '{name}'; use any of {', '.join(sorted(EXPLAINERS))}"
                )
        return self

    def kernel_options(self) -> KernelOptions:
        """The explainer settings the kernels read (:class:`gexplain.pipelines.explain.rows.KernelOptions`)."""
        return KernelOptions(
            n_steps=self.n_steps,
            ig_method=self.ig_method,
            saliency_abs=self.saliency_abs,
            nt_samples=self.nt_samples,
            nt_stdev=self.nt_stdev,
            gs_samples=self.gs_samples,
            gs_stdev=self.gs_stdev,
            shap_nsamples=self.shap_nsamples,
            kernel_samples=self.kernel_samples,
        )

    @property
    def reference_kind(self) -> str:
        """The reference kind of ``references`` (e.g. ``universal``)."""
        return parse_references(self.references)[0]

    @property
    def n_references(self) -> int:
        """R, the reference count of ``references``."""
        return parse_references(self.references)[1]

    @property
    def reference_set_size(self) -> int:
        """References drawn per cohort set: the pool (scope ``repeat``) or R."""
        return self.reference_pool or self.n_references

    def numeric_record(self) -> dict[str, object]:
        """The fields that decide the numbers (for the fingerprint and the result's attributes)."""
        skip = {"name", "actors", "gpus_per_actor", "overwrite", "models", "model_set", "seed", "preset"}
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in skip}
