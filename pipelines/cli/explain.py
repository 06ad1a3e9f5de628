"""``gexplain explain STORE``: attributions of every sample, on a Ray actor pool.

Example::

    gexplain explain cohort.zarr --explainers integrated_gradients,deeplift \\
        --references universal:60 --repeats 40 --models all
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import typer
from pydantic import ValidationError

from cluster.runtime import start_runtime
from pipelines.explain.stage import ExplainParams, explain_store
from pipelines.progress import Progress
from storage.errors import InputError


def parse_models(text: str) -> str | list[int]:
    """Parse ``--models``: ``"all"`` or a comma list of replicate numbers (``"0,2"``)."""
    if text.strip() == "all":
        return "all"
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(
            f"--models '{text}': use 'all' or a comma list of replicate numbers, e.g. --models 0,1,2"
        ) from None


def _params(values: dict[str, Any]) -> ExplainParams:
    try:
        return ExplainParams(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'_'.join(str(p) for p in err['loc']).replace('_', '-')}: {err['msg']}"
            for err in exc.errors()
        )
        raise InputError(f"bad explain options: {problems}; see `gexplain explain --help`") from None


def register(app: typer.Typer) -> None:
    """Add the ``explain`` command to ``app``."""

    @app.command("explain")
    def explain(
        store: str = typer.Argument(..., help="Store path or URL with a trained model set."),
        explainers: str = typer.Option(
            "integrated_gradients", "--explainers", help="Comma list, e.g. integrated_gradients,deeplift."
        ),
        references: str = typer.Option(
            "universal:10",
            "--references",
            help="kind:count; kinds zero, normal, universal, specific, samples.",
        ),
        repeats: int = typer.Option(10, "--repeats", help="Repeats per (sample, model)."),
        models: str = typer.Option("all", "--models", help="'all' or replicate numbers, e.g. 0,1."),
        model_set: str = typer.Option("default", "--model-set", help="Stored model set."),
        mode: str = typer.Option("mc_dropout", "--mode", help="mc_dropout, deterministic or paper."),
        absolute: bool = typer.Option(False, "--abs", help="Aggregate absolute attributions."),
        n_steps: int = typer.Option(50, "--n-steps", help="Integrated-gradients steps."),
        per_model: bool = typer.Option(False, "--per-model", help="Also write per-model means."),
        name: str = typer.Option("explain", "--name", help="Result name: results/explain/<name>."),
        seed: int = typer.Option(0, "--seed", help="Run seed."),
        actors: int = typer.Option(0, "--actors", help="Actors (0: one per GPU, else one per CPU)."),
        cpus_per_actor: int = typer.Option(1, "--cpus-per-actor", help="CPU cores per actor."),
        sample_block: int = typer.Option(256, "--sample-block", help="Samples per block (unit of resume)."),
        repeat_block: int = typer.Option(0, "--repeat-block", help="Repeats per task (0: all)."),
        memory_mb: int = typer.Option(512, "--memory-mb", help="Working memory per task, MiB."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace a result of this name made with other parameters."
        ),
        cluster: str = typer.Option(None, "--cluster", help="Ray address: 'auto' or 'ray://host:10001'."),
        num_cpus: int = typer.Option(None, "--num-cpus", help="CPUs of the embedded Ray (default: all)."),
    ) -> None:
        """Explain every sample of STORE with its model set; rerun the same command to resume."""
        params = _params(
            {
                "explainers": [e.strip() for e in explainers.split(",") if e.strip()],
                "references": references,
                "repeats": repeats,
                "models": parse_models(models),
                "model_set": model_set,
                "mode": mode,
                "abs": absolute,
                "n_steps": n_steps,
                "per_model": per_model,
                "memory_budget_mb": memory_mb,
                "name": name,
                "actors": actors,
                "cpus_per_actor": cpus_per_actor,
                "sample_block": sample_block,
                "repeat_block": repeat_block,
                "overwrite": overwrite,
            }
        )
        runtime = start_runtime(cluster, num_cpus=num_cpus)
        progress = Progress()
        try:
            runtime.ensure_ray()
            with runtime.dask_scheduler():
                summary = explain_store(store, params, seed, name=name, progress=progress)
        finally:
            progress.close()
            runtime.shutdown()
        typer.echo(json.dumps(asdict(summary), indent=1))
