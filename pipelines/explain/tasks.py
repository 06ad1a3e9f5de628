"""Units of attribution work: block tasks, their plan, and the actor that runs and writes them.

A task explains one sample block: every model replicate over every range of repeats (its parts),
for every requested explainer at once, and writes the block into the result itself
(:mod:`gexplain.pipelines.explain.blockio`). Its parts are merged in key order, so the floats do not
depend on where the task ran; every random draw inside depends only on (run seed, model, global
sample index, repeat), so a task rerun anywhere (after its actor died) writes the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dask
import numpy as np
import ray
import torch
from gexplain.pipelines.explain.blockio import BlockDone, BlockOutput, block_arrays, write_block
from gexplain.pipelines.explain.compute import BlockPartial, explain_block
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.explain.references import ReferenceSets, ReferenceStats
from gexplain.pipelines.models.load import load_models
from gexplain.storage import faults
from gexplain.storage.lease import accept
from gexplain.storage.store import open_store


@dataclass(frozen=True, order=True)
class PartKey:
    """Key of one part of a block task; keys sort in the order their partial sums are merged.

    Attributes
    ----------
    model
        Replicate number of the model.
    repeat_start, repeat_stop
        Repeats ``[repeat_start, repeat_stop)``.
    """

    model: int
    repeat_start: int
    repeat_stop: int


@dataclass(frozen=True)
class BlockTask:
    """One sample block to explain and write.

    Attributes
    ----------
    block
        Sample-block index (the task's key).
    sample_start, sample_stop
        Global sample positions ``[sample_start, sample_stop)`` of the block.
    parts
        (model, repeat range) parts in merge order.
    """

    block: int
    sample_start: int
    sample_stop: int
    parts: tuple[PartKey, ...]

    def __str__(self) -> str:
        return f"block{self.block:06d}/samples{self.sample_start}-{self.sample_stop}/{len(self.parts)} parts"


def plan_blocks(
    blocks: list[slice],
    block_ids: list[int],
    model_ids: list[int],
    repeats: int,
    repeat_block: int,
) -> list[BlockTask]:
    """Return one task per sample block to compute, its parts in merge order.

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
        Repeats per part (``repeats`` or fewer): sets the order of the float64 sums.
    """
    parts = tuple(
        PartKey(model=m, repeat_start=r, repeat_stop=min(r + repeat_block, repeats))
        for m in sorted(model_ids)
        for r in range(0, repeats, repeat_block)
    )
    return [
        BlockTask(block=b, sample_start=int(blocks[b].start), sample_stop=int(blocks[b].stop), parts=parts)
        for b in block_ids
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
    """Body of one pool actor: holds model replicates on its device, runs block tasks and writes them.

    Parameters
    ----------
    store_url
        The expression store; models are loaded from it (aligned to its genes), every task
        reads its sample block from it and writes the block's attributions into it.
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
        task: BlockTask,
        out: BlockOutput,
        targets: np.ndarray,
        ref_stats: ReferenceStats,
        ref_sets: ReferenceSets | None,
        params: ExplainParams,
        run_seed: int,
    ) -> BlockDone:
        """Explain one sample block with every model and repeat, and write it into the result.

        Parameters
        ----------
        task
            The block and its parts.
        out
            The result group and the driver's leases to write under.
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
        BlockDone
            Where the block went; the attributions stay in the store.

        Raises
        ------
        gexplain.storage.lease.LeaseLostError
            When the driver's lease was lost or expired before the block was written.
        """
        accept(out.grants)
        rows = slice(task.sample_start, task.sample_stop)
        with dask.config.set(scheduler="synchronous"):
            x = np.asarray(open_store(self.store_url)[self.layer].isel(sample=rows).values, dtype=np.float32)
        if self.crash_marker and _claim(self.crash_marker):
            os._exit(1)

        def explain(part: PartKey) -> BlockPartial:
            return explain_block(
                [self.models[part.model]],
                [part.model],
                x,
                np.array(targets[rows]),
                np.arange(task.sample_start, task.sample_stop),
                range(part.repeat_start, part.repeat_stop),
                ref_stats,
                params,
                run_seed,
                ref_sets=ref_sets,
                device=str(self.device),
            )

        merged = explain(task.parts[0])
        for part in task.parts[1:]:  # merged in key order, whichever actor runs the task
            merged.merge(explain(part))
        # the driver counts one fault point per block it is told of: a stage's points never
        # depend on which process wrote
        with faults.uncounted():
            return write_block(
                self.store_url, out, task.block, rows, block_arrays(merged, params, out.collapsed)
            )
