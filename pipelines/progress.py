"""Progress reporting, the one mechanism every stage uses.

Public interface (what the CLI, the runner and the notebook API build on)
-------------------------------------------------------------------------
``Progress(enabled=None, log_every=30.0, console=None, clock=time.monotonic, heartbeat=True)``
    One object per command or notebook call. Its :attr:`Progress.mode` says how it shows work:

    * ``"bar"``: live rich bars, when the console is a terminal or the code runs in a Jupyter
      kernel (rich renders the bars as a notebook output cell);
    * ``"log"``: everywhere else (batch jobs, output to a file): one single-line log record
      (logger ``gexplain``, level INFO) when a task starts, at most ``log_every`` seconds apart
      while it runs (a heartbeat thread writes it even when no item finished) and when it ends,
      each with ``done/total``, percentage, rate and ETA (elapsed time only when the total is
      unknown);
    * ``"off"``: ``enabled=False`` (tests, library defaults): nothing at all.

``with progress.task(description, total) as task:``
    Track one piece of work; ``total=None`` when unknown. ``task.advance(n)`` records ``n`` more
    finished items; ``task.report(done, total)`` sets absolute progress (the ``(done, total)``
    callback that storage-level code, which cannot import pipelines, is given);
    ``task.step(value)`` advances by one and returns ``value`` (one finished item of a list).
``with dask_tasks(task):``
    Count the Dask tasks computed inside the block into ``task`` (local schedulers; elsewhere the
    task keeps its heartbeat).
``progress.print(message)``
    A status line above the bars; never wrapped (a long line stays one line in a log file).
``progress.beat()``
    Log the running tasks that have been quiet for a heartbeat interval (what the heartbeat
    thread calls once a second).
``progress.close()``
    Stop the live display (the runner calls it at the end).
:func:`stderr_console`
    The console every status message goes to: the terminal's width, unwrapped elsewhere.
:data:`SILENT`
    A ``Progress(enabled=False)`` that library functions default to.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

log = logging.getLogger("gexplain")

Mode = Literal["bar", "log", "off"]
Clock = Callable[[], float]
"""Seconds on a monotonic clock (:func:`time.monotonic`; tests inject their own)."""
T = TypeVar("T")

UNWRAPPED = 100_000
"""Console width outside a terminal: a status line in a log file is never wrapped."""


def stderr_console() -> Console:
    """A console on the current stderr: the terminal's width on a terminal; outside one, soft
    wrapping and a width of :data:`UNWRAPPED`, so no line of a log file is broken mid-sentence."""
    tty = sys.stderr.isatty()
    return Console(stderr=True, soft_wrap=True, highlight=False, width=None if tty else UNWRAPPED)


@dataclass
class Task:
    """One unit of tracked work; call :meth:`advance` as items finish.

    Attributes
    ----------
    description
        What is tracked, e.g. ``"evaluate: faithfulness (sample blocks)"``.
    total
        Items to do, or None when unknown.
    started
        When the task started, on the owner's clock (s).
    done
        Items finished.
    """

    description: str
    total: float | None
    _owner: Progress
    started: float
    _last_log: float
    _id: int | None = None
    done: float = 0.0

    def advance(self, n: float = 1.0) -> None:
        """Record ``n`` more finished items."""
        self.done += n
        self._owner._update(self)

    def report(self, done: float, total: float | None = None) -> None:
        """Set the absolute progress: the ``(done, total)`` callback that storage-level code calls."""
        if total is not None:
            self.total = total
        self.advance(done - self.done)

    def step(self, value: T) -> T:
        """Record one finished item and return ``value`` (the item's result)."""
        self.advance()
        return value

    def line(self, now: float | None = None) -> str:
        """``description: done/total (pct), rate, ETA, elapsed`` on one line (no ETA without a total)."""
        now = self._owner.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.description}: {_count(self)}{'' if self.total else ' done'}", _rate(rate)]
        if self.total:
            left = max(self.total - self.done, 0.0)
            parts.append(f"ETA {_duration(left / rate)}" if rate > 0 else "ETA unknown")
        parts.append(f"elapsed {_duration(elapsed)}")
        return ", ".join(parts)


