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
"""

from __future__ import annotations

import atexit
import os
import signal
from collections import Counter

ENV = "GEXPLAIN_FAULT"
TRACE_ENV = "GEXPLAIN_FAULT_TRACE"

_scope = "-"
_counts: Counter[str] = Counter()


def _spec() -> tuple[str, int, str] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    scope, n, sig = spec.split(":")
    return scope, int(n), sig


def _fire(sig: str) -> None:
    os.environ.pop(ENV, None)  # once
    os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))


def set_scope(scope: str) -> None:
    """Name the stage whose writes are counted from now on (``"-"``: none)."""
    global _scope
    spec = _spec()
    if spec is not None and spec[0] == _scope and _counts[_scope] > 0:
        _fire(spec[2])  # the chosen scope ended before its n-th write
    _scope = scope or "-"


def point(label: str = "") -> None:
    """Count one storage write; deliver the configured signal when this is the chosen one."""
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
