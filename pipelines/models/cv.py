"""Stratified k-fold cross-validation: one model per fold (Ray tasks), metrics over the held-out folds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gexplain.pipelines.models.data import Split, TrainingData, stratified_folds
from gexplain.pipelines.models.metrics import classification_metrics
from gexplain.pipelines.models.replicates import Job, replicate_seeds, run_jobs
from gexplain.pipelines.models.train import TrainParams
from gexplain.pipelines.progress import Progress


@dataclass
class CVResult:
    """Out-of-fold predictions and their metrics.

    Attributes
    ----------
    y_true, y_pred
        Class index per sample (sample,), every sample predicted by the model that did not see it.
    fold
        Fold that held each sample out (sample,).
    metrics
        :func:`classification_metrics` over all samples, plus ``folds``: per-fold metrics.
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    fold: np.ndarray
    metrics: dict[str, Any]


def fold_splits(y: np.ndarray, k: int, val_fraction: float, seed: int) -> list[Split]:
    """K splits: fold f is the test part; a stratified validation slice comes from the other folds."""
    folds = stratified_folds(y, k, seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xCF]))
    splits = []
    for test in folds:
        rest = np.setdiff1d(np.arange(y.size), test)
        val_parts = []
        for c in np.unique(y[rest]):
            members = rng.permutation(rest[y[rest] == c])
            n_val = min(int(round(members.size * val_fraction)), members.size - 1)
            val_parts.append(members[:n_val])
        val = np.sort(np.concatenate(val_parts)).astype(np.int64)
        splits.append(Split(train=np.setdiff1d(rest, val), val=val, test=np.sort(test)))
    return splits


def cross_validate(
    data: TrainingData,
    params: TrainParams,
    k: int,
    seed: int,
    *,
    use_ray: bool = True,
    gpus_per_task: float | None = None,
    gene_positions: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Progress | None = None,
) -> CVResult:
    """Train one model per fold and score each on its held-out fold.

    Parameters
    ----------
    data
        Training matrix and labels.
    params
        Hyper-parameters (``test_fraction`` is ignored: the folds are the test parts).
    k
        Number of folds (2 <= k <= smallest class size).
    seed
        Seed of the fold assignment and of each fold's model.
    use_ray, gpus_per_task, gene_positions, progress
        As in :func:`gexplain.pipelines.models.replicates.run_jobs`.
    """
    splits = fold_splits(data.y, k, params.val_fraction, seed)
    seeds = replicate_seeds(seed, k)
    jobs = [Job(split, s, params) for split, s in zip(splits, seeds, strict=True)]
    results = run_jobs(
        data,
        jobs,
        use_ray=use_ray,
        gpus_per_task=gpus_per_task,
        gene_positions=gene_positions,
        progress=progress,
    )
    y_pred = np.empty_like(data.y)
    fold = np.empty_like(data.y)
    for f, (split, result) in enumerate(zip(splits, results, strict=True)):
        y_pred[split.test] = result.test_pred
        fold[split.test] = f
    metrics = classification_metrics(data.y, y_pred, data.classes)
    metrics["folds"] = [
        {key: r.metrics[key] for key in ("n", "accuracy", "macro_f1", "epochs")} for r in results
    ]
    return CVResult(y_true=data.y.copy(), y_pred=y_pred, fold=fold, metrics=metrics)
