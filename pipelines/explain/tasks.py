"""Units of attribution work: task keys, the task plan, and the actor that runs tasks.

A task explains one sample block with one model replicate over one range of repeats, for every
requested explainer at once. Its key names exactly that, so a task can be rerun anywhere (after
its actor died) and give the same partial sums: every random draw inside depends only on
(run seed, model, global sample index, repeat).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dask
import numpy as np
import ray
import torch
from gexplain.pipelines.explain.compute import BlockPartial, explain_block
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.explain.references import ReferenceSets, ReferenceStats
from gexplain.pipelines.models.load import load_models
from gexplain.storage.store import open_store


@dataclass(frozen=True, order=True)
class TaskKey:
    """Key of one task; keys sort in the order their partial sums are reduced.

    Attributes
    ----------
    block
        Sample-block index.
    model
        Replicate number of the model.
    repeat_start, repeat_stop
        Repeats ``[repeat_start, repeat_stop)``.
    sample_start, sample_stop
        Global sample positions ``[sample_start, sample_stop)`` of the block.
    explainers
        Comma-joined explainer names computed by the task.
    """

    block: int
    model: int
    repeat_start: int
    repeat_stop: int
    sample_start: int
    sample_stop: int
    explainers: str

    def __str__(self) -> str:
        return (
            f"block{self.block:06d}/model{self.model}/repeats{self.repeat_start}-{self.repeat_stop}/"
            f"{self.explainers}"
        )


def block_key(block: int) -> str:
    """Return the ledger key of a finished sample block."""
    return f"block-{block:06d}"


def plan_tasks(
    blocks: list[slice],
    block_ids: list[int],
    model_ids: list[int],
    repeats: int,
    repeat_block: int,
    explainers: tuple[str, ...],
) -> list[TaskKey]:
    """Return the tasks of the given sample blocks, block by block, in reduction order.

    Parameters
    ----------
    blocks
        Every sample block of the run (see :func:`sample_blocks`).
    block_ids
        Indices of the blocks to compute (those not yet finished).
    model_ids
        Replicate numbers of the models.
    repeats
        Repeats per (sample, model).
    repeat_block
        Repeats per task (``repeats`` or fewer).
    explainers
        Explainer names.
    """
    names = ",".join(explainers)
    return [
        TaskKey(
            block=b,
            model=m,
            repeat_start=r,
            repeat_stop=min(r + repeat_block, repeats),
            sample_start=int(blocks[b].start),
            sample_stop=int(blocks[b].stop),
            explainers=names,
        )
        for b in block_ids
        for m in model_ids
        for r in range(0, repeats, repeat_block)
    ]


def _claim(marker: str) -> bool:
    """Create ``marker`` if it does not exist (atomically: one caller wins); return True if created."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def actor_device(device: str = "auto") -> torch.device:
    """Return the torch device of the current Ray actor: its GPU when Ray assigned one (and
    ``device`` is not ``cpu``), else CPU."""
    if device != "cpu" and ray.is_initialized() and ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class ExplainWorker:
    """Body of one pool actor: holds model replicates on its device and runs tasks.

    Parameters
    ----------
    store_url
        The expression store; models are loaded from it (aligned to its genes) and every task
        reads its sample block from it.
    model_set
        Model set name.
    model_ids
        Replicate numbers to hold.
    layer
        Store layer the models read, (sample, gene).
    threads
        Torch intra-op threads (the actor's CPU reservation).
    crash_marker
        Fault drill: when set and the file does not exist, the first task creates it and then
        kills this actor's process before returning, as an out-of-memory kill would.
    device
        ``cpu`` or ``cuda`` (resolved by the driver; part of the result's fingerprint).
    allow_tf32
        Allow TF32 matmuls on CUDA (the user's opt-in; off by default).
    """

    def __init__(
        self,
        store_url: str,
        model_set: str,
        model_ids: list[int],
        layer: str,
        threads: int = 1,
        crash_marker: str | None = None,
        device: str = "cpu",
        allow_tf32: bool = False,
    ) -> None:
        torch.set_num_threads(max(1, threads))
        self.device = actor_device(device)
        if self.device.type == "cuda":  # pragma: no cover - needs a GPU (unvalidated, see docs/explain.md)
            torch.backends.cuda.matmul.allow_tf32 = allow_tf32
            torch.backends.cudnn.allow_tf32 = allow_tf32
        self.store_url = store_url
        self.layer = layer
        self.crash_marker = crash_marker
        genes = open_store(store_url).gene.values
        wanted = set(model_ids)
        self.models = {
            m.replicate: m.module.to(self.device)
            for m in load_models(store_url, model_set, genes=genes)
            if m.replicate in wanted
        }

    def run(
        self,
        key: TaskKey,
        targets: np.ndarray,
        ref_stats: ReferenceStats,
        ref_sets: ReferenceSets | None,
        params: ExplainParams,
        run_seed: int,
    ) -> BlockPartial:
        """Explain one sample block with one model over one repeat range.

        Parameters
        ----------
        key
            The task.
        targets
            Class index (logit position) of every sample of the store, shape (sample,) int64.
        ref_stats
            Reference statistics of the whole store (broadcast once).
        ref_sets
            Cohort-scope reference sets (broadcast once), or None for sample scope.
        params
            The run's parameters.
        run_seed
            The run's seed.

        Returns
        -------
        BlockPartial
            Streamed sums over this task's repeats x references, for every explainer.
        """
        rows = slice(key.sample_start, key.sample_stop)
        with dask.config.set(scheduler="synchronous"):
            x = np.asarray(open_store(self.store_url)[self.layer].isel(sample=rows).values, dtype=np.float32)
        if self.crash_marker and _claim(self.crash_marker):
            os._exit(1)
        return explain_block(
            [self.models[key.model]],
            [key.model],
            x,
            np.array(targets[rows]),
            np.arange(key.sample_start, key.sample_stop),
            range(key.repeat_start, key.repeat_stop),
            ref_stats,
            params,
            run_seed,
            ref_sets=ref_sets,
            device=str(self.device),
        )
