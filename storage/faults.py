"""Fault injection for the fault suite: signal this process at the N-th storage write of a stage.

Every storage write (:func:`point`: atomic files, group documents, blocks, appends, result
regions, completion flags, renames) counts as one point of the current scope (the running stage's
kind, set by the runner with :func:`set_scope`). With ``GEXPLAIN_FAULT=<scope>:<n>:<signal>``
(signal ``KILL``, ``INT``, ``TERM`` or ``STOP``) the process sends itself that signal at point ``n``
of that scope -- a SIGKILL at an arbitrary write, a Ctrl-C, or a pause (``SIGSTOP``, continued by
the test with ``SIGCONT``: a writer paused past its lease) -- or, when the scope ends with fewer points
(a resumed stage writes less), as it ends. With ``GEXPLAIN_FAULT_TRACE=<file>`` it
appends ``<scope> <points>`` lines at exit, so a test can draw ``n`` from the points a stage has.
Unset (always, outside tests), :func:`point` only counts.

Only writes a stage makes count: the lease renewer's background writes (:func:`uncounted`) happen
on a clock, so counting them would make a stage's points depend on how long it ran, and a point
drawn from one run's trace would land elsewhere, or after the stage's end, in the next.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "GEXPLAIN_FAULT"
TRACE_ENV = "GEXPLAIN_FAULT_TRACE"

_scope = "-"
_counts: Counter[str] = Counter()
_local = threading.local()


def _spec() -> tuple[str, int, str] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    scope, n, sig = spec.split(":")
    return scope, int(n), sig


def _fire(sig: str) -> None:
    os.environ.pop(ENV, None)  # once
    os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))


def end_scope() -> None:
    """The current stage has done its work: signal now if it was chosen and ended before point ``n``.

    The runner calls this before it records the stage done, so a stage that wrote less than its
    trace (a resumed one) is interrupted while its rerun still has something to resume.
    """
    spec = _spec()
    if spec is not None and spec[0] == _scope and _counts[_scope] > 0:
        _fire(spec[2])


def set_scope(scope: str) -> None:
    """Name the stage whose writes are counted from now on (``"-"``: none)."""
    global _scope
    end_scope()
    _scope = scope or "-"


@contextmanager
def uncounted() -> Iterator[None]:
    """Writes made on this thread inside the block are not points (the lease renewer's); nests."""
    before = getattr(_local, "off", False)
    _local.off = True
    try:
        yield
    finally:
        _local.off = before


def point(label: str = "") -> None:
    """Count one storage write; deliver the configured signal when this is the chosen one."""
    if getattr(_local, "off", False):
        return
    _counts[_scope] += 1
    spec = _spec()
    if spec is not None and spec[0] == _scope and spec[1] == _counts[_scope]:
        _fire(spec[2])


def _trace() -> None:
    path = os.environ.get(TRACE_ENV)
    if path:
        with open(path, "a") as fh:
            for scope, count in sorted(_counts.items()):
                fh.write(f"{scope} {count}\n")


atexit.register(_trace)
