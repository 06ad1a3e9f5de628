"""Fault injection for the fault suite: signal this process at the N-th storage write of a stage.

Every storage write (:func:`point`: atomic files, group documents, blocks, appends, result
regions, completion flags, renames) counts as one point of the current scope (the running stage's
kind, set by the runner with :func:`set_scope`). With ``GEXPLAIN_FAULT=<scope>:<n>:<signal>``
(signal ``KILL``, ``INT`` or ``TERM``) the process sends itself that signal at point ``n`` of that
scope: a SIGKILL at an arbitrary write, or a Ctrl-C. With ``GEXPLAIN_FAULT_TRACE=<file>`` it
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


def set_scope(scope: str) -> None:
    """Name the stage whose writes are counted from now on."""
    global _scope
    _scope = scope or "-"


def point(label: str = "") -> None:
    """Count one storage write; deliver the configured signal when this is the chosen one."""
    _counts[_scope] += 1
    spec = os.environ.get(ENV)
    if not spec:
        return
    scope, n, sig = spec.split(":")
    if scope == _scope and int(n) == _counts[_scope]:
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))


def _trace() -> None:
    path = os.environ.get(TRACE_ENV)
    if path:
        with open(path, "a") as fh:
            for scope, count in sorted(_counts.items()):
                fh.write(f"{scope} {count}\n")


atexit.register(_trace)
