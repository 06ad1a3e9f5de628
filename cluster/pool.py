"""A supervised pool of Ray actors fed keyed tasks.

Each actor hosts one object built from a factory class and its init arguments (for gexplain: a
worker that loads model replicates onto its device once). Tasks are ``(key, args)`` pairs; the
pool calls ``getattr(obj, method)(*args)`` on some actor and yields ``(key, result)`` pairs as
they complete, in completion order. Callers that need a deterministic result must combine
results by key, not by arrival order.

Supervision
-----------
* An actor that dies (process killed, out of memory, node lost: Ray raises
  :class:`ray.exceptions.RayActorError`) is killed for good and replaced by a new actor built
  from the same factory; every task that was in flight on it is resubmitted, each to run alone on
  an actor. A death is charged to a task only when that task was the only one on the actor, so a
  task queued behind a crash (or one whose reply the crash lost) is never blamed; a task that
  kills its actor, alone, more than ``max_task_retries`` times raises :class:`PoolError`.
* An exception raised by the factory or by a task is the caller's error: it propagates unchanged
  (Ray re-raises it with its original type), and the pool is not retried.
* At most ``tasks_per_actor`` tasks are in flight per actor (one running, the rest queued on the
  actor so that it never waits for the driver), so memory held by results is bounded.

The pool owns its actors: :meth:`ActorPool.shutdown` (or leaving the ``with`` block) kills them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

import ray
from ray.exceptions import RayActorError

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class PoolError(RuntimeError):
    """A task could not be completed because it kept killing its actor."""


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
        Actors found dead (each is replaced).
    resubmitted
        Tasks submitted again after their actor died.
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
    """One actor position in the pool; ``generation`` grows each time its actor is replaced."""

    index: int
    actor: Any
    generation: int = 0
    in_flight: set[Any] = field(default_factory=set)
    exclusive: bool = False  # running a resubmitted task alone: nothing is queued behind it


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
        actors: list[Any] = []
        try:
            for _ in range(size):
                actors.append(self._start_actor())
            ray.get([ready for _, ready in actors])
        except BaseException:
            for actor, _ in actors:
                ray.kill(actor, no_restart=True)
            raise
        self._slots = [_Slot(index=i, actor=a) for i, (a, _) in enumerate(actors)]

    # -- actors ---------------------------------------------------------------------------

    def _start_actor(self) -> tuple[Any, Any]:
        """Create one actor and submit the construction of its object; return (handle, ready ref)."""
        actor = _RemoteHost.options(**self._options).remote()
        return actor, actor.start.remote(self.factory, self.init_args, self.init_kwargs)

    def _replace(self, slot: _Slot, generation: int) -> None:
        """Replace the slot's actor if it is still the one that died (once per death)."""
        if slot.generation != generation:
            return
        self.stats.actor_deaths += 1
        ray.kill(slot.actor, no_restart=True)
        log.warning("actor %d died; starting a replacement and resubmitting its tasks", slot.index)
        actor, ready = self._start_actor()
        try:
            ray.get(ready)
        except RayActorError as exc:
            ray.kill(actor, no_restart=True)
            raise PoolError(f"the replacement of actor {slot.index} died while starting: {exc}") from exc
        slot.generation += 1
        slot.in_flight.clear()
        slot.exclusive = False
        slot.actor = actor

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
            slot = min((s for s in self._slots if not s.exclusive), key=lambda s: (len(s.in_flight), s.index))
        ref = slot.actor.call.remote(self.method, *args)
        slot.in_flight.add(ref)
        slot.exclusive = exclusive
        self.stats.submitted += 1
        self._flights[ref] = _Flight(
            key=key, args=args, slot=slot, generation=slot.generation, exclusive=exclusive
        )

    def _has_room(self) -> bool:
        return any(not s.exclusive and len(s.in_flight) < self.tasks_per_actor for s in self._slots)

    def _idle_slot(self) -> _Slot | None:
        return next((s for s in self._slots if not s.in_flight), None)

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
            When one task killed its actor more than ``max_task_retries`` times.
        """
        source = iter(tasks)
        retry: deque[tuple[K, tuple[Any, ...]]] = deque()
        attempts: dict[K, int] = {}
        deaths: set[tuple[int, int]] = set()  # (slot, generation) deaths already accounted for
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
            if not self._flights:
                return
            (ref,), _ = ray.wait(list(self._flights), num_returns=1)
            flight = self._flights.pop(ref)
            flight.slot.in_flight.discard(ref)
            if flight.exclusive and flight.generation == flight.slot.generation:
                flight.slot.exclusive = False
            try:
                result = ray.get(ref)
            except RayActorError as exc:
                # Charge the death only to a task that was alone on the actor: with others queued
                # behind it, the culprit is unknown (the oldest may have finished and lost its reply
                # in the crash). All of them are resubmitted to run alone, where blame is exact.
                death = (flight.slot.index, flight.generation)
                if death not in deaths:
                    deaths.add(death)
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
