"""``gexplain train STORE``: train classifier replicates (and optionally cross-validate) on Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from cluster.runtime import start_runtime
from pipelines.models.stage import TrainStageParams, run_training
from pipelines.progress import Progress
from storage.errors import InputError

_OPTION = {"max_epochs": "epochs", "early_stopping": "patience"}


def _option(loc: tuple[Any, ...]) -> str:
    field = "_".join(str(p) for p in loc) or "options"
    return "--" + _OPTION.get(field, field).replace("_", "-")


def _params(values: dict[str, Any]) -> TrainStageParams:
    try:
        return TrainStageParams(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{_option(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise InputError(f"bad training options: {problems}; see `gexplain train --help`") from None


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""

    @app.command("train")
    def train(
        store: str = typer.Argument(
            ..., help="Store path or URL; models are saved under <store>/models/<model-set>."
        ),
        label: str = typer.Option(None, "--label", help="Label column (default: the store's label_column)."),
        arch: str = typer.Option("mlp", "--arch", help="mlp or cnn."),
        replicates: int = typer.Option(
            1, "--replicates", help="Models differing by seed, trained in parallel."
        ),
        cv: int = typer.Option(None, "--cv", help="Also run k-fold cross-validation with this k."),
        layer: str = typer.Option("log_expr", "--layer", help="Store layer to train on."),
        model_set: str = typer.Option("default", "--model-set", help="Name of the stored model set."),
        seed: int = typer.Option(0, "--seed", help="Run seed; replicate seeds derive from it."),
        epochs: int = typer.Option(None, "--epochs", help="Maximum epochs (default 100)."),
        patience: int = typer.Option(
            None, "--patience", help="Early-stopping patience in epochs (default 10)."
        ),
        lr: float = typer.Option(None, "--lr", help="Adam learning rate (default 1e-3 MLP, 6e-4 CNN)."),
        weight_decay: float = typer.Option(None, "--weight-decay", help="Adam weight decay (default 1e-3)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Mini-batch size (default 256)."),
        hidden: int = typer.Option(None, "--hidden", help="MLP hidden width (default 128)."),
        dropout: float = typer.Option(None, "--dropout", help="Dropout probability (default 0.25)."),
        batch_norm: bool = typer.Option(
            True, "--batch-norm/--no-batch-norm", help="MLP: BatchNorm after the first layer (paper default)."
        ),
        l1: float = typer.Option(None, "--l1", help="L1 penalty on the first layer's weights (default 0)."),
        grid: int = typer.Option(
            None,
            "--grid",
            help="CNN grid side (default ceil(sqrt(genes)) up to a multiple of 8: 144 for 19,241).",
        ),
        gene_order: str = typer.Option(
            None, "--gene-order", help="CNN gene placement: stored, position, random."
        ),
        jitter: float = typer.Option(
            None, "--jitter", help="Per-replicate jitter of lr, weight decay, dropout."
        ),
        standardize: bool = typer.Option(True, "--standardize/--no-standardize", help="Standardise genes."),
        upsample: bool = typer.Option(True, "--upsample/--no-upsample", help="Up-sample minority classes."),
        device: str = typer.Option(None, "--device", help="auto, cpu or cuda."),
        threads: int = typer.Option(None, "--threads", help="Torch threads (and CPUs) per training task."),
        gpus_per_task: float = typer.Option(
            None, "--gpus-per-task", help="GPU share per task when GPUs exist."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing model set."),
        cluster: str = typer.Option(None, "--cluster", help="Ray address: 'auto' or 'ray://host:10001'."),
        num_cpus: int = typer.Option(None, "--num-cpus", help="CPUs of the embedded Ray (default: all)."),
        no_ray: bool = typer.Option(False, "--no-ray", help="Train one model after another in this process."),
        out: Path = typer.Option(
            None, "--out", help="Folder for the CV tables (confusion matrix, per class)."
        ),
    ) -> None:
        """Train classifier replicates on a store layer and save them with the store."""
        params = _params(
            {
                "label": label,
                "arch": arch,
                "replicates": replicates,
                "cv": cv,
                "layer": layer,
                "model_set": model_set,
                "seed": seed,
                "max_epochs": epochs,
                "early_stopping": patience,
                "lr": lr,
                "weight_decay": weight_decay,
                "batch_size": batch_size,
                "hidden": hidden,
                "dropout": dropout,
                "batch_norm": batch_norm,
                "l1": l1,
                "grid": grid,
                "gene_order": gene_order,
                "jitter": jitter,
                "standardize": standardize,
                "upsample": upsample,
                "device": device,
                "threads": threads,
                "gpus_per_task": gpus_per_task,
                "overwrite": overwrite,
            }
        )
        runtime = None if no_ray else start_runtime(cluster, num_cpus=num_cpus)
        try:
            result = run_training(store, params, seed, runtime=runtime, progress=Progress(), run_dir=out)
        finally:
            if runtime is not None:
                runtime.shutdown()
        typer.echo(json.dumps(result, indent=1, default=str))
