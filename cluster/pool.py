"""A supervised pool of Ray actors fed keyed tasks.

Each actor hosts one object built from a factory class and its init arguments (for gexplain: a
worker that loads model replicates onto its device once). Tasks are ``(key, args)`` pairs; the
pool calls ``getattr(obj, method)(*args)`` on some actor and yields ``(key, result)`` pairs as
they complete, in completion order. Callers that need a deterministic result must combine
results by key, not by arrival order.

Supervision
-----------
* A lost worker -- its process killed or out of memory, its node gone or unreachable, its result
  lost with its node: every error of :data:`LOST_WORKER_ERRORS` (all of
  :class:`ray.exceptions.RayActorError`, among them ``ActorDiedError`` and
  ``ActorUnavailableError``; ``NodeDiedError``; ``WorkerCrashedError``; ``ObjectLostError``) --
  is killed for good and replaced by a new actor built from the same factory, placed by Ray on a
  live node. The replacement starts in the background: the other actors keep working, and a
  pool whose cluster has lost the room for it carries on with fewer actors. Every task that was
  in flight on the lost actor is resubmitted, each to run alone on an actor. A death is charged
  to a task only when that task was the only one on the actor, so a task queued behind a crash
  (or one whose reply the crash lost) is never blamed; a task that kills its actor, alone, more
  than ``max_task_retries`` times raises :class:`PoolError`.
* An exception raised by the factory or by a task is the caller's error: it propagates unchanged
  (Ray re-raises it with its original type), and the pool is not retried.
* At most ``tasks_per_actor`` tasks are in flight per actor (one running, the rest queued on the
  actor so that it never waits for the driver), so memory held by results is bounded.

The pool owns its actors: :meth:`ActorPool.shutdown` (or leaving the ``with`` block) kills them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

import ray
from ray.exceptions import (
    NodeDiedError,
    ObjectLostError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

LOST_WORKER_ERRORS: tuple[type[BaseException], ...] = (
    RayActorError,
    NodeDiedError,
    WorkerCrashedError,
    ObjectLostError,
)
"""Errors that mean the worker (or its node, or the result it held) is gone, not that the task failed."""

START_ATTEMPTS = 8
START_TIMEOUT_S = 600.0


def is_lost_worker(exc: BaseException) -> bool:
    """True when ``exc`` reports a lost worker, node or result rather than an error of the task itself.

    A task's own exception arrives as a :class:`ray.exceptions.RayTaskError` (whatever it wraps,
    even a Ray error raised inside the task) and is never a lost worker.
    """
    return isinstance(exc, LOST_WORKER_ERRORS) and not isinstance(exc, RayTaskError)


class PoolError(RuntimeError):
    """A task could not be completed: it kept killing its actor, or no actor could be started."""


@dataclass
class PoolStats:
    """Counters of one pool.

    Attributes
    ----------
    submitted
        Task submissions, resubmissions included.
    completed
        Tasks whose result was yielded.
    actor_deaths
        Actors found lost (each is replaced).
    resubmitted
        Tasks submitted again after their actor was lost.
    """

    submitted: int = 0
    completed: int = 0
    actor_deaths: int = 0
    resubmitted: int = 0


class _Host:
    """The Ray actor class: builds the factory's object, then runs its methods."""

    def __init__(self) -> None:
        self._obj: Any = None

    def start(self, factory: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._obj = factory(*args, **kwargs)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self._obj, method)(*args)


_RemoteHost = ray.remote(_Host)


@dataclass
class _Slot:
    """One actor position in the pool; ``generation`` grows each time its actor is replaced.

    ``starting`` is the ref of the actor's start call until the actor is known to be up.
    """

    index: int
    actor: Any
    starting: Any | None
    since: float = field(default_factory=time.monotonic)
    generation: int = 0
    start_failures: int = 0
    in_flight: set[Any] = field(default_factory=set)
    exclusive: bool = False  # running a resubmitted task alone: nothing is queued behind it

    @property
    def up(self) -> bool:
        return self.starting is None


@dataclass
class _Flight(Generic[K]):
    key: K
    args: tuple[Any, ...]
    slot: _Slot
    generation: int
    exclusive: bool = False


