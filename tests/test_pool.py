"""The supervised actor pool: results by key, bounded in-flight tasks, replacement of dead actors."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import ray
from gexplain.cluster.pool import ActorPool, PoolError
from gexplain.cluster.resources import cluster_gpus, gpu_fraction

# Ray workers cannot import test modules: ship this module's classes by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Squarer:
    """Test worker: ``run(x)`` returns ``(offset + x * x, pid)``; optional crash or delay per task."""

    def __init__(self, offset: int, fail_init: bool = False) -> None:
        if fail_init:
            raise ValueError("bad init option 'fail_init': set it to False")
        self.offset = offset

    def run(self, x: int, crash_marker: str = "", delay: float = 0.0) -> tuple[int, int]:
        if crash_marker == "always":
            os._exit(1)
        if crash_marker and not Path(crash_marker).exists():
            Path(crash_marker).write_text("crashed once")
            os._exit(1)
        if x < 0:
            raise ValueError(f"negative input {x}")
        time.sleep(delay)
        return self.offset + x * x, os.getpid()


def test_results_match_closed_form_and_in_flight_is_bounded(ray_runtime):
    seen_in_flight: list[int] = []
    with ActorPool(Squarer, size=2, init_args=(7,), num_cpus=0.5, tasks_per_actor=2) as pool:

        def source():
            for x in range(12):
                seen_in_flight.append(pool.in_flight)
                yield x, (x,)

        counted: list[int] = []
        out = dict(pool.imap_unordered(source(), on_result=lambda k, s: counted.append(s.completed)))
    assert {k: v[0] for k, v in out.items()} == {x: 7 + x * x for x in range(12)}
    assert max(seen_in_flight) <= 4
    assert counted == list(range(1, 13))
    assert pool.stats.actor_deaths == 0 and pool.stats.submitted == 12


def test_actor_that_dies_mid_task_is_replaced_and_task_rerun(ray_runtime, tmp_path):
    marker = tmp_path / "crashed"
    tasks = [(x, (x, str(marker) if x == 3 else "")) for x in range(8)]
    with ActorPool(Squarer, size=2, init_args=(1,), num_cpus=0.5) as pool:
        pids_before = {ray.get(a.call.remote("run", 0))[1] for a in pool.actors}
        out = dict(pool.imap_unordered(tasks))
        pids_after = {ray.get(a.call.remote("run", 0))[1] for a in pool.actors}
    assert marker.exists()
    assert {k: v[0] for k, v in out.items()} == {x: 1 + x * x for x in range(8)}
    assert pool.stats.actor_deaths == 1
    assert pool.stats.resubmitted >= 1
    assert len(pids_after - pids_before) == 1


def test_actor_killed_from_outside_is_replaced(ray_runtime):
    tasks = [(x, (x, "", 0.4)) for x in range(6)]
    with ActorPool(Squarer, size=2, init_args=(0,), num_cpus=0.5, tasks_per_actor=1) as pool:
        out = {}
        for key, value in pool.imap_unordered(tasks):
            if not out:
                ray.kill(pool.busy_actors()[0], no_restart=True)
            out[key] = value[0]
    assert out == {x: x * x for x in range(6)}
    assert pool.stats.actor_deaths == 1
    assert pool.stats.resubmitted == 1


def test_task_that_always_kills_its_actor_gives_up(ray_runtime):
    with ActorPool(Squarer, size=1, init_args=(0,), num_cpus=0.5, max_task_retries=1) as pool:
        with pytest.raises(PoolError, match="killed its actor 2 times"):
            list(pool.imap_unordered([("boom", (1, "always"))]))
    assert pool.stats.actor_deaths == 1


def test_task_and_init_errors_propagate_with_their_type(ray_runtime):
    with ActorPool(Squarer, size=1, init_args=(0,), num_cpus=0.5) as pool:
        with pytest.raises(ValueError, match="negative input -2"):
            list(pool.imap_unordered([(0, (-2,))]))
    assert pool.stats.actor_deaths == 0
    with pytest.raises(ValueError, match="fail_init"):
        ActorPool(Squarer, size=1, init_args=(0, True), num_cpus=0.5)


def test_duplicate_keys_are_rejected(ray_runtime):
    with ActorPool(Squarer, size=1, init_args=(0,), num_cpus=0.5) as pool:
        with pytest.raises(ValueError, match="given twice"):
            list(pool.imap_unordered([(1, (1,)), (1, (2,))]))


def test_shutdown_kills_actors(ray_runtime):
    pool = ActorPool(Squarer, size=1, init_args=(0,), num_cpus=0.5)
    actor = pool.actors[0]
    pool.shutdown()
    # ray.kill is asynchronous: a call racing the kill may still run, but the actor must die soon.
    deadline = time.monotonic() + 60
    with pytest.raises(ray.exceptions.RayActorError):
        while time.monotonic() < deadline:
            ray.get(actor.call.remote("run", 1), timeout=60)
            time.sleep(0.2)


def test_gpu_fraction_on_this_cluster(ray_runtime):
    gpus = ray.cluster_resources().get("GPU", 0.0)
    assert cluster_gpus() == gpus
    if gpus == 0:
        assert gpu_fraction(0.25) == 0.0 and gpu_fraction(None, actors=3) == 0.0
    else:
        assert gpu_fraction(0.25) == 0.25
        assert gpu_fraction(None, actors=3) == pytest.approx(min(1.0, gpus / 3), abs=1e-4)
    with pytest.raises(ValueError, match="per_actor"):
        gpu_fraction(1.5)


def test_tasks_queued_behind_a_crash_are_not_charged_for_it(ray_runtime, tmp_path):
    # One actor, three tasks in flight: A kills it, B (queued behind A) kills the next one. Only the task
    # running at each death is charged, so with max_task_retries=1 nobody exceeds its budget.
    a, b = tmp_path / "a", tmp_path / "b"
    tasks = [("A", (2, str(a))), ("B", (3, str(b))), ("C", (4,))]
    with ActorPool(
        Squarer, size=1, init_args=(0,), num_cpus=0.5, tasks_per_actor=3, max_task_retries=1
    ) as pool:
        out = {k: v[0] for k, v in pool.imap_unordered(tasks)}
    assert out == {"A": 4, "B": 9, "C": 16}
    assert pool.stats.actor_deaths == 2


def test_every_ray_worker_loss_counts_as_a_lost_worker_and_task_errors_do_not():
    """Issue 19: every RayActorError subclass Ray defines (ActorUnavailableError among them),
    node death, worker crash and a lost result are lost workers; a task's own error is not."""
    import inspect

    from gexplain.cluster.pool import is_lost_worker

    actor_errors = [
        cls
        for _, cls in inspect.getmembers(ray.exceptions, inspect.isclass)
        if issubclass(cls, ray.exceptions.RayActorError)
    ]
    assert ray.exceptions.ActorUnavailableError in actor_errors
    for cls in actor_errors:
        assert is_lost_worker(cls.__new__(cls)), cls
    for cls in (
        ray.exceptions.NodeDiedError,
        ray.exceptions.WorkerCrashedError,
        ray.exceptions.ObjectLostError,
        ray.exceptions.ObjectReconstructionFailedError,
    ):
        assert is_lost_worker(cls.__new__(cls)), cls
    task_error = ray.exceptions.RayTaskError(
        "run", "traceback", ValueError("bad input")
    ).as_instanceof_cause()
    assert isinstance(task_error, ValueError) and not is_lost_worker(task_error)
    assert not is_lost_worker(ValueError("bad input"))
