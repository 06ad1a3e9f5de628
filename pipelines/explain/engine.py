"""The attribution engine: schedule sample blocks on a supervised actor pool; the actors write them.

Flow of one run (``results/explain/<name>`` in the store):

1. Check the store and the model set (layer, label column, classes) on the driver, from the
   checkpoints' metadata only; the driver never loads or ships weights.
2. Compute the reference statistics once with Dask over the store and broadcast them
   (``ray.put``) with the samples' target classes.
3. Create the result group up front (empty, final shape, chunks aligned to sample blocks), or
   reopen it when an interrupted run with the same parameters left one: its ledger
   (:class:`gexplain.storage.store.BlockLedger`) lists the finished sample blocks, which are skipped.
4. Run one task per remaining block on the pool (:class:`gexplain.cluster.pool.ActorPool`). The
   actor merges the block's parts (models x repeat ranges) in key order, so the floats do not
   depend on the number of actors or on scheduling, writes the block into its region of the
   result (whole chunks) and then its ledger marker, under the driver's leases
   (:func:`gexplain.storage.lease.grant`: it writes nothing once the driver lost them), and returns
   a :class:`~gexplain.pipelines.explain.blockio.BlockDone`. The driver never holds attribution
   data: it checks that each reported block's marker is visible to it and counts the block.
5. Flag the result complete with its attributes.

A killed actor is replaced and its task rerun (same key, same draws, same bytes). A killed
driver leaves every block marked in the ledger fully written; the next run with the same
parameters computes only the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import ray
import xarray as xr
from gexplain.cluster.pool import ActorPool
from gexplain.cluster.resources import cluster_gpus, gpu_fraction
from gexplain.pipelines.blocks import sample_blocks
from gexplain.pipelines.explain.blockio import BlockDone, BlockOutput, block_key
from gexplain.pipelines.explain.collapse import collapses
from gexplain.pipelines.explain.compute import check_architectures
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.explain.references import (
    ReferenceSets,
    ReferenceStats,
    compute_reference_stats,
    draw_reference_sets,
)
from gexplain.pipelines.explain.registry import EXPLAINERS
from gexplain.pipelines.explain.tasks import BlockTask, ExplainWorker, plan_blocks
from gexplain.pipelines.labels import labelled_samples
from gexplain.storage import faults
from gexplain.storage.checkpoints import list_checkpoints, list_model_sets, read_metadata
from gexplain.storage.errors import InputError
from gexplain.storage.lease import grant
from gexplain.storage.schema import GENE, SAMPLE
from gexplain.storage.store import (
    BlockLedger,
    create_result,
    hold_result,
    layer_chunks,
    mark_result_complete,
    open_store,
    read_result,
    result_exists,
    result_scope,
)

log = logging.getLogger(__name__)

BlockCallback = Callable[[int, int, int], None]
MODEL = "model"


TASKS_PER_ACTOR = 2  # block tasks in flight per actor


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
        Blocks computed and written (by the actors) in this run.
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
    arch
        Architecture of the replicates (``mlp``, ``cnn``).
    """

    model_ids: tuple[int, ...]
    layer: str
    label: str
    classes: tuple[str, ...]
    checksums: tuple[str, ...]
    arch: str = "mlp"


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
        for field_name in ("layer", "label", "classes", "arch"):
            if meta[field_name] != first[field_name]:
                raise InputError(
                    f"model set '{model_set}': replicate {meta['replicate']} has {field_name}={meta.get(field_name)!r} "
                    f"but replicate {first['replicate']} has {first.get(field_name)!r}; explain them in separate runs "
                    "(--models)"
                )
    return ModelSetInfo(
        model_ids=tuple(chosen),
        layer=str(first["layer"]),
        label=str(first["label"]),
        classes=tuple(str(c) for c in first["classes"]),
        checksums=tuple(str(m["sha256"]) for m in metas),
        arch=str(first.get("arch", "mlp")),
    )


