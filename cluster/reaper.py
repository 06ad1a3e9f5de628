"""A watchdog that makes the embedded Ray die with its driver.

Ray kills its own direct children (GCS, raylet) when the driver dies, but their children (the
dashboard and runtime-env agents, idle workers) notice only after about a minute. The embedded
runtime therefore starts this watchdog next to Ray: ``python -m gexplain.cluster.reaper ROOT_PID...``
with its stdin a pipe whose write end only the driver holds.

The watchdog blocks on that pipe. The kernel closes the write end when the driver exits, however it
dies (SIGKILL, crash, OOM kill), or the runtime closes it on a normal shutdown; the watchdog sees
end-of-file at once and kills every process it recorded under the Ray roots that is still alive.
No polling of the driver: between events it wakes every ``SNAPSHOT_S`` seconds only to record the
process trees under the roots (workers come and go), and exits quietly once every root has exited.
It only ever kills processes it saw under the roots, each checked by pid and start time, never by
name.
"""

from __future__ import annotations

import os
import select
import sys

import psutil

SNAPSHOT_S = 2.0


def _snapshot(roots: list[psutil.Process], seen: dict[int, float]) -> None:
    """Add every live process under ``roots`` (roots included) to ``seen`` as pid -> start time."""
    for root in roots:
        try:
            if not root.is_running():
                continue
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in family:
            try:
                seen.setdefault(proc.pid, proc.create_time())
            except psutil.Error:
                continue


def _kill_recorded(seen: dict[int, float]) -> int:
    """SIGKILL every recorded process still alive with the start time it had; return how many."""
    killed = 0
    for pid, started in seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started:
                proc.kill()
                killed += 1
        except psutil.Error:
            continue
    return killed


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _driver_gone(fd: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s on the driver's pipe; True once it is closed (end-of-file)."""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return False
    return os.read(fd, 4096) == b""  # the driver writes nothing; any byte is ignored


def watch(root_pids: list[int], fd: int = 0) -> int:
    """Record the process trees under ``root_pids``; when the pipe ``fd`` closes, kill them.

    Parameters
    ----------
    root_pids
        Ray's top-level processes (GCS server, raylet, monitors) started by the driver.
    fd
        The read end of the driver's pipe (default stdin).

    Returns
    -------
    int
        Number of processes killed (0 when every root exited on its own first).
    """
    roots = []
    for pid in root_pids:
        try:
            roots.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    seen: dict[int, float] = {}
    _snapshot(roots, seen)
    while True:
        if _driver_gone(fd, SNAPSHOT_S):
            _snapshot(roots, seen)
            return _kill_recorded(seen)
        if not any(_alive(root) for root in roots):
            return 0
        _snapshot(roots, seen)


def main(argv: list[str]) -> int:
    """Entry point: ``python -m gexplain.cluster.reaper ROOT_PID...`` (stdin: the driver's pipe)."""
    if not argv:
        print(
            "usage: python -m gexplain.cluster.reaper ROOT_PID... (stdin: the driver's pipe)", file=sys.stderr
        )
        return 2
    watch([int(p) for p in argv])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
