"""The ``train`` stage: train K replicates (and optionally cross-validate) and store them with the store.

The stage never reads the training matrix: it selects the samples and labels, and every training
task reads its own minibatches from the store by chunk
(:class:`gexplain.pipelines.models.data.StoreMatrix`), holding at most ``buffer_mb`` of chunks.
Fixed decision rules (two genes, small simulated stores) are fitted in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gexplain.cluster.runtime import Runtime
from gexplain.pipelines.models.cv import cross_validate
from gexplain.pipelines.models.data import (
    TrainingData,
    open_training_data,
    read_training_data,
)
from gexplain.pipelines.models.params import TrainStageParams
from gexplain.pipelines.models.replicates import replicate_jobs, run_jobs, save_replicates
from gexplain.pipelines.models.rules import RULES, save_rule_set
from gexplain.pipelines.models.train import make_split
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.stages import Stage, StageContext
from gexplain.storage.checkpoints import ModelSetWriter, save_model_set_report
from gexplain.storage.errors import InputError
from gexplain.storage.store import open_store

log = logging.getLogger(__name__)


def _gene_positions(store_url: str, data: TrainingData) -> tuple[np.ndarray, np.ndarray] | None:
    ds = open_store(store_url)
    if "gene_chrom" in ds and "gene_start" in ds:
        ds = ds.sel(gene=data.genes)
        return ds["gene_chrom"].values.astype(str), ds["gene_start"].values.astype(np.float64)
    return None


def _write_cv_tables(
    run_dir: Path | None, model_set: str, classes: np.ndarray, metrics: dict[str, Any]
) -> list[str]:
    if run_dir is None:
        return []
    run_dir.mkdir(parents=True, exist_ok=True)
    cm_path = run_dir / f"cv_confusion_{model_set}.csv"
    pd.DataFrame(metrics["confusion"], index=classes, columns=classes).to_csv(cm_path)
    per_class = pd.DataFrame(
        {"accuracy": pd.Series(metrics["per_class_accuracy"]), "f1": pd.Series(metrics["per_class_f1"])}
    )
    pc_path = run_dir / f"cv_per_class_{model_set}.csv"
    per_class.to_csv(pc_path)
    return [str(cm_path), str(pc_path)]


def run_training(
    store_url: str,
    params: TrainStageParams,
    seed: int,
    *,
    runtime: Runtime | None,
    progress: Progress | None = None,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """Read the training data, cross-validate (optional), train and store the replicates.

    Parameters
    ----------
    store_url
        The store to read (and to store the models in).
    params
        Stage parameters.
    seed
        Run seed (used when ``params.seed`` is None).
    runtime
        Ray runtime; ``None`` trains in this process, one model after another.
    progress
        Progress reporting.
    run_dir
        Folder for CV tables (confusion matrix, per-class metrics), or None.

    Returns
    -------
    dict
        ``model_set``, ``checkpoints``, ``test_accuracy`` per replicate, ``cv`` metrics (when asked).
    """
    seed = params.seed if params.seed is not None else seed
    if params.arch in RULES:  # fixed decision rules are placed, not trained (pipelines/models/rules.py)
        return save_rule_set(
            store_url,
            params.model_set,
            params.arch,
            read_training_data(store_url, params.label, params.layer, unlabelled=params.unlabelled),
            genes=params.rule_genes,
            overwrite=params.overwrite,
        )
    data = open_training_data(
        store_url, params.label, params.layer, buffer_mb=params.buffer_mb, unlabelled=params.unlabelled
    )
    positions = _gene_positions(store_url, data) if params.gene_order == "position" else None
    if params.arch == "cnn" and params.gene_order == "position" and positions is None:
        raise InputError(
            "--gene-order position needs gene_chrom and gene_start in the store; use --gene-order stored or random"
        )
    # an existing set is refused (or replaced, with overwrite) before any training starts
    writer = (
        ModelSetWriter(store_url, params.model_set, overwrite=params.overwrite) if params.replicates else None
    )
    if runtime is not None:
        runtime.ensure_ray()
    hyper = params.train_params()
    out: dict[str, Any] = {
        "model_set": params.model_set,
        "label": data.label,
        "layer": data.layer,
        "samples": int(data.y.size),
        "genes": int(data.genes.size),
        "classes": int(data.classes.size),
    }
    use_ray = runtime is not None
    if params.cv is not None:
        result = cross_validate(
            data,
            hyper,
            params.cv,
            seed,
            use_ray=use_ray,
            gpus_per_task=params.gpus_per_task,
            gene_positions=positions,
            progress=progress,
        )
        out["cv"] = {k: result.metrics[k] for k in ("accuracy", "macro_f1", "per_class_accuracy", "folds")}
        out["cv_tables"] = _write_cv_tables(run_dir, params.model_set, data.classes, result.metrics)
    if params.replicates:
        split = make_split(data.y, hyper, seed)
        jobs = replicate_jobs(split, hyper, seed, params.replicates)
        results = run_jobs(
            data,
            jobs,
            use_ray=use_ray,
            gpus_per_task=params.gpus_per_task,
            gene_positions=positions,
            progress=progress,
        )
        out["checkpoints"] = save_replicates(
            store_url, params.model_set, data, split, results, run_seed=seed, writer=writer
        )
        out["test_accuracy"] = [r.metrics["accuracy"] for r in results]
        out["test_macro_f1"] = [r.metrics["macro_f1"] for r in results]
    if params.cv is not None:
        out["cv_report"] = save_model_set_report(
            store_url, params.model_set, "cv", {"k": params.cv, "seed": seed, **result.metrics}
        )
    return out


def _run(ctx: StageContext, params: TrainStageParams) -> dict[str, Any]:
    runtime = ctx.runtime if params.ray else None
    return run_training(
        ctx.store_url, params, ctx.seed, runtime=runtime, progress=ctx.progress, run_dir=ctx.run_dir
    )


STAGE = Stage(
    kind="train",
    params=TrainStageParams,
    run=_run,
    description="Train classifier replicates (MLP or CNN) on a store layer, in parallel on Ray.",
)
