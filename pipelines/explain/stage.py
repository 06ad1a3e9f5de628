"""The ``explain`` stage: attributions of every sample of the store, written to
``results/explain/<name>``.

Config example::

    [[stage]]
    kind = "explain"
    [stage.params]
    explainers = ["integrated_gradients", "deeplift"]
    references = "universal:10"     # kind:count, kinds zero, normal, universal, specific, samples
    repeats = 10
    models = "all"                  # or a list of replicate numbers, e.g. [0, 1]
    mode = "mc_dropout"             # or "deterministic", "paper"

An interrupted stage resumes: rerunning it with the same parameters computes only the sample
blocks its ledger does not list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.explain.engine import EngineOptions, ExplainSummary, run_explain
from pipelines.explain.references import parse_references
from pipelines.explain.spec import ExplainSpec
from pipelines.progress import SILENT, Progress
from pipelines.stages import Stage, StageContext, StageParams
from storage.errors import InputError
from storage.schema import SAMPLE
from storage.store import open_store


class ExplainParams(StageParams):
    """Parameters of the ``explain`` stage (and of ``gexplain explain``)."""

    explainers: list[str] = Field(
        default_factory=lambda: ["integrated_gradients"], description="Explainer registry names."
    )
    references: str = Field("universal:10", description="Reference kind and count per sample, 'kind:count'.")
    repeats: int = Field(10, ge=1, description="Repeats per (sample, model) (dropout samples in mc_dropout).")
    models: Literal["all"] | list[int] = Field("all", description="Replicates to explain: 'all' or numbers.")
    model_set: str = Field("default", description="Model set stored with the store.")
    mode: Literal["mc_dropout", "deterministic", "paper"] = "mc_dropout"
    abs: bool = Field(False, description="Aggregate absolute attributions (as the paper).")
    n_steps: int = Field(50, ge=1, description="Integrated-gradients steps.")
    reference_reduce: Literal["median"] | None = Field(
        None, description="'median': one value per (model, repeat) = median over its references."
    )
    per_model: bool = Field(False, description="Also write per-model means (attr_<explainer>_model).")
    memory_budget_mb: int = Field(512, ge=1, description="Working memory per task, MiB.")
    name: str = Field("", description="Result name (default: the stage name, or 'explain').")
    actors: int = Field(0, ge=0, description="Actors (0: one per GPU, else one per cpus_per_actor CPUs).")
    cpus_per_actor: int = Field(1, ge=1, description="CPU cores (torch threads) per actor.")
    gpus_per_actor: float | None = Field(None, gt=0, description="GPU share per actor when GPUs exist.")
    sample_block: int = Field(256, ge=1, description="Samples per block (unit of writing and resuming).")
    repeat_block: int = Field(0, ge=0, description="Repeats per task (0: all).")
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

    @model_validator(mode="after")
    def _valid_spec(self) -> ExplainParams:
        self.spec()  # unknown explainers etc. are config errors, found before any work starts
        return self

    def spec(self) -> ExplainSpec:
        """Return the :class:`ExplainSpec` these parameters describe."""
        kind, count = parse_references(self.references)
        return ExplainSpec(
            explainers=tuple(self.explainers),
            references=kind,
            n_references=count,
            mode=self.mode,
            n_steps=self.n_steps,
            abs=self.abs,
            reference_reduce=self.reference_reduce,
            per_model=self.per_model,
            memory_budget_mb=self.memory_budget_mb,
        )

    def options(self) -> EngineOptions:
        """Return the engine's distribution options."""
        return EngineOptions(
            actors=self.actors,
            cpus_per_actor=self.cpus_per_actor,
            gpus_per_actor=self.gpus_per_actor,
            sample_block=self.sample_block,
            repeat_block=self.repeat_block,
        )


def explain_store(
    store_url: str, params: ExplainParams, seed: int, *, name: str, progress: Progress = SILENT
) -> ExplainSummary:
    """Run the engine with stage parameters, showing one progress bar over sample blocks.

    Ray must be running; the reference statistics use the current Dask scheduler.

    Parameters
    ----------
    store_url
        The expression store.
    params
        Stage parameters.
    seed
        Run seed.
    name
        Result name (``results/explain/<name>``).
    progress
        Progress reporting.
    """
    n_samples = open_store(store_url).sizes[SAMPLE]
    with progress.task(f"explain {name}: sample blocks", total=-(-n_samples // params.sample_block)) as bar:

        def on_block(block: int, done: int, total: int) -> None:
            bar.advance(done - bar.done)

        summary = run_explain(
            store_url,
            params.spec(),
            repeats=params.repeats,
            name=name,
            model_set=params.model_set,
            models=None if params.models == "all" else list(params.models),
            seed=seed,
            options=params.options(),
            overwrite=params.overwrite,
            on_block=on_block,
        )
    progress.print(
        f"{summary.group}: {summary.blocks_written} blocks written, {summary.blocks_skipped} already done"
        f" ({summary.tasks} tasks on {summary.actors} actors, {summary.actor_deaths} actor deaths replaced)"
    )
    return summary


def run(ctx: StageContext, params: ExplainParams) -> dict[str, Any]:
    """Stage entry point: explain the run's store; returns the result path and counters."""
    name = params.name or ctx.stage_name or "explain"
    if "/" in name or " " in name:
        raise InputError(
            f"explain stage '{ctx.stage_name}': params.name '{name}' must not contain '/' or spaces"
        )
    ctx.runtime.ensure_ray()
    seed = ctx.seed if params.seed is None else params.seed
    summary = explain_store(ctx.store_url, params, seed, name=name, progress=ctx.progress)
    return {
        "path": summary.group,
        "blocks": summary.blocks,
        "blocks_written": summary.blocks_written,
        "blocks_skipped": summary.blocks_skipped,
        "actors": summary.actors,
        "actor_deaths": summary.actor_deaths,
    }


STAGE = Stage(
    kind="explain",
    params=ExplainParams,
    run=run,
    description="Attributions of every sample (explainers x references x repeats x models), per sample block.",
)
