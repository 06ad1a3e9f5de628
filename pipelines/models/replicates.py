"""Train K replicates of a classifier as Ray tasks and store them with the store.

The training matrix goes to every task once through Ray's object store (``ray.put``): for the
``train`` stage it is a :class:`~gexplain.pipelines.models.data.StoreMatrix`, a handle of a few
hundred kB from which each task reads its own minibatches from the store by chunk; an in-memory
array (notebooks) is shared read-only, one copy per node. Each task asks for ``params.threads``
CPUs and, when the cluster has GPUs, a GPU fraction (``gexplain.cluster.resources.gpu_fraction``).
Replicate k's seed is derived from the run seed and k only, so results do not depend on the
number of workers or the order tasks finish in.

A task whose worker, node or result is lost (:func:`gexplain.cluster.pool.is_lost_worker`) is
submitted again, up to :data:`TASK_RETRIES` times; Ray places it on a live node. Training is
deterministic per job, so the retried replicate is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from gexplain.cluster.pool import is_lost_worker
from gexplain.cluster.resources import gpu_fraction
from gexplain.pipelines.models.data import Split, TrainingData
from gexplain.pipelines.models.persist import add_model
from gexplain.pipelines.models.train import TrainParams, TrainResult, jittered, train_model
from gexplain.pipelines.progress import SILENT, Progress
from gexplain.storage.checkpoints import ModelSetWriter
from gexplain.storage.errors import InputError

log = logging.getLogger(__name__)

TASK_RETRIES = 3


def replicate_seeds(seed: int, k: int) -> list[int]:
    """Seeds of replicates 0..k-1, derived from the run seed alone (``numpy.random.SeedSequence``)."""
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(int(seed)).spawn(k)]


@dataclass(frozen=True)
class Job:
    """One training task: a split, a seed and the (jittered) parameters."""

    split: Split
    seed: int
    params: TrainParams


def _run_job(
    x: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    job: Job,
    positions: tuple[np.ndarray, np.ndarray] | None,
) -> TrainResult:
    return train_model(x, y, job.split, classes, job.params, job.seed, gene_positions=positions)


_remote_job = ray.remote(_run_job)


def run_jobs(
    data: TrainingData,
    jobs: Sequence[Job],
    *,
    use_ray: bool = True,
    gpus_per_task: float | None = None,
    gene_positions: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Progress | None = None,
    max_parallel: int | None = None,
) -> list[TrainResult]:
    """Train ``jobs`` on ``data``: as parallel Ray tasks, or one after another in this process.

    Parameters
    ----------
    data
        The training matrix and labels.
    jobs
        What to train; results come back in this order.
    use_ray
        False trains sequentially here (same results: training is deterministic per job).
    gpus_per_task
        GPU share per task when the cluster has GPUs (``None`` = spread the GPUs over the jobs).
    gene_positions
        (chromosome, start) per gene, for the CNN's ``gene_order="position"``.
    progress
        Progress reporting (one step per finished job).
    max_parallel
        At most this many tasks in flight (``None`` = all; Ray still queues them by resources).
    """
    progress = progress or SILENT
    with progress.task("training models", total=len(jobs)) as task:
        if not use_ray:
            out = []
            for job in jobs:
                out.append(_run_job(data.x, data.y, data.classes, job, gene_positions))
                task.advance()
            return out
        if not ray.is_initialized():
            raise RuntimeError("Ray is not running; call runtime.ensure_ray() first")
        x_ref = ray.put(data.x)
        y_ref = ray.put(data.y)
        gpus = gpu_fraction(gpus_per_task, actors=max(len(jobs), 1))
        if gpus == 0 and any(job.params.device == "cuda" for job in jobs):
            raise InputError("--device cuda, but the Ray cluster has no GPU; use --device auto or cpu")
        limit = max_parallel or len(jobs)
        submit: list[tuple[int, Job, dict[str, Any]]] = []
        for i, job in enumerate(jobs):
            params = job.params
            if params.device == "auto":
                params = params.model_copy(update={"device": "cuda" if gpus > 0 else "cpu"})
            options: dict[str, Any] = {
                "num_cpus": params.threads,
                "num_gpus": gpus if params.device != "cpu" else 0,
                "max_retries": 0,  # lost workers are resubmitted below, where they are counted
            }
            submit.append((i, Job(job.split, job.seed, params), options))
        results: list[TrainResult | None] = [None] * len(jobs)
        pending: dict[ray.ObjectRef, tuple[int, Job, dict[str, Any]]] = {}
        lost = [0] * len(jobs)
        queue = list(reversed(submit))
        while queue or pending:
            while queue and len(pending) < limit:
                item = queue.pop()
                i, job, options = item
                ref = _remote_job.options(**options).remote(x_ref, y_ref, data.classes, job, gene_positions)
                pending[ref] = item
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            item = pending.pop(ref)
            try:
                results[item[0]] = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, InputError):  # bad data found by the task (NaN in a chunk)
                    raise exc.cause from None
                raise
            except BaseException as exc:
                if not is_lost_worker(exc) or lost[item[0]] >= TASK_RETRIES:
                    raise
                lost[item[0]] += 1
                log.warning("training task %d lost its worker (%s); submitting it again", item[0], exc)
                queue.append(item)
                continue
            task.advance()
        return [r for r in results if r is not None]


def replicate_jobs(split: Split, params: TrainParams, seed: int, k: int) -> list[Job]:
    """K jobs on one split, differing by seed (and jittered parameters when ``params.jitter > 0``)."""
    return [Job(split, s, jittered(params, s)) for s in replicate_seeds(seed, k)]


def checkpoint_metadata(
    data: TrainingData, split: Split, result: TrainResult, *, store_url: str, run_seed: int
) -> dict[str, Any]:
    """JSON metadata of one trained replicate (genes, classes, transform, metrics, seed, split)."""
    params = result.params
    return {
        "arch": params["arch"],
        "hyperparameters": result.hyperparameters,
        "params": params,
        "genes": data.genes.tolist(),
        "classes": data.classes.tolist(),
        "layer": data.layer,
        "label": data.label,
        "input_transform": {
            "layer": data.layer,
            "standardize": bool(params["standardize"]),
            "note": "the module standardises internally; feed the stored layer in its own units",
        },
        "standardize": bool(params["standardize"]),
        "gene_mean": result.gene_mean,
        "seed": result.seed,
        "run_seed": int(run_seed),
        "metrics": result.metrics,
        "test_samples": data.samples[split.test].tolist(),
        "n_train": int(split.train.size),
        "n_val": int(split.val.size),
        "n_test": int(split.test.size),
        "store": store_url,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def save_replicates(
    store_url: str,
    model_set: str,
    data: TrainingData,
    split: Split,
    results: Sequence[TrainResult],
    *,
    run_seed: int,
    overwrite: bool = False,
    writer: ModelSetWriter | None = None,
) -> list[str]:
    """Store trained replicates as the model set ``<store>/models/<model_set>``, whole or not at all.

    Parameters
    ----------
    writer
        A writer opened before training (so an existing set is refused before the work); by
        default one is opened here.

    Raises
    ------
    InputError
        When the model set exists and ``overwrite`` is False.
    """
    writer = writer or ModelSetWriter(store_url, model_set, overwrite=overwrite)
    try:
        for k, result in enumerate(results):
            meta = checkpoint_metadata(data, split, result, store_url=store_url, run_seed=run_seed)
            add_model(writer, k, result.weights, meta)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
