"""Resources of the Ray cluster: how many GPUs there are and what share of one an actor asks for.

An actor that holds model replicates asks for a fraction of a GPU when the cluster has GPUs, so
several actors share one device; on a CPU-only cluster it asks for CPUs only. Ray rounds
resource requests to four decimals, so fractions here are rounded down to that precision.
"""

from __future__ import annotations

import math

import ray

_PRECISION = 10_000


def cluster_gpus() -> float:
    """Return the number of GPUs the running Ray cluster has (0.0 when none or Ray is not started).

    Returns
    -------
    float
        Total ``GPU`` resource of the cluster, in devices.
    """
    if not ray.is_initialized():
        return 0.0
    return float(ray.cluster_resources().get("GPU", 0.0))


def gpu_fraction(per_actor: float | None = None, *, actors: int = 1) -> float:
    """Return the GPU share one actor should request.

    Parameters
    ----------
    per_actor
        Requested GPUs per actor (e.g. 0.25 to pack four actors on one device, or 1.0 for a
        whole device). ``None`` spreads the cluster's GPUs evenly over ``actors`` (at most one
        device each).
    actors
        Number of actors sharing the GPUs (used when ``per_actor`` is ``None``).

    Returns
    -------
    float
        GPUs to request per actor, in devices: 0.0 when the cluster has no GPU.

    Raises
    ------
    ValueError
        When ``per_actor`` is not positive, is a fraction above 1 that is not a whole number, or
        ``actors`` is not positive.
    """
    if actors < 1:
        raise ValueError(f"actors must be >= 1 (got {actors})")
    if per_actor is not None and (per_actor <= 0 or (per_actor > 1 and not float(per_actor).is_integer())):
        raise ValueError(f"per_actor must be in (0, 1] or a whole number of GPUs (got {per_actor})")
    total = cluster_gpus()
    if total <= 0:
        return 0.0
    share = per_actor if per_actor is not None else min(1.0, total / actors)
    return math.floor(share * _PRECISION) / _PRECISION
