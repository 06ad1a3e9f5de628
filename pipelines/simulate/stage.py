"""The ``simulate`` stage: writes the run's store with one of the simulators.

Config example::

    [[stage]]
    kind = "simulate"
    [stage.params]
    simulator = "cohort"        # "cohort", "sabbatini" or "lda"
    n_samples = 600
    n_genes = 2000
    n_classes = 4

Options that the chosen simulator does not use are errors. The store is ``run.store``; a rerun
(changed parameters) replaces it. The seed defaults to the run's seed (0 from the CLI).
``gexplain simulate <simulator>`` is generated from :class:`SimulateParams`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from gexplain.pipelines.params import StageParams, cli
from gexplain.pipelines.simulate import cohort, lda, sabbatini
from gexplain.pipelines.simulate.cohort import simulate_cohort
from gexplain.pipelines.simulate.lda import PRESETS, simulate_lda
from gexplain.pipelines.simulate.sabbatini import design_dataset, simulate_sabbatini
from gexplain.pipelines.stages import Stage, StageContext
from gexplain.storage.capacity import check_new_store
from gexplain.storage.store import DEFAULT_CHUNKS
from pydantic import Field, model_validator

# the options each simulator takes: field names equal the simulator's keyword names
USES: dict[str, set[str]] = {
    "cohort": {"n_samples", "n_genes", "n_classes", "n_program_genes", "n_xor_pairs", "n_circle_pairs"},
    "sabbatini": {"dataset", "n_per_group", "layout"},
    "lda": {
        "n_samples",
        "n_genes",
        "n_classes",
        "n_programs",
        "count_model",
        "structure",
        "n_pathways",
        "genes_per_pathway",
        "upweighted_per_class",
        "upweight",
        "reads_per_sample",
        "preset",
    },
}
COMMON = {"simulator", "seed", "chunk_samples", "chunk_genes"}
SIMULATORS: dict[str, Callable[..., str]] = {
    "cohort": simulate_cohort,
    "sabbatini": simulate_sabbatini,
    "lda": simulate_lda,
}


class SimulateParams(StageParams):
    """Parameters of the ``simulate`` stage."""

    simulator: Literal["cohort", "sabbatini", "lda"] = Field("cohort", description="Which simulator.")
    n_samples: int = Field(
        600, ge=1, description="Samples (cohort, lda).", json_schema_extra=cli("--samples")
    )
    n_genes: int = Field(2000, ge=1, description="Genes (cohort, lda).", json_schema_extra=cli("--genes"))
    n_classes: int = Field(
        4, ge=1, description="Tissue classes (cohort, lda).", json_schema_extra=cli("--classes")
    )
    n_program_genes: int = Field(
        40, ge=0, description="Genes up in each class (cohort).", json_schema_extra=cli("--program-genes")
    )
    n_xor_pairs: int = Field(
        4, ge=0, description="XOR gene pairs per class (cohort).", json_schema_extra=cli("--xor-pairs")
    )
    n_circle_pairs: int = Field(
        4,
        ge=0,
        description="Ring/cross gene pairs per class (cohort).",
        json_schema_extra=cli("--circle-pairs"),
    )
    n_programs: int = Field(
        8,
        ge=2,
        description="Topics: one per class plus shared ones (lda).",
        json_schema_extra=cli("--programs"),
    )
    count_model: Literal["multinomial", "nb"] = Field("multinomial", description="Count model (lda).")
    structure: Literal["programs", "pathways"] = Field(
        "programs", description="Topics: class programmes, or pathways as Bontonou et al. (lda)."
    )
    n_pathways: int = Field(1500, ge=1, description="Pathways (lda pathways).")
    genes_per_pathway: int = Field(10, ge=1, description="Genes per pathway (lda pathways).")
    upweighted_per_class: int = Field(37, ge=1, description="Pathways up-weighted per class (lda pathways).")
    upweight: float = Field(
        10.0, gt=0, description="Dirichlet weight of up-weighted pathways; others 1 (lda)."
    )
    reads_per_sample: float | None = Field(
        None, gt=0, description="Median reads per sample; default 1000 x genes (lda)."
    )
    preset: Literal["bontonou"] | None = Field(
        None,
        description="bontonou: 33 classes, 1,500 x 10 genes, 37 up-weighted, 1.5M reads, 9,900 samples (lda).",
    )
    dataset: Literal["A", "B", "C", "D"] = Field("B", description="Sabbatini dataset (sabbatini).")
    n_per_group: int = Field(1000, ge=1, description="Samples per group (sabbatini).")
    layout: Literal["random", "paper"] = Field(
        "random", description="Significant positions: drawn from the seed, or the paper's draws (sabbatini)."
    )
    seed: int | None = Field(
        None, ge=0, description="Seed of every draw (default: the run's seed; 0 from the CLI)."
    )
    chunk_samples: int | None = Field(None, ge=1, description="Stored chunk length along samples.")
    chunk_genes: int | None = Field(None, ge=1, description="Stored chunk length along genes.")

    @model_validator(mode="after")
    def _only_used_options(self) -> SimulateParams:
        unused = sorted(self.model_fields_set - COMMON - USES[self.simulator])
        if unused:
            raise ValueError(
                f"option(s) {', '.join(unused)} do not apply to simulator '{self.simulator}'; "
                f"it takes {', '.join(sorted(USES[self.simulator] | COMMON))}"
            )
        return self


def lda_options(params: SimulateParams) -> dict[str, Any]:
    """Keyword arguments of :func:`simulate_lda`: a preset's sizes, overridden by options set explicitly."""
    keys = ("n_samples", "n_genes", "n_classes", "n_programs", "count_model", "structure", "n_pathways")
    keys += ("genes_per_pathway", "upweighted_per_class", "upweight", "reads_per_sample")
    out: dict[str, Any] = {k: getattr(params, k) for k in keys}
    if params.preset is not None:
        preset = dict(PRESETS[params.preset])
        out.update({k: v for k, v in preset.items() if k not in params.model_fields_set})
        out["structure"] = "pathways"
    if out["structure"] == "pathways" and "n_genes" not in params.model_fields_set:
        out["n_genes"] = int(out["n_pathways"]) * int(out["genes_per_pathway"])
    out["library_mean"] = out.pop("reads_per_sample")
    return out


