"""The attribution engine: fan tasks out over a supervised actor pool, reduce, write per block.

Flow of one run (``results/explain/<name>`` in the store):

1. Check the store and the model set (layer, label column, classes) on the driver, from the
   checkpoints' metadata only; the driver never loads or ships weights.
2. Compute the reference statistics once with Dask over the store and broadcast them
   (``ray.put``) with the samples' target classes.
3. Create the result group up front (empty, final shape, chunks aligned to sample blocks), or
   reopen it when an interrupted run with the same parameters left one: its ledger
   (:class:`storage.store.BlockLedger`) lists the finished sample blocks, which are skipped.
4. Run the tasks of the remaining blocks on the pool (:class:`cluster.pool.ActorPool`). Partial
   sums of a block are merged in key order, whatever order they arrive in, so the floats do not
   depend on the number of actors or on scheduling; a finished block is written to its region
   and then marked done in the ledger.
5. Flag the result complete with its attributes.

A killed actor is replaced and its tasks rerun (same key, same draws, same numbers). A killed
driver leaves every block marked in the ledger fully written; the next run with the same
parameters computes only the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import dask.array as da
import numpy as np
import ray
import xarray as xr

from cluster.pool import ActorPool
from cluster.resources import cluster_gpus, gpu_fraction
from pipelines.blocks import sample_blocks
from pipelines.explain.compute import BlockPartial, ExplainSpec, ReferenceStats, compute_reference_stats
from pipelines.explain.tasks import ExplainWorker, TaskKey, block_key, plan_tasks
from storage.checkpoints import list_checkpoints, list_model_sets, read_metadata
from storage.errors import InputError
from storage.schema import GENE, SAMPLE
from storage.store import (
    BlockLedger,
    create_result,
    layer_chunks,
    mark_result_complete,
    open_store,
    read_result,
    result_exists,
    write_result_region,
)

log = logging.getLogger(__name__)

BlockCallback = Callable[[int, int, int], None]
MODEL = "model"


@dataclass(frozen=True)
class EngineOptions:
    """How a run is spread over the cluster (does not change the numbers, except ``repeat_block``).

    Attributes
    ----------
    actors
        Pool size; 0 = one per GPU when the cluster has GPUs, else one per ``cpus_per_actor`` CPUs.
    cpus_per_actor
        CPU cores each actor reserves (its torch thread count).
    gpus_per_actor
        GPU share per actor; ``None`` spreads the GPUs evenly (ignored without GPUs).
    sample_block
        Samples per block: the unit of writing and of resuming.
    repeat_block
        Repeats per task; 0 = all repeats in one task. Changing it changes the order in which
        partial sums are added and so the last bits of the result.
    tasks_per_actor
        Tasks in flight per actor.
    crash_once
        Fault drill: path of a marker file; the first task run while it is absent creates it and
        kills its actor (the run must still finish with unchanged results).
    """

    actors: int = 0
    cpus_per_actor: int = 1
    gpus_per_actor: float | None = None
    sample_block: int = 256
    repeat_block: int = 0
    tasks_per_actor: int = 2
    crash_once: str | None = None


@dataclass
class ExplainSummary:
    """What a run did.

    Attributes
    ----------
    group
        Result group inside the store, e.g. ``"results/explain/quickstart"``.
    blocks
        Sample blocks of the result.
    blocks_skipped
        Blocks found finished by an earlier run and not recomputed.
    blocks_written
        Blocks computed and written by this run.
    tasks
        Tasks completed by this run.
    actors
        Pool size used (0 when nothing had to be computed).
    actor_deaths
        Actors that died and were replaced.
    pool_start_s
        Seconds spent starting the actors (loading libraries and models) before the first task.
    wall_s
        Wall time of the run in seconds.
    """

    group: str
    blocks: int
    blocks_skipped: int
    blocks_written: int
    tasks: int
    actors: int
    actor_deaths: int
    wall_s: float
    pool_start_s: float = 0.0


@dataclass(frozen=True)
class ModelSetInfo:
    """What the driver knows of a model set from checkpoint metadata alone.

    Attributes
    ----------
    model_ids
        Replicate numbers to use, ascending.
    layer
        Store layer the models read.
    label
        Store variable holding the class labels.
    classes
        Class names in logit order.
    checksums
        SHA-256 of each used replicate's weights (part of the result's fingerprint).
    """

    model_ids: tuple[int, ...]
    layer: str
    label: str
    classes: tuple[str, ...]
    checksums: tuple[str, ...]


def model_set_info(store_url: str, model_set: str, models: list[int] | None) -> ModelSetInfo:
    """Read and check the metadata of the replicates to explain.

    Parameters
    ----------
    store_url
        The store the models were saved with.
    model_set
        Model set name.
    models
        Replicate numbers, or ``None`` for all.

    Raises
    ------
    InputError
        When the model set or a requested replicate does not exist, or replicates disagree on
        layer, label or classes.
    """
    available = list_checkpoints(store_url, model_set)
    if not available:
        raise InputError(
            f"no model set '{model_set}' in {store_url} (stored: {', '.join(list_model_sets(store_url)) or 'none'}); "
            "train one with `gexplain train` or pass --model-set NAME"
        )
    chosen = sorted(set(available if models is None else models))
    missing = sorted(set(chosen) - set(available))
    if missing or not chosen:
        raise InputError(
            f"--models: replicates {missing or chosen} are not in model set '{model_set}' "
            f"(available: {', '.join(map(str, available))}); use --models all or a comma list of those"
        )
    metas = [read_metadata(store_url, model_set, r) for r in chosen]
    first = metas[0]
    for meta in metas[1:]:
        for field_name in ("layer", "label", "classes"):
            if meta[field_name] != first[field_name]:
                raise InputError(
                    f"model set '{model_set}': replicate {meta['replicate']} has {field_name}={meta[field_name]!r} "
                    f"but replicate {first['replicate']} has {first[field_name]!r}; explain them in separate runs "
                    "(--models)"
                )
    return ModelSetInfo(
        model_ids=tuple(chosen),
        layer=str(first["layer"]),
        label=str(first["label"]),
        classes=tuple(str(c) for c in first["classes"]),
        checksums=tuple(str(m["sha256"]) for m in metas),
    )


def sample_targets(ds: xr.Dataset, info: ModelSetInfo) -> np.ndarray:
    """Return each sample's class index in the models' logit order, shape (sample,) int64.

    Raises
    ------
    InputError
        When the store lacks the label column or a sample's label is not one of the classes.
    """
    name = info.label if info.label in ds else f"sample_{info.label}"
    if name not in ds:
        raise InputError(
            f"the store has no label column '{info.label}' that the models were trained on; "
            "explain a store with that sample column"
        )
    labels = np.asarray(ds[name].values).astype(str)
    index = {c: i for i, c in enumerate(info.classes)}
    unknown = sorted(set(labels.tolist()) - set(index))
    if unknown:
        first = int(np.nonzero(~np.isin(labels, list(index)))[0][0])
        raise InputError(
            f"column '{name}': label {unknown[0]!r} of sample {ds[SAMPLE].values[first]!r} (and {len(unknown) - 1} "
            f"other labels) is not a class of the models ({', '.join(info.classes)}); explain a store whose "
            "samples belong to the trained classes"
        )
    return np.array([index[v] for v in labels.tolist()], dtype=np.int64)


def _spec_record(spec: ExplainSpec) -> dict[str, Any]:
    """The spec as JSON-compatible values (for attrs and the fingerprint)."""
    record: dict[str, Any] = json.loads(json.dumps(asdict(spec), default=str))
    return record


def fingerprint(
    spec: ExplainSpec,
    info: ModelSetInfo,
    model_set: str,
    seed: int,
    repeats: int,
    repeat_block: int,
    sizes: dict[str, int],
    sample_block: int,
    data_stamp: str = "",
) -> str:
    """Return the hex SHA-256 of everything that decides the result's numbers.

    Parameters
    ----------
    spec, info, model_set, seed, repeats
        What is computed, with which replicates (their weights' checksums) and seed.
    repeat_block
        Repeats per task (sets the order of the float64 sums).
    sizes
        Store sizes ``{"sample": n, "gene": g}``.
    sample_block
        Samples per block (the unit of the ledger).
    data_stamp
        Identity of the data explained: the store's creation time and the layer's write stamp, so a
        rewritten layer of the same shape never resumes from stale blocks.
    """
    payload = {
        "data": data_stamp,
        "spec": _spec_record(spec),
        "model_set": model_set,
        "models": list(info.model_ids),
        "checksums": list(info.checksums),
        "seed": seed,
        "repeats": repeats,
        "repeat_block": repeat_block,
        "sizes": sizes,
        "sample_block": sample_block,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _template(
    ds: xr.Dataset, spec: ExplainSpec, model_ids: tuple[int, ...], sample_block: int, fp: str
) -> xr.Dataset:
    """Empty result: per explainer mean, std (sample, gene) and count (sample); per-model means on
    request. Its ``fingerprint`` attr lets a later run recognise it as its own and resume."""
    n_s, n_g = ds.sizes[SAMPLE], ds.sizes[GENE]
    gene_chunk = min(n_g, layer_chunks(ds)[GENE])
    values: dict[str, Any] = {}
    for name in spec.explainers:
        for suffix in ("", "_std"):
            values[f"attr_{name}{suffix}"] = (
                (SAMPLE, GENE),
                da.zeros((n_s, n_g), dtype=np.float32, chunks=(sample_block, gene_chunk)),
            )
        values[f"attr_{name}_count"] = (SAMPLE, da.zeros(n_s, dtype=np.int32, chunks=sample_block))
        if spec.per_model:
            values[f"attr_{name}_model"] = (
                (MODEL, SAMPLE, GENE),
                da.zeros((len(model_ids), n_s, n_g), dtype=np.float32, chunks=(1, sample_block, gene_chunk)),
            )
    coords: dict[str, Any] = {SAMPLE: ds[SAMPLE].values, GENE: ds[GENE].values}
    if spec.per_model:
        coords[MODEL] = np.asarray(model_ids, dtype=np.int64)
    return xr.Dataset(values, coords=coords, attrs={"fingerprint": fp})


class BlockReducer:
    """Merges the partial sums of each sample block in key order, whatever their arrival order.

    Parameters
    ----------
    tasks
        Every task to be reduced.
    """

    def __init__(self, tasks: list[TaskKey]) -> None:
        self._order: dict[int, list[TaskKey]] = {}
        for key in sorted(tasks):
            self._order.setdefault(key.block, []).append(key)
        self._next: dict[int, int] = dict.fromkeys(self._order, 0)
        self._acc: dict[int, BlockPartial] = {}
        self._pending: dict[TaskKey, BlockPartial] = {}

    def add(self, key: TaskKey, partial: BlockPartial) -> BlockPartial | None:
        """Take one task's partial; return the block's merged partial once all its tasks are in."""
        # a private copy: arrays fetched from Ray's object store are read-only
        self._pending[key] = BlockPartial.combine([partial])
        block = key.block
        order = self._order[block]
        while self._next[block] < len(order) and order[self._next[block]] in self._pending:
            part = self._pending.pop(order[self._next[block]])
            acc = self._acc.get(block)
            self._acc[block] = part if acc is None else acc.merge(part)
            self._next[block] += 1
        if self._next[block] == len(order):
            return self._acc.pop(block)
        return None


def _pool_size(options: EngineOptions, n_tasks: int) -> tuple[int, float]:
    """Return (actors, GPU share per actor) for the running cluster."""
    gpus = cluster_gpus()
    actors = options.actors
    if actors <= 0:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        actors = int(gpus) if gpus >= 1 else int(cpus // options.cpus_per_actor)
    actors = max(1, min(actors, n_tasks))
    return actors, gpu_fraction(options.gpus_per_actor, actors=actors)


def _block_arrays(merged: BlockPartial, per_model: bool) -> dict[str, np.ndarray]:
    """Arrays of one finished block, by result variable name."""
    arrays: dict[str, np.ndarray] = {}
    for explainer, (mean, std, count) in merged.finalize().items():
        arrays[f"attr_{explainer}"] = mean
        arrays[f"attr_{explainer}_std"] = std
        arrays[f"attr_{explainer}_count"] = count
    if per_model:
        for explainer, by_model in merged.model_means().items():
            arrays[f"attr_{explainer}_model"] = np.stack([by_model[m] for m in sorted(by_model)])
    return arrays


@dataclass
class _Job:
    """Everything one run needs besides the pool."""

    store_url: str
    group: str
    spec: ExplainSpec
    seed: int
    model_set: str
    info: ModelSetInfo
    options: EngineOptions
    blocks: list[slice]
    ledger: BlockLedger


def _prepare_result(job: _Job, ds: xr.Dataset, fp: str, overwrite: bool) -> tuple[set[str], bool]:
    """Create or reopen the result group; return (finished block keys, result already complete)."""
    if result_exists(job.store_url, job.group):
        old = read_result(job.store_url, job.group, allow_incomplete=True)
        if old.attrs.get("fingerprint") == fp:
            return job.ledger.done_keys(), bool(old.attrs.get("gexplain_complete", False))
        if not overwrite:
            raise InputError(
                f"result 'results/{job.group}' in {job.store_url} exists with other parameters; choose another "
                "--name or pass --overwrite to replace it"
            )
    job.ledger.clear()
    create_result(
        job.store_url,
        job.group,
        _template(ds, job.spec, job.info.model_ids, job.options.sample_block, fp),
    )
    return set(), False


def run_explain(
    store_url: str,
    spec: ExplainSpec,
    *,
    repeats: int,
    name: str,
    model_set: str = "default",
    models: list[int] | None = None,
    seed: int = 0,
    options: EngineOptions | None = None,
    overwrite: bool = False,
    on_block: BlockCallback | None = None,
) -> ExplainSummary:
    """Explain every sample of a store with a model set and write ``results/explain/<name>``.

    Ray must be running (``Runtime.ensure_ray``). The reference statistics are computed with
    Dask on the scheduler current at the call.

    Parameters
    ----------
    store_url
        The expression store.
    spec
        Explainers, references, mode and options (:class:`pipelines.explain.spec.ExplainSpec`).
    repeats
        Repeats per (sample, model): dropout samples in ``mc_dropout`` mode, each with its own
        references.
    name
        Result name: ``results/explain/<name>``.
    model_set
        Model set to explain.
    models
        Replicate numbers, or ``None`` for all.
    seed
        Run seed; every random draw depends only on (seed, model, sample, repeat).
    options
        Distribution options (:class:`EngineOptions`).
    overwrite
        Replace an existing result made with other parameters.
    on_block
        Called as ``on_block(block, blocks_done, blocks_total)`` after each block is written and
        marked done (progress; an exception raised here stops the run, which stays resumable).

    Returns
    -------
    ExplainSummary

    Raises
    ------
    InputError
        Bad options, a missing model set, layer or label column, or an existing result with
        other parameters (without ``overwrite``).
    """
    options = options or EngineOptions()
    checks = (
        ("--repeats", repeats),
        ("--sample-block", options.sample_block),
        ("--cpus-per-actor", options.cpus_per_actor),
    )
    for option, value in checks:
        if int(value) < 1:
            raise InputError(f"{option} must be a positive integer (got {value})")
    if not name or any(c in name for c in "/\\ "):
        raise InputError(f"--name '{name}': use a non-empty name without '/', '\\' or spaces")
    start = time.perf_counter()
    ds = open_store(store_url)
    info = model_set_info(store_url, model_set, models)
    if info.layer not in ds:
        layers = [str(v) for v in ds.data_vars if ds[v].dims == (SAMPLE, GENE)]
        raise InputError(
            f"the models read layer '{info.layer}' which {store_url} lacks (layers: {', '.join(layers)}); "
            "explain the store the models were trained on"
        )
    targets = sample_targets(ds, info)
    repeat_block = min(options.repeat_block, repeats) if options.repeat_block > 0 else repeats
    group = f"explain/{name}"
    sizes = {SAMPLE: int(ds.sizes[SAMPLE]), GENE: int(ds.sizes[GENE])}
    stamp = f"{ds.attrs.get('created', '')}|{ds[info.layer].attrs.get('gexplain_written', '')}"
    fp = fingerprint(spec, info, model_set, seed, repeats, repeat_block, sizes, options.sample_block, stamp)
    job = _Job(
        store_url=store_url,
        group=group,
        spec=spec,
        seed=seed,
        model_set=model_set,
        info=info,
        options=options,
        blocks=sample_blocks(sizes[SAMPLE], options.sample_block),
        ledger=BlockLedger(store_url, group),
    )
    done, complete = _prepare_result(job, ds, fp, overwrite)
    todo = [] if complete else [b for b in range(len(job.blocks)) if block_key(b) not in done]
    summary = ExplainSummary(
        group=f"results/{group}",
        blocks=len(job.blocks),
        blocks_skipped=len(job.blocks) - len(todo),
        blocks_written=0,
        tasks=0,
        actors=0,
        actor_deaths=0,
        wall_s=0.0,
    )
    if todo:
        ref_stats = compute_reference_stats(ds[info.layer].data, targets)
        tasks = plan_tasks(job.blocks, todo, list(info.model_ids), repeats, repeat_block, spec.explainers)
        _run_tasks(job, tasks, targets, ref_stats, summary, on_block)
    mark_result_complete(
        store_url,
        group,
        explainers=list(spec.explainers),
        references=f"{spec.references}:{spec.n_references}",
        repeats=repeats,
        models=list(info.model_ids),
        model_set=model_set,
        mode=spec.mode,
        seed=seed,
        abs=spec.abs,
        spec=_spec_record(spec),
        sample_block=options.sample_block,
        repeat_block=repeat_block,
        fingerprint=fp,
    )
    summary.wall_s = round(time.perf_counter() - start, 3)
    return summary


def _run_tasks(
    job: _Job,
    tasks: list[TaskKey],
    targets: np.ndarray,
    ref_stats: ReferenceStats,
    summary: ExplainSummary,
    on_block: BlockCallback | None,
) -> None:
    """Run ``tasks`` on a pool, write each finished block and mark it in the ledger."""
    actors, gpus = _pool_size(job.options, len(tasks))
    summary.actors = actors
    shared = (ray.put(targets), ray.put(ref_stats), ray.put(job.spec))
    reducer = BlockReducer(tasks)
    worker_args = (
        job.store_url,
        job.model_set,
        list(job.info.model_ids),
        job.info.layer,
        job.options.cpus_per_actor,
        job.options.crash_once,
    )
    started = time.perf_counter()
    with ActorPool(
        ExplainWorker,
        size=actors,
        init_args=worker_args,
        num_cpus=job.options.cpus_per_actor,
        num_gpus=gpus,
        tasks_per_actor=job.options.tasks_per_actor,
    ) as pool:
        summary.pool_start_s = round(time.perf_counter() - started, 3)
        for key, partial in pool.imap_unordered((key, (key, *shared, job.seed)) for key in tasks):
            summary.tasks += 1
            merged = reducer.add(key, partial)
            if merged is None:
                continue
            rows = job.blocks[key.block]
            write_result_region(
                job.store_url, job.group, {SAMPLE: rows}, _block_arrays(merged, job.spec.per_model)
            )
            job.ledger.mark_done(block_key(key.block), {"samples": [rows.start, rows.stop]})
            summary.blocks_written += 1
            summary.actor_deaths = pool.stats.actor_deaths
            if on_block is not None:
                on_block(key.block, summary.blocks_skipped + summary.blocks_written, summary.blocks)
        summary.actor_deaths = pool.stats.actor_deaths