def sample_targets(ds: xr.Dataset, info: ModelSetInfo, unlabelled: str = "exclude") -> np.ndarray:
    """Return each sample's class index in the models' logit order, shape (sample,) int64.

    Unlabelled samples get -1 under the ``exclude`` policy (:func:`gexplain.pipelines.labels.labelled_samples`
    logs how many); they are left out of every computation and get count 0 and a NaN mean.

    Raises
    ------
    InputError
        When the store lacks the label column, a label is not one of the classes, or a sample is
        unlabelled under the ``error`` policy.
    """
    name = info.label if info.label in ds else f"sample_{info.label}"
    if name not in ds:
        raise InputError(
            f"the store has no label column '{info.label}' that the models were trained on; "
            "explain a store with that sample column"
        )
    raw = np.asarray(ds[name].values)
    keep = labelled_samples(raw, name, unlabelled)  # type: ignore[arg-type]
    labels = raw.astype(str)
    index = {c: i for i, c in enumerate(info.classes)}
    unknown = sorted(set(labels[keep].tolist()) - set(index))
    if unknown:
        first = int(np.nonzero(keep & ~np.isin(labels, list(index)))[0][0])
        raise InputError(
            f"column '{name}': label {unknown[0]!r} of sample {ds[SAMPLE].values[first]!r} (and {len(unknown) - 1} "
            f"other labels) is not a class of the models ({', '.join(info.classes)}); explain a store whose "
            "samples belong to the trained classes"
        )
    return np.array(
        [index[v] if k else -1 for v, k in zip(labels.tolist(), keep, strict=True)], dtype=np.int64
    )