def run(ctx: StageContext, params: SimulateParams) -> dict[str, Any]:
    """Simulate into ``ctx.store_url`` (replacing it) and return a summary for the manifest."""
    seed = ctx.seed if params.seed is None else params.seed
    chunks = {
        k: v for k, v in (("sample", params.chunk_samples), ("gene", params.chunk_genes)) if v is not None
    }
    common: dict[str, Any] = {
        "seed": seed,
        "chunks": chunks or None,
        "progress": ctx.progress,
        "overwrite": ctx.overwrite,
    }
    simulate = SIMULATORS[params.simulator]
    if params.simulator == "lda":
        options = lda_options(params)
    else:
        options = params.model_dump(include=USES[params.simulator])  # field names = keyword names
    _check_size(ctx.store_url, params, options, seed)
    with ctx.runtime.dask_scheduler():
        url = simulate(ctx.store_url, **options, **common)
    return {"store": url, "simulator": params.simulator, "seed": seed}


LAYERS = {"cohort": cohort.LAYERS, "lda": lda.LAYERS, "sabbatini": sabbatini.LAYERS}


def _check_size(url: str, params: SimulateParams, options: dict[str, Any], seed: int) -> None:
    """Refuse, before any allocation, a cohort that cannot fit in memory or on disk (exit 2)."""
    if params.simulator == "sabbatini":
        n_samples = 2 * params.n_per_group
        n_genes = design_dataset(params.dataset, seed, params.layout).kind.size
        where = "--n-per-group"
    else:
        n_samples, n_genes, where = int(options["n_samples"]), int(options["n_genes"]), "--samples/--genes"
    check_new_store(
        url,
        n_samples=n_samples,
        n_genes=n_genes,
        layers=LAYERS[params.simulator],
        chunk_samples=params.chunk_samples or DEFAULT_CHUNKS["sample"],
        where=where,
    )


STAGE = Stage(
    kind="simulate",
    params=SimulateParams,
    run=run,
    description="Simulate a cohort (cohort, sabbatini or lda) with ground truth into the run's store.",
)
