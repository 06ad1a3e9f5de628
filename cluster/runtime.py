"""Ray and Dask runtimes: the embedded local default, or an existing cluster by address.

Local default
-------------
With no address, gexplain embeds its own runtime for the length of a run:

* Dask: the local threaded scheduler with one worker per core (no extra processes).
* Ray: started lazily, on first use by a stage that needs it, with ``num_cpus`` = the machine's
  cores, no dashboard, listening on loopback (127.0.0.1) only. Ray >= 2.60 turns on token authentication by
  default and writes a token under ``~/.ray``. Because the embedded runtime lives only as long as
  the run and accepts no outside connections, gexplain starts it with ``RAY_AUTH_MODE=disabled``
  (unless you set ``RAY_AUTH_MODE`` yourself) and so writes nothing to ``~/.ray``.

Existing clusters
-----------------
``address="auto"`` joins the Ray cluster this machine belongs to, ``ray://host:10001`` connects a
Ray client, and ``dask_address="tcp://host:8786"`` uses a Dask distributed scheduler. gexplain
never shuts down what it did not start. For a cluster with token authentication, export
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (or ``RAY_AUTH_TOKEN_PATH``) as the cluster's docs say.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dask

log = logging.getLogger(__name__)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass
class Runtime:
    """Handles on the Ray and Dask runtimes of one run.

    Attributes
    ----------
    address
        Ray address (``None`` = embedded local, ``"auto"``, ``"ray://host:port"``).
    dask_address
        Dask scheduler address (``None`` = local threaded scheduler).
    num_cpus
        CPUs for the embedded Ray and the local Dask scheduler.
    num_gpus
        GPUs for the embedded Ray (``None`` = autodetect).
    object_store_memory
        Bytes for the embedded Ray object store (``None`` = Ray's default).
    """

    address: str | None = None
    dask_address: str | None = None
    num_cpus: int = field(default_factory=_cpu_count)
    num_gpus: int | None = None
    object_store_memory: int | None = None
    ray_started_here: bool = False
    dask_client: Any | None = None

    def ensure_ray(self) -> None:
        """Start or connect Ray if it is not running in this process yet (idempotent)."""
        import ray

        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {
            "ignore_reinit_error": True,
            "log_to_driver": True,
            "logging_level": logging.WARNING,
        }
        if self.address:
            log.info("connecting to Ray at %s", self.address)
            ray.init(address=self.address, **kwargs)
            return
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(
            address="local",  # always a private instance, never a cluster found on this machine
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            object_store_memory=self.object_store_memory,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **kwargs,
        )
        self.ray_started_here = True

    @contextlib.contextmanager
    def dask_scheduler(self) -> Iterator[None]:
        """Context in which ``dask.compute`` runs on this runtime's scheduler."""
        if self.dask_client is not None:
            with dask.config.set(scheduler=self.dask_client.get):
                yield
        else:
            with dask.config.set(scheduler="threads", num_workers=self.num_cpus):
                yield

    def describe(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary for run manifests."""
        return {
            "ray": self.address or "embedded-local",
            "dask": self.dask_address or "local-threads",
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
        }

    def shutdown(self) -> None:
        """Stop only what this runtime started."""
        if self.ray_started_here:
            import ray

            ray.shutdown()
            self.ray_started_here = False
        if self.dask_client is not None:
            self.dask_client.close()
            self.dask_client = None


def start_runtime(
    address: str | None = None,
    *,
    dask_address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
) -> Runtime:
    """Create the runtime of a run; Ray itself starts lazily (:meth:`Runtime.ensure_ray`).

    Parameters
    ----------
    address
        ``None`` or ``""`` for the embedded local default, ``"auto"`` to join this machine's Ray
        cluster, ``"ray://host:port"`` for a remote cluster.
    dask_address
        Dask distributed scheduler address, e.g. ``"tcp://scheduler:8786"``; ``None`` uses the
        local threaded scheduler.
    num_cpus, num_gpus
        Resources of the embedded Ray (ignored when connecting). ``num_cpus`` defaults to the cores
        this process may use.
    object_store_memory
        Object-store bytes of the embedded Ray.
    """
    runtime = Runtime(
        address=address or None,
        dask_address=dask_address or None,
        num_cpus=num_cpus or _cpu_count(),
        num_gpus=num_gpus,
        object_store_memory=object_store_memory,
    )
    if runtime.dask_address:
        from distributed import Client

        runtime.dask_client = Client(runtime.dask_address)
    return runtime
