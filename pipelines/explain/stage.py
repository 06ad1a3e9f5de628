"""The ``explain`` stage: attributions of every sample of the store, written to
``results/explain/<name>``.

Config example::

    [[stage]]
    kind = "explain"
    [stage.params]
    explainers = ["integrated_gradients", "deeplift"]
    references = "universal:10"     # kind:count (docs/explain.md lists the kinds)
    reference_scope = "cohort"      # one reference set per (seed, class); "repeat" (a pool); "sample"
    # preset = "zhao"               # Zhao et al.'s released code (pipelines/presets.py)
    repeats = 10
    repeat_mode = "auto"            # collapse repeats where exact; or "explicit"
    models = "all"                  # or a list of replicate numbers, e.g. [0, 1]
    mode = "mc_dropout"             # or "expected", "deterministic", "paper"

An interrupted stage resumes: rerunning it with the same parameters computes only the sample
blocks its ledger does not list.
"""

from __future__ import annotations

from typing import Any

from gexplain.pipelines.explain.engine import ExplainSummary, run_explain
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.progress import SILENT, Progress
from gexplain.pipelines.stages import Stage, StageContext
from gexplain.storage.names import validate_name
from gexplain.storage.schema import SAMPLE
from gexplain.storage.store import open_store

__all__ = ["STAGE", "ExplainParams", "explain_store", "run"]


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

        summary = run_explain(store_url, params, name=name, seed=seed, on_block=on_block)
    progress.print(
        f"{summary.group}: {summary.blocks_written} blocks written, {summary.blocks_skipped} already done"
        f" (on {summary.actors} actors, {summary.actor_deaths} actor deaths replaced)"
    )
    return summary


def run(ctx: StageContext, params: ExplainParams) -> dict[str, Any]:
    """Stage entry point: explain the run's store; returns the result path and counters."""
    name = validate_name(
        params.name or ctx.stage_name or "explain", f"explain stage '{ctx.stage_name}': name"
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
