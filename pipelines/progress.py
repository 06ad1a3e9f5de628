"""Progress reporting, the one mechanism every stage uses.

Public interface (what the CLI, the runner and the notebook API build on)
-------------------------------------------------------------------------
``Progress(enabled=None, log_every=30.0)``
    One object per command or notebook call. Its :attr:`Progress.mode` says how it shows work:

    * ``"bar"``: live rich bars, when stderr is a terminal or the code runs in a Jupyter kernel
      (rich renders the bars as a notebook output cell);
    * ``"log"``: everywhere else (batch jobs, output to a file): one single-line log record
      (logger ``gexplain``, level INFO) when a task starts, at least every ``log_every`` seconds
      while it runs (a heartbeat thread writes it even when no item finished) and when it ends,
      each with ``done/total``, percentage, rate and ETA;
    * ``"off"``: ``enabled=False`` (tests, library defaults): nothing at all.

``with progress.task(description, total) as task:``
    Track one piece of work; ``total=None`` when unknown. ``task.advance(n)`` records ``n`` more
    finished items; ``task.report(done, total)`` sets absolute progress (the ``(done, total)``
    callback that storage-level code, which cannot import pipelines, is given).
``progress.print(message)``
    A status line above the bars; never wrapped (a long line stays one line in a log file).
``progress.close()``
    Stop the live display (the runner calls it at the end).
:data:`SILENT`
    A ``Progress(enabled=False)`` that library functions default to.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

log = logging.getLogger("gexplain")

Mode = Literal["bar", "log", "off"]


@dataclass
class Task:
    """One unit of tracked work; call :meth:`advance` as items finish."""

    description: str
    total: float | None
    _owner: Progress
    _id: int | None = None
    done: float = 0.0
    started: float = field(default_factory=time.monotonic)
    _last_log: float = field(default_factory=time.monotonic)

    def advance(self, n: float = 1.0) -> None:
        """Record ``n`` more finished items."""
        self.done += n
        self._owner._update(self)

    def report(self, done: float, total: float | None = None) -> None:
        """Set the absolute progress: the ``(done, total)`` callback that storage-level code calls."""
        if total is not None:
            self.total = total
        self.advance(done - self.done)

    def line(self, now: float | None = None) -> str:
        """``description: done/total (pct), rate/s, ETA, elapsed`` on one line."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.description}: {_count(self)}"]
        if self.done > 0:
            parts.append(f"{_rate(rate)}")
            if self.total:
                left = max(self.total - self.done, 0.0)
                parts.append(f"ETA {_duration(left / rate)}")
        parts.append(f"elapsed {_duration(elapsed)}")
        return ", ".join(parts)


class Progress:
    """Progress bars on a terminal or in Jupyter; one log line at least every ``log_every`` seconds
    otherwise; nothing with ``enabled=False`` (see the module docstring).

    Parameters
    ----------
    enabled
        ``None`` or ``True``: bars where they can be shown, log lines elsewhere. ``False``: nothing.
    log_every
        Most seconds between two log lines of a running task outside a terminal.
    """

    def __init__(self, *, enabled: bool | None = None, log_every: float = 30.0) -> None:
        self.console = Console(stderr=True, soft_wrap=True)
        live = sys.stderr.isatty() or self.console.is_jupyter
        self.mode: Mode = "off" if enabled is False else ("bar" if live else "log")
        self.log_every = float(log_every)
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
        task = Task(description, total, self)
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
            self._heartbeat()
        try:
            yield task
        finally:
            if self._rich is not None and task._id is not None:
                self._rich.update(task._id, completed=task.done)
            if self.mode == "log":
                with self._lock:
                    self._open.remove(task)
                log.info(
                    "%s: done %s in %s", description, _count(task), _duration(time.monotonic() - task.started)
                )

    def _update(self, task: Task) -> None:
        if self.mode == "bar" and self._rich is not None and task._id is not None:
            self._rich.update(task._id, completed=task.done, total=task.total)
        elif self.mode == "log":
            now = time.monotonic()
            if now - task._last_log >= self.log_every:
                task._last_log = now
                log.info("%s", task.line(now))

    def _heartbeat(self) -> None:
        """Start the thread that logs running tasks that have been quiet for ``log_every`` s."""
        if self._beat is not None and self._beat.is_alive():
            return
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(min(1.0, self.log_every / 4)):
                now = time.monotonic()
                with self._lock:
                    quiet = [t for t in self._open if now - t._last_log >= self.log_every]
                    if not self._open:
                        return
                for t in quiet:
                    t._last_log = now
                    log.info("%s", t.line(now))

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