class ActorPool(Generic[K]):
    """A fixed number of supervised actors that run keyed tasks.

    Parameters
    ----------
    factory
        Class built once in every actor (``factory(*init_args, **init_kwargs)``); it must be
        importable by Ray workers.
    size
        Number of actors.
    init_args, init_kwargs
        Arguments of ``factory``. Large read-only objects should be passed as ``ray.put`` refs.
    method
        Name of the factory object's method that runs one task.
    num_cpus
        CPU cores each actor reserves.
    num_gpus
        GPUs each actor reserves (a fraction shares a device; see
        :func:`gexplain.cluster.resources.gpu_fraction`); 0 on CPU-only clusters.
    tasks_per_actor
        Tasks in flight per actor (>= 1).
    max_task_retries
        How many times one task may be resubmitted after killing its actor while running alone.
    start_timeout_s
        Seconds the pool waits, with no actor up, for a replacement to start before it gives up
        (:class:`PoolError`); while any actor is up the pool keeps working and waits on.
    """

    def __init__(
        self,
        factory: type,
        *,
        size: int,
        init_args: tuple[Any, ...] = (),
        init_kwargs: dict[str, Any] | None = None,
        method: str = "run",
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        tasks_per_actor: int = 2,
        max_task_retries: int = 3,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        if size < 1:
            raise ValueError(f"an actor pool needs size >= 1 (got {size})")
        if tasks_per_actor < 1:
            raise ValueError(f"tasks_per_actor must be >= 1 (got {tasks_per_actor})")
        self.factory = factory
        self.init_args = init_args
        self.init_kwargs = dict(init_kwargs or {})
        self.method = method
        self.tasks_per_actor = tasks_per_actor
        self.max_task_retries = max_task_retries
        self.start_timeout_s = start_timeout_s
        self.stats = PoolStats()
        self._options: dict[str, Any] = {
            "num_cpus": float(num_cpus),
            "num_gpus": float(num_gpus),
            "max_restarts": 0,
            "max_task_retries": 0,
            "scheduling_strategy": "SPREAD",
        }
        self._slots: list[_Slot] = []
        self._flights: dict[Any, _Flight[K]] = {}
        try:
            for i in range(size):
                actor, ready = self._start_actor()
                self._slots.append(_Slot(index=i, actor=actor, starting=ready))
            while any(not s.up for s in self._slots):  # the factory's errors surface here
                self._await_start(None)
        except BaseException:
            self.shutdown()
            raise

    # -- actors ---------------------------------------------------------------------------

    def _start_actor(self) -> tuple[Any, Any]:
        """Create one actor and submit the construction of its object; return (handle, ready ref)."""
        actor = _RemoteHost.options(**self._options).remote()
        return actor, actor.start.remote(self.factory, self.init_args, self.init_kwargs)

    def _restart(self, slot: _Slot) -> None:
        """Kill the slot's actor and start a new one in the background (one more generation)."""
        ray.kill(slot.actor, no_restart=True)
        slot.actor, slot.starting = self._start_actor()
        slot.since = time.monotonic()
        slot.generation += 1
        slot.in_flight.clear()
        slot.exclusive = False

    def _replace(self, slot: _Slot, generation: int) -> None:
        """Replace the slot's actor if it is still the one that was lost (once per loss)."""
        if slot.generation != generation:
            return
        self.stats.actor_deaths += 1
        log.warning("actor %d lost; starting a replacement and resubmitting its tasks", slot.index)
        self._restart(slot)

    def _started(self, slot: _Slot) -> None:
        """Settle a finished start call: the actor is up, or it is started again after a loss."""
        ref, slot.starting = slot.starting, None
        try:
            ray.get(ref)
        except BaseException as exc:
            if not is_lost_worker(exc):
                raise  # the factory's own error
            slot.start_failures += 1
            if slot.start_failures > START_ATTEMPTS:
                raise PoolError(
                    f"actor {slot.index} was lost {slot.start_failures} times while starting (last: {exc})"
                ) from exc
            log.warning("actor %d lost while starting (%s); starting it again", slot.index, exc)
            time.sleep(min(0.5 * 2**slot.start_failures, 10.0))  # let Ray mark a dead node dead
            self._restart(slot)
            return
        slot.start_failures = 0

    def _await_start(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s for one start call and settle it; False when none finished."""
        pending = {s.starting: s for s in self._slots if s.starting is not None}
        if not pending:
            return False
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
        for ref in ready:
            self._started(pending[ref])
        return bool(ready)

    @property
    def actors(self) -> list[Any]:
        """The current actor handles, one per slot (for inspection and fault drills)."""
        return [s.actor for s in self._slots]

    @property
    def in_flight(self) -> int:
        """Number of tasks submitted and not yet yielded."""
        return len(self._flights)

    def busy_actors(self) -> list[Any]:
        """Handles of the actors that have tasks in flight now."""
        return [s.actor for s in self._slots if s.in_flight]

    # -- tasks ----------------------------------------------------------------------------

    def _submit(self, key: K, args: tuple[Any, ...], slot: _Slot | None = None) -> None:
        """Submit a task: to ``slot`` alone (a resubmission), else to the least busy shared slot."""
        exclusive = slot is not None
        if slot is None:
            slot = min(
                (s for s in self._slots if s.up and not s.exclusive),
                key=lambda s: (len(s.in_flight), s.index),
            )
        ref = slot.actor.call.remote(self.method, *args)
        slot.in_flight.add(ref)
        slot.exclusive = exclusive
        self.stats.submitted += 1
        self._flights[ref] = _Flight(
            key=key, args=args, slot=slot, generation=slot.generation, exclusive=exclusive
        )

    def _has_room(self) -> bool:
        return any(s.up and not s.exclusive and len(s.in_flight) < self.tasks_per_actor for s in self._slots)

    def _idle_slot(self) -> _Slot | None:
        return next((s for s in self._slots if s.up and not s.in_flight), None)

    def _wait(self) -> Any | None:
        """Wait for the next finished task or start call; return a finished task's ref, else None.

        Raises
        ------
        PoolError
            When no actor is up and none has started within ``start_timeout_s``.
        """
        starting = {s.starting: s for s in self._slots if s.starting is not None}
        refs = [*self._flights, *starting]
        timeout = None if self._flights else 5.0
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            oldest = min(s.since for s in starting.values())
            if not any(s.up for s in self._slots) and time.monotonic() - oldest > self.start_timeout_s:
                raise PoolError(
                    f"no actor of this pool could be started in {self.start_timeout_s:g} s: the cluster has "
                    f"no live node with {self._options['num_cpus']:g} free CPUs and "
                    f"{self._options['num_gpus']:g} GPUs; add nodes or lower the per-actor resources"
                )
            return None
        if ready[0] in starting:
            self._started(starting[ready[0]])
            return None
        return ready[0]

    def imap_unordered(
        self,
        tasks: Iterable[tuple[K, tuple[Any, ...]]],
        *,
        on_result: Callable[[K, PoolStats], None] | None = None,
    ) -> Iterator[tuple[K, Any]]:
        """Run tasks and yield ``(key, result)`` as each completes.

        Parameters
        ----------
        tasks
            ``(key, args)`` pairs, consumed lazily as actors have room; keys must be unique.
        on_result
            Called with the key and the pool's counters after each result, before it is yielded.

        Yields
        ------
        tuple
            ``(key, result)`` in completion order.

        Raises
        ------
        PoolError
            When one task killed its actor more than ``max_task_retries`` times, or no actor
            could be started.
        """
        source = iter(tasks)
        retry: deque[tuple[K, tuple[Any, ...]]] = deque()
        attempts: dict[K, int] = {}
        losses: set[tuple[int, int]] = set()  # (slot, generation) losses already accounted for
        seen: set[K] = set()
        exhausted = False
        while True:
            while True:
                if retry:  # resubmissions first, each alone on an idle actor; new tasks wait
                    idle = self._idle_slot()
                    if idle is None:
                        break
                    self._submit(*retry.popleft(), slot=idle)
                    continue
                if exhausted or not self._has_room():
                    break
                try:
                    key, args = next(source)
                except StopIteration:
                    exhausted = True
                    break
                if key in seen:
                    raise ValueError(f"task key {key!r} was given twice; keys must be unique")
                seen.add(key)
                self._submit(key, tuple(args))
            if not self._flights and not retry and exhausted:
                return
            ref = self._wait()
            if ref is None:
                continue
            flight = self._flights.pop(ref)
            flight.slot.in_flight.discard(ref)
            if flight.exclusive and flight.generation == flight.slot.generation:
                flight.slot.exclusive = False
            try:
                result = ray.get(ref)
            except BaseException as exc:
                if not is_lost_worker(exc):
                    raise
                # Charge the loss only to a task that was alone on the actor: with others queued
                # behind it, the culprit is unknown (the oldest may have finished and lost its reply
                # in the crash). All of them are resubmitted to run alone, where blame is exact.
                loss = (flight.slot.index, flight.generation)
                if loss not in losses:
                    losses.add(loss)
                    others = any(
                        f.slot is flight.slot and f.generation == flight.generation
                        for f in self._flights.values()
                    )
                    if not others:
                        attempts[flight.key] = attempts.get(flight.key, 0) + 1
                if attempts.get(flight.key, 0) > self.max_task_retries:
                    raise PoolError(
                        f"task {flight.key!r} killed its actor {attempts.get(flight.key, 0)} times "
                        f"(last: {exc}); giving up. Reduce the task size or the per-actor memory use."
                    ) from exc
                self._replace(flight.slot, flight.generation)
                self.stats.resubmitted += 1
                retry.append((flight.key, flight.args))
                continue
            self.stats.completed += 1
            if on_result is not None:
                on_result(flight.key, self.stats)
            yield flight.key, result

    # -- lifetime -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Kill every actor of the pool (in-flight tasks are abandoned)."""
        for slot in self._slots:
            ray.kill(slot.actor, no_restart=True)
        self._slots = []
        self._flights.clear()

    def __enter__(self) -> ActorPool[K]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()
