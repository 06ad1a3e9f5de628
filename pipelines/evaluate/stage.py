"""The ``evaluate`` stage: reproducibility, saturation, ground truth, faithfulness and biology tables."""

from __future__ import annotations

from typing import Any, Literal

from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.saturation_stage import SaturationParams, saturation_part
from gexplain.pipelines.evaluate.tables import finish_evaluation, write_table
from gexplain.pipelines.labels import UnlabelledPolicy
from gexplain.pipelines.params import Name, StageParams, cli
from gexplain.pipelines.stages import Stage, StageContext
from pydantic import Field


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
    seed: int = Field(
        0, ge=0, description="Seed of the sample subsets; when unset in a config, the run's seed."
    )
    saturation: SaturationParams = Field(default_factory=SaturationParams, description="Saturation curves.")


def run(ctx: StageContext, params: EvaluateParams) -> dict[str, Any]:
    """Evaluate the store and write tables; return where they are."""
    csv_dir = ctx.run_dir / (params.out_dir or f"evaluate/{params.name}")
    if "seed" not in params.model_fields_set:
        params = params.model_copy(update={"seed": ctx.seed})
    out = evaluate_store(ctx.store_url, params, csv_dir=csv_dir, progress=ctx.progress, finish=False)
    if params.saturation.enabled:
        with ctx.progress.task("evaluate: saturation pools and curves", total=1) as task:
            saturation = saturation_part(ctx.store_url, params, params.saturation)
            task.advance()
        for table, df in saturation.items():
            out.tables[table] = df
            out.groups.append(write_table(ctx.store_url, params.name, table, df, csv_dir))
    finish_evaluation(ctx.store_url, params.name)
    return {"tables": str(csv_dir), "results": sorted(out.groups), "n_tables": len(out.tables)}


STAGE = Stage(
    kind="evaluate",
    params=EvaluateParams,
    run=run,
    description="Reproducibility, saturation, ground-truth, faithfulness and biology tables.",
)
