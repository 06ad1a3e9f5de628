"""Running evaluation tasks on the current Dask scheduler, a bounded number at a time.

A *call* is ``(function, args)``: a top-level function of :mod:`gexplain.pipelines.evaluate.tasks`
and small picklable arguments (the store URL and a key; never a Dataset or a block of data).
:func:`run_tasks` computes them as ``dask.delayed`` tasks on whatever scheduler ``dask.compute``
uses here: the local threads (the embedded default), the synchronous scheduler, a distributed
``Client`` (``--dask tcp://...``) or Dask-on-Ray (``--dask ray``). At most ``workers`` calls are
in flight at once, so the memory of the results in flight is bounded by ``workers`` blocks, and
the results come back in call order whatever order the workers finish in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.local
import dask.threaded
from dask.base import get_scheduler
from gexplain.pipelines.progress import Task

Call = tuple[Callable[..., Any], tuple[Any, ...]]
"""A task: a top-level function and its (small, picklable) positional arguments."""


def _cores() -> int:
    configured = dask.config.get("num_workers", None)
    return int(configured) if configured else max(1, os.cpu_count() or 1)


def scheduler_kind() -> str:
    """How ``dask.compute`` runs here: ``"sync"`` (one thread of this process), ``"threads"``
    (threads of this process) or ``"remote"`` (other processes: distributed, Ray, processes)."""
    get = get_scheduler()
    if get is dask.local.get_sync:
        return "sync"
    if get is dask.threaded.get or get is None:
        return "threads"
    return "remote"


def scheduler_workers() -> int:
    """Worker threads of the current scheduler: 1 when synchronous, the configured ``num_workers``
    (the runtime's cores) or the machine's cores for local threads, the worker threads of a
    distributed ``Client``, the CPUs of a Dask-on-Ray cluster."""
    kind = scheduler_kind()
    if kind == "sync":
        return 1
    if kind == "threads":
        return _cores()
    client = getattr(get_scheduler(), "__self__", None)
    if client is not None and hasattr(client, "nthreads"):
        return max(1, sum(client.nthreads().values()))
    try:
        import ray

        if ray.is_initialized():
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
    except ImportError:  # pragma: no cover - Ray is a dependency
        pass
    return _cores()


def resolve_workers(workers: int) -> int:
    """``workers`` when positive, else :func:`scheduler_workers`."""
    return int(workers) if workers > 0 else scheduler_workers()


def torch_threads(workers: int) -> int:
    """Torch threads a faithfulness task should use: the cores shared between the tasks when
    more than one runs in this process on local threads, else 0 (leave torch as it is)."""
    if scheduler_kind() == "threads" and workers > 1:
        return max(1, _cores() // workers)
    return 0


def run_tasks(
    calls: Sequence[Call], workers: int, task: Task | None = None, steps: Sequence[float] | None = None
) -> list[Any]:
    """Compute ``calls`` on the current Dask scheduler, at most ``workers`` at a time.

    Parameters
    ----------
    calls
        The tasks, each ``(function, args)``.
    workers
        Calls in flight at once (> 0; see :func:`resolve_workers`).
    task
        Progress: advanced as each window of calls finishes.
    steps
        Progress items each call counts for (default 1 each; 0 for a call that is part of an
        item counted by another one).

    Returns
    -------
    list
        The results, in the order of ``calls``.
    """
    width = max(1, int(workers))
    out: list[Any] = []
    for start in range(0, len(calls), width):
        window = calls[start : start + width]
        delayed = [dask.delayed(fn, pure=False)(*args) for fn, args in window]
        out.extend(dask.compute(*delayed, optimize_graph=False))
        if task is not None:
            done = steps[start : start + len(window)] if steps is not None else [1.0] * len(window)
            if sum(done):
                task.advance(sum(done))
    return out