def fingerprint(
    params: ExplainParams,
    info: ModelSetInfo,
    seed: int,
    repeat_block: int,
    sizes: dict[str, int],
    device: str,
    data_stamp: str = "",
) -> str:
    """Return the hex SHA-256 of everything that decides the result's numbers.

    Parameters
    ----------
    params
        What is computed (:meth:`ExplainParams.numeric_record`: explainers, references, repeats,
        mode, blocks, thread count per actor, TF32, ...).
    info, seed
        Which replicates (their weights' checksums) and seed.
    repeat_block
        Repeats per task (sets the order of the float64 sums).
    sizes
        Store sizes ``{"sample": n, "gene": g}``.
    device
        The torch device type the actors compute on (``cpu`` or ``cuda``): a resumed run never
        mixes blocks computed on different devices or thread counts.
    data_stamp
        Identity of the data explained: the store's creation time and the layer's write stamp, so a
        rewritten layer of the same shape never resumes from stale blocks.
    """
    payload = {
        "data": data_stamp,
        "params": params.numeric_record(),
        "model_set": params.model_set,
        "models": list(info.model_ids),
        "checksums": list(info.checksums),
        "seed": seed,
        "repeat_block": repeat_block,
        "sizes": sizes,
        "device": device,
        "threads": params.cpus_per_actor,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _template(
    ds: xr.Dataset, params: ExplainParams, info: ModelSetInfo, collapsed: dict[str, bool], fp: str
) -> xr.Dataset:
    """Empty result: per explainer mean and count, and the std over all values (explicit
    explainers) or the exact repeat std (collapsed ones, with ``repeat_std``); per-model means on
    request. Its ``fingerprint`` attr lets a later run recognise it as its own and resume."""
    n_s, n_g = ds.sizes[SAMPLE], ds.sizes[GENE]
    block = params.sample_block
    gene_chunk = min(n_g, layer_chunks(ds)[GENE])
    values: dict[str, Any] = {}

    def plane() -> tuple[tuple[str, str], da.Array]:
        return (SAMPLE, GENE), da.zeros((n_s, n_g), dtype=np.float32, chunks=(block, gene_chunk))

    for name in params.explainers:
        values[f"attr_{name}"] = plane()
        if not collapsed[name]:
            values[f"attr_{name}_std"] = plane()
        elif _writes_repeat_std(params, info) and EXPLAINERS[name].closed_form is not None:
            values[f"attr_{name}_repeat_std"] = plane()
        values[f"attr_{name}_count"] = (SAMPLE, da.zeros(n_s, dtype=np.int32, chunks=block))
        if params.per_model:
            values[f"attr_{name}_model"] = (
                (MODEL, SAMPLE, GENE),
                da.zeros((len(info.model_ids), n_s, n_g), dtype=np.float32, chunks=(1, block, gene_chunk)),
            )
    coords: dict[str, Any] = {SAMPLE: ds[SAMPLE].values, GENE: ds[GENE].values}
    if params.per_model:
        coords[MODEL] = np.asarray(info.model_ids, dtype=np.int64)
    return xr.Dataset(values, coords=coords, attrs={"fingerprint": fp})


def _writes_repeat_std(params: ExplainParams, info: ModelSetInfo) -> bool:
    """Collapsed explainers of the MLP backend write ``attr_<e>_repeat_std``."""
    return (
        params.repeat_std
        and params.reference_reduce is None
        and info.arch == "mlp"
        and params.backend == "auto"
        and (params.mode == "expected" or (params.mode == "mc_dropout" and params.repeats > 1))
    )


def collapse_plan(params: ExplainParams, info: ModelSetInfo) -> dict[str, bool]:
    """Explainer -> runs collapsed, decided on the driver from the declared architecture."""
    return {name: collapses(EXPLAINERS[name], params, info.arch) for name in params.explainers}


def _pool_size(params: ExplainParams, n_tasks: int) -> tuple[int, float]:
    """Return (actors, GPU share per actor) for the running cluster."""
    gpus = cluster_gpus() if params.device != "cpu" else 0
    actors = params.actors
    if actors <= 0:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        actors = int(gpus) if gpus >= 1 else int(cpus // params.cpus_per_actor)
    actors = max(1, min(actors, n_tasks))
    return actors, (gpu_fraction(params.gpus_per_actor, actors=actors) if gpus else 0.0)


def resolve_device(params: ExplainParams) -> str:
    """The device type the actors will use: ``cuda`` when requested or (``auto``) when the cluster
    has GPUs, else ``cpu``.

    Raises
    ------
    InputError
        ``device = "cuda"`` on a cluster without GPUs.
    """
    gpus = cluster_gpus()
    if params.device == "cuda" and gpus < 1:
        raise InputError('device = "cuda": the cluster has no GPU; use device = "cpu" or "auto"')
    if params.device == "cpu":
        return "cpu"
    return "cuda" if gpus >= 1 else "cpu"


@dataclass
class _Job:
    """Everything one run needs besides the pool."""

    store_url: str
    group: str
    params: ExplainParams
    seed: int
    info: ModelSetInfo
    blocks: list[slice]
    ledger: BlockLedger
    device: str
    collapsed: dict[str, bool]
    crash_once: str | None = None


def _prepare_result(job: _Job, ds: xr.Dataset, fp: str) -> tuple[set[str], bool]:
    """Create or reopen the result group; return (finished block keys, result already complete).

    Either way this process then holds the result's lease, which it grants to the actors that
    write the blocks (a resumed run writes nothing itself before it grants).
    """
    hold_result(job.store_url, job.group)
    if result_exists(job.store_url, job.group):
        old = read_result(job.store_url, job.group, allow_incomplete=True)
        if old.attrs.get("fingerprint") == fp:
            return job.ledger.done_keys(), bool(old.attrs.get("gexplain_complete", False))
        if not job.params.overwrite:
            raise InputError(
                f"result 'results/{job.group}' in {job.store_url} exists with other parameters; choose another "
                "name or set overwrite = true to replace it"
            )
    job.ledger.clear()
    create_result(job.store_url, job.group, _template(ds, job.params, job.info, job.collapsed, fp))
    return set(), False


def run_explain(
    store_url: str,
    params: ExplainParams,
    *,
    name: str,
    seed: int = 0,
    crash_once: str | None = None,
    on_block: BlockCallback | None = None,
) -> ExplainSummary:
    """Explain every sample of a store with a model set and write ``results/explain/<name>``.

    Ray must be running (``Runtime.ensure_ray``). The reference statistics are computed with
    Dask on the scheduler current at the call.

    Parameters
    ----------
    store_url
        The expression store.
    params
        The stage parameters (:class:`gexplain.pipelines.explain.params.ExplainParams`): explainers,
        references, repeats, mode, model set and replicates, distribution and blocks.
    name
        Result name: ``results/explain/<name>``.
    seed
        Run seed; every random draw depends only on (seed, model, sample, repeat, reference).
    crash_once
        Fault drill: path of a marker file; the first task run while it is absent creates it and
        kills its actor (the run must still finish with unchanged results).
    on_block
        Called as ``on_block(block, blocks_done, blocks_total)`` after each block is written and
        marked done (progress; an exception raised here stops the run, which stays resumable).

    Returns
    -------
    ExplainSummary

    Raises
    ------
    InputError
        A missing model set, layer or label column, an explainer the architecture lacks, or an
        existing result with other parameters (without ``overwrite``); all before any work starts.
    """
    if not name or any(c in name for c in "/\\ "):
        raise InputError(f"name '{name}': use a non-empty name without '/', '\\' or spaces")
    start = time.perf_counter()
    ds = open_store(store_url)
    info = model_set_info(
        store_url, params.model_set, None if params.models == "all" else list(params.models)
    )
    check_architectures(params.explainers, info.arch, info.model_ids[0])
    if info.layer not in ds:
        layers = [str(v) for v in ds.data_vars if ds[v].dims == (SAMPLE, GENE)]
        raise InputError(
            f"the models read layer '{info.layer}' which {store_url} lacks (layers: {', '.join(layers)}); "
            "explain the store the models were trained on"
        )
    targets = sample_targets(ds, info, params.unlabelled)
    repeats = params.repeats
    repeat_block = min(params.repeat_block, repeats) if params.repeat_block > 0 else repeats
    group = f"explain/{name}"
    sizes = {SAMPLE: int(ds.sizes[SAMPLE]), GENE: int(ds.sizes[GENE])}
    stamp = f"{ds.attrs.get('created', '')}|{ds[info.layer].attrs.get('gexplain_written', '')}"
    device = resolve_device(params)
    fp = fingerprint(params, info, seed, repeat_block, sizes, device, stamp)
    job = _Job(
        store_url=store_url,
        group=group,
        params=params,
        seed=seed,
        info=info,
        blocks=sample_blocks(sizes[SAMPLE], params.sample_block),
        ledger=BlockLedger(store_url, group),
        device=device,
        collapsed=collapse_plan(params, info),
        crash_once=crash_once,
    )
    done, complete = _prepare_result(job, ds, fp)
    todo = [] if complete else [b for b in range(len(job.blocks)) if block_key(b) not in done]
    summary = ExplainSummary(
        group=f"results/{group}",
        blocks=len(job.blocks),
        blocks_skipped=len(job.blocks) - len(todo),
        blocks_written=0,
        actors=0,
        actor_deaths=0,
        wall_s=0.0,
    )
    if todo:
        labelled = np.flatnonzero(targets >= 0)
        kind = params.reference_kind
        ref_stats = compute_reference_stats(
            ds[info.layer].data[labelled], targets[labelled], medians=kind == "universal"
        )
        ref_sets = (
            draw_reference_sets(
                kind, params.reference_set_size, ref_stats, seed, len(info.classes), sizes[GENE]
            )
            if params.reference_scope in ("cohort", "repeat")
            else None
        )
        tasks = plan_blocks(job.blocks, todo, list(info.model_ids), repeats, repeat_block)
        _run_tasks(job, tasks, targets, ref_stats, ref_sets, summary, on_block)
    mark_result_complete(
        store_url,
        group,
        explainers=list(params.explainers),
        references=params.references,
        reference_scope=params.reference_scope,
        repeats=repeats,
        models=list(info.model_ids),
        model_set=params.model_set,
        mode=params.mode,
        seed=seed,
        abs=params.abs,
        collapsed=[e for e, c in job.collapsed.items() if c],
        params=params.numeric_record(),
        device=device,
        sample_block=params.sample_block,
        repeat_block=repeat_block,
        fingerprint=fp,
    )
    summary.wall_s = round(time.perf_counter() - start, 3)
    return summary


def _run_tasks(
    job: _Job,
    tasks: list[BlockTask],
    targets: np.ndarray,
    ref_stats: ReferenceStats,
    ref_sets: ReferenceSets | None,
    summary: ExplainSummary,
    on_block: BlockCallback | None,
) -> None:
    """Run one task per block on a pool; each actor writes its block and marks it in the ledger."""
    params = job.params
    actors, gpus = _pool_size(params, len(tasks))
    summary.actors = actors
    shared = (ray.put(targets), ray.put(ref_stats), ray.put(ref_sets), ray.put(params))
    worker_args = (
        job.store_url,
        params.model_set,
        list(job.info.model_ids),
        job.info.layer,
        params.cpus_per_actor,
        job.crash_once,
        job.device,
        params.allow_tf32,
    )

    def submissions() -> Iterator[tuple[int, tuple[Any, ...]]]:
        for task in tasks:  # granted as submitted: each grant carries a recent expiry
            out = BlockOutput(job.group, job.collapsed, grant(job.store_url, result_scope(job.group)))
            yield task.block, (task, out, *shared, job.seed)

    started = time.perf_counter()
    with ActorPool(
        ExplainWorker,
        size=actors,
        init_args=worker_args,
        num_cpus=params.cpus_per_actor,
        num_gpus=gpus,
        tasks_per_actor=TASKS_PER_ACTOR,
    ) as pool:
        summary.pool_start_s = round(time.perf_counter() - started, 3)
        for block, done in pool.imap_unordered(submissions()):
            _check_written(job, done)
            faults.point()  # (fault tests) one point per block, wherever it was written
            summary.blocks_written += 1
            summary.actor_deaths = pool.stats.actor_deaths
            if on_block is not None:
                on_block(block, summary.blocks_skipped + summary.blocks_written, summary.blocks)
        summary.actor_deaths = pool.stats.actor_deaths


def _check_written(job: _Job, done: BlockDone) -> None:
    """Check, without reading its data, that the driver sees the block an actor reports written.

    Raises
    ------
    InputError
        When its ledger marker is not in the store as the driver sees it (the actor wrote to
        storage the driver does not share).
    """
    if not job.ledger.is_done(block_key(done.block)):
        raise InputError(
            f"block {done.block} of results/{job.group} was written by {done.writer}, but its ledger marker "
            f"is not visible at {job.store_url} from the driver: put the store on storage that every "
            "node of the cluster shares (an object store, or a shared file system)"
        )