class Progress:
    """Progress bars on a terminal or in Jupyter; a log line at most ``log_every`` seconds apart
    otherwise; nothing with ``enabled=False`` (see the module docstring).

    Parameters
    ----------
    enabled
        ``None`` or ``True``: bars where they can be shown, log lines elsewhere. ``False``: nothing.
    log_every
        Most seconds between two log lines of a running task outside a terminal.
    console
        Where bars and status lines go (default :func:`stderr_console`); bars when it is a
        terminal (``Console(force_terminal=True)`` forces them).
    clock
        Monotonic seconds (default :func:`time.monotonic`).
    heartbeat
        Start a thread that calls :meth:`beat` once a second while tasks run outside a terminal;
        False when the caller calls :meth:`beat` itself.
    """

    def __init__(
        self,
        *,
        enabled: bool | None = None,
        log_every: float = 30.0,
        console: Console | None = None,
        clock: Clock = time.monotonic,
        heartbeat: bool = True,
    ) -> None:
        self.console = console if console is not None else stderr_console()
        terminal = self.console.is_terminal if console is not None else sys.stderr.isatty()
        live = terminal or self.console.is_jupyter
        self.mode: Mode = "off" if enabled is False else ("bar" if live else "log")
        self.log_every = float(log_every)
        self.clock = clock
        self.heartbeat = heartbeat
        self._poll = min(1.0, max(self.log_every / 4, 0.05))
        self._rich: RichProgress | None = None
        self._open: list[Task] = []
        self._lock = threading.Lock()
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        """True unless the mode is ``"off"``."""
        return self.mode != "off"

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        """Track one piece of work with an optional known ``total``."""
        now = self.clock()
        task = Task(description, total, self, started=now, _last_log=now)
        if self.mode == "bar":
            if self._rich is None:
                self._rich = RichProgress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                    transient=False,
                )
                self._rich.start()
            task._id = self._rich.add_task(description, total=total)
        elif self.mode == "log":
            log.info("%s: started%s", description, f", {total:g} to do" if total else "")
            with self._lock:
                self._open.append(task)
            if self.heartbeat:
                self._heartbeat()
        try:
            yield task
        finally:
            if self._rich is not None and task._id is not None:
                self._rich.update(task._id, completed=task.done, total=task.total)
            if self.mode == "log":
                with self._lock:
                    self._open.remove(task)
                took = _duration(self.clock() - task.started)
                log.info("%s: done %s in %s", description, _count(task), took)

    def _update(self, task: Task) -> None:
        if self.mode == "bar" and self._rich is not None and task._id is not None:
            self._rich.update(task._id, completed=task.done, total=task.total)
        elif self.mode == "log":
            now = self.clock()
            if now - task._last_log >= self.log_every:
                task._last_log = now
                log.info("%s", task.line(now))

    def beat(self) -> None:
        """Log each running task quiet for ``log_every`` less one heartbeat poll (at most a second;
        the thread polls that often, so no two lines of a task are more than ``log_every`` apart)."""
        now = self.clock()
        with self._lock:
            quiet = [t for t in self._open if now - t._last_log >= max(self.log_every - self._poll, 0.0)]
        for t in quiet:
            t._last_log = now
            log.info("%s", t.line(now))

    def _heartbeat(self) -> None:
        """Start the thread that calls :meth:`beat` while tasks are open."""
        if self._beat is not None and self._beat.is_alive():
            return
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self._poll):
                with self._lock:
                    if not self._open:
                        return
                self.beat()

        self._beat = threading.Thread(target=beat, name="gexplain-progress", daemon=True)
        self._beat.start()

    def print(self, message: str) -> None:
        """Print a status line (above any bars), never wrapped."""
        if self.enabled:
            self.console.print(message, soft_wrap=True)

    def close(self) -> None:
        """Stop the live display and the heartbeat."""
        self._stop.set()
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


@contextlib.contextmanager
def dask_tasks(task: Task) -> Iterator[None]:
    """Count the Dask tasks computed inside the block into ``task``: each compute adds its tasks to
    ``task.total``, each finished task advances it by one.

    Dask calls these hooks on its local schedulers (threads, processes, synchronous: the embedded
    runtime's default); a distributed or Dask-on-Ray scheduler does not, and the task then shows
    its heartbeat (elapsed time) only.
    """
    from dask.callbacks import Callback

    def start_state(dsk: Any, state: dict[str, Any]) -> None:
        todo = sum(len(state[k]) for k in ("ready", "waiting", "running"))
        task.report(task.done, (task.total or 0) + todo)

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        task.advance()

    with Callback(start_state=start_state, posttask=posttask):
        yield


def _count(task: Task) -> str:
    if task.total:
        return f"{task.done:g}/{task.total:g} ({100 * task.done / task.total:.0f}%)"
    return f"{task.done:g}"


def _rate(per_s: float) -> str:
    if per_s >= 1 or per_s == 0:
        return f"{per_s:.3g}/s"
    return f"{60 * per_s:.3g}/min" if per_s * 60 >= 1 else f"{1 / per_s:.3g} s each"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


SILENT = Progress(enabled=False)
