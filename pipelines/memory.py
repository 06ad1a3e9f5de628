"""Peak memory of a piece of work: resident memory of this process and all its descendants
(Ray's raylet and workers, Dask worker processes), sampled in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


def tree_rss(proc: psutil.Process | None = None) -> int:
    """Return the summed resident set size in bytes of ``proc`` (default: this process) and its descendants."""
    proc = proc or psutil.Process()
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class PeakMemory:
    """Context manager recording the peak of :func:`tree_rss` while it is open.

    Attributes
    ----------
    peak_bytes
        Highest sampled RSS of the process tree, in bytes.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, tree_rss())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, tree_rss())
