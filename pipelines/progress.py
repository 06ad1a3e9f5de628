"""Progress reporting, the one mechanism every stage uses.

A stage receives a :class:`Progress` (``StageContext.progress``), opens a :meth:`Progress.task` per
piece of work and calls :meth:`Task.advance` (items finished) or :meth:`Task.report` (absolute
``done, total``: the callback that storage-level code, which cannot import pipelines, is given).
Library functions default to :data:`SILENT`.

One default, ``Progress()``: live bars when stderr is a terminal, quiet otherwise (status lines from
:meth:`Progress.print` still appear). ``Progress(enabled=True)`` asks for a log line every
``log_every`` seconds in batch jobs; ``Progress(enabled=False)`` prints nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

log = logging.getLogger("gexplain")


@dataclass
class Task:
    """One unit of tracked work; call :meth:`advance` as items finish."""

    description: str
    total: float | None
    _owner: Progress
    _id: int | None = None
    done: float = 0.0
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


class Progress:
    """Progress bars on a terminal; quiet, or one log line every ``log_every`` seconds, otherwise.

    Parameters
    ----------
    enabled
        ``None`` (default): bars on a terminal, no task output otherwise. ``True``: bars on a
        terminal, log lines otherwise. ``False``: nothing at all (tests, library use).
    log_every
        Seconds between log lines when ``enabled=True`` and stderr is not a terminal.
    """

    def __init__(self, *, enabled: bool | None = None, log_every: float = 30.0) -> None:
        tty = sys.stderr.isatty()
        self.enabled = enabled is not False
        self.log_tasks = enabled is True and not tty
        self.log_every = log_every
        self.console = Console(stderr=True)
        self.interactive = self.enabled and tty
        self._rich: RichProgress | None = None

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        """Track one piece of work with an optional known ``total``."""
        task = Task(description, total, self)
        start = time.monotonic()
        if self.interactive:
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
        try:
            yield task
        finally:
            if self._rich is not None and task._id is not None:
                self._rich.update(task._id, completed=task.done)
            if self.log_tasks:
                log.info("%s: done %s in %.1f s", description, _fmt(task), time.monotonic() - start)

    def _update(self, task: Task) -> None:
        if not self.enabled:
            return
        if self._rich is not None and task._id is not None:
            self._rich.update(task._id, completed=task.done, total=task.total)
        elif self.log_tasks and time.monotonic() - task._last_log >= self.log_every:
            task._last_log = time.monotonic()
            log.info("%s: %s", task.description, _fmt(task))

    def print(self, message: str) -> None:
        """Print a status line (above any bars)."""
        if self.enabled:
            self.console.print(message)

    def close(self) -> None:
        """Stop the live display."""
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


def _fmt(task: Task) -> str:
    if task.total:
        return f"{task.done:g}/{task.total:g} ({100 * task.done / task.total:.0f}%)"
    return f"{task.done:g}"


SILENT = Progress(enabled=False)
