"""Parameters of the ``evaluate`` stage and of its saturation curves, apart from the evaluation code
so that reading them (the CLI's help, the notebook API's signatures, a config check) imports neither
torch nor Ray."""

from __future__ import annotations

from typing import Literal

from gexplain.pipelines.labels import UnlabelledPolicy
from gexplain.pipelines.params import Name, StageParams, cli
from pydantic import Field

Axis = Literal["repeats", "references", "models"]


class SaturationParams(StageParams):
    """Parameters of the saturation curves (``[stage.params.saturation]``)."""

    enabled: bool = Field(False, description="Compute saturation curves (needs a model set).")
    explainers: list[str] = Field(default_factory=lambda: ["integrated_gradients"], description="Explainers.")
    axes: list[Axis] = Field(
        default_factory=lambda: ["repeats", "references", "models"], description="Pools."
    )
    pool: int = Field(16, ge=2, description="Items per pool (curves go up to pool / 2).")
    samples: int = Field(16, ge=1, description="Samples of the subset the pools are computed on.")
    references: str = Field("universal", description="Reference kind.")
    n_references: int = Field(
        1, ge=1, description="References per repeat in the 'repeats' and 'models' pools."
    )
    n_steps: int = Field(20, ge=1, description="Integrated-gradients steps.")
    draws: int = Field(5, ge=1, description="Permutations of the pool per n.")
    max_replicates: int = Field(
        8, ge=2, description="Disjoint replicates per permutation (all pairs compared)."
    )
    tol: float = Field(0.01, gt=0, description="Gain per doubling below which a curve is saturated.")
    models: int = Field(
        5,
        ge=2,
        description="Models whose replicates are compared on the repeats/references axes (Zhao et al.: 5).",
    )


class EvaluateParams(StageParams):
    """Parameters of the ``evaluate`` stage (and of ``gexplain evaluate``); the evaluation functions
    of :mod:`gexplain.pipelines.evaluate.run` take them as they are."""

    name: Name = Field(
        "default", description="Evaluation name: results/evaluate/<name>, CSVs in <run>/evaluate/<name>."
    )
    out_dir: str = Field(
        "", description="Folder for the CSV tables, relative to the run folder ('' = evaluate/<name>)."
    )
    label: str = Field("", description="Label column ('' = the store's label_column).")
    unlabelled: UnlabelledPolicy = Field(
        "exclude", description="Samples without a label: left out of every table, or an error."
    )
    explain_runs: list[str] = Field(
        default_factory=list,
        description="Attribution runs to evaluate (all when empty).",
        json_schema_extra=cli("--runs"),
    )
    de_methods: list[str] = Field(default_factory=list, description="DE methods to compare (all when empty).")
    pairs: list[tuple[str, str]] = Field(
        default_factory=list,
        description="Pairs of explain runs compared for reproducibility (all pairs when empty).",
    )
    k: int = Field(100, ge=1, description="Top-k size of overlaps, precision/recall and top genes.")
    alpha: float = Field(0.05, gt=0, lt=1, description="DE significance level on padj.")
    model_set: Name = Field("default", description="Model set used for faithfulness and saturation.")
    faithfulness_samples: int = Field(64, ge=1, description="Samples used for PGI/PGU.")
    faithfulness_ks: list[int] = Field(
        default_factory=list, description="Grid of k for PGI/PGU (default 1,2,5,10,...)."
    )
    faithfulness: list[Literal["openxai", "replace"]] = Field(
        default_factory=lambda: ["openxai"],
        description="PGI/PGU variants: openxai (Gaussian noise, sigma 0.1 sd) and/or replace (by reference).",
    )
    faithfulness_sigma: float = Field(0.1, gt=0, description="openxai noise sd, standardised units.")
    faithfulness_perturbations: int = Field(100, ge=1, description="openxai perturbations per sample.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Torch device of the faithfulness model passes ('auto': CUDA when visible)."
    )
    n_random: int = Field(5, ge=0, description="Random gene sets per k (the PGI/PGU floors).")
    reference: Literal["mean", "zero"] = Field("mean", description="Replacement value of removed genes.")
    min_samples: int = Field(
        2, ge=1, description="Samples whose top-k must contain a gene for it to be shared."
    )
    min_frac: float = Field(
        0.5, gt=0, le=1, description="Hidden-to-DE: fraction of class samples with the gene in top-k."
    )
    min_z: float = Field(3.0, ge=0, description="Hidden-to-DE: class-mean |attr| in standard errors.")
    max_class_samples: int = Field(500, ge=1, description="Samples per class read for hidden-to-DE.")
    block: int = Field(1024, ge=1, description="Samples per block when streaming attributions.")
    workers: int = Field(
        0,
        ge=0,
        description="Evaluation tasks in flight at once (0 = the scheduler's workers: the runtime's cores "
        "locally, a Dask cluster's worker threads, a Ray cluster's CPUs).",
    )
    seed: int = Field(
        0, ge=0, description="Seed of the sample subsets; when unset in a config, the run's seed."
    )
    saturation: SaturationParams = Field(default_factory=SaturationParams, description="Saturation curves.")
