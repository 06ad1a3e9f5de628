"""A watchdog that makes the embedded Ray die with its driver.

Ray kills its own direct children (GCS, raylet) when the driver dies, but their children (the
dashboard and runtime-env agents, idle workers) notice only after about a minute. The embedded
runtime therefore starts this watchdog next to Ray: ``python -m gexplain.cluster.reaper DRIVER_PID ROOT_PID...``.

Every ``POLL_S`` seconds it records the process trees under the given Ray root processes. When the
driver is gone (SIGKILL, crash, OOM kill) it kills every recorded process that is still alive, so
nothing outlives the driver by more than a poll. When every root has exited on its own (a normal
``ray.shutdown``) it exits quietly. It only ever kills processes it saw under the roots, each checked
by pid and start time, never by name.
"""

from __future__ import annotations

import sys
import time

import psutil

POLL_S = 0.25


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


def watch(driver_pid: int, root_pids: list[int]) -> int:
    """Watch ``driver_pid``; when it dies, kill everything recorded under ``root_pids``.

    Parameters
    ----------
    driver_pid
        The process whose death ends the Ray session.
    root_pids
        Ray's top-level processes (GCS server, raylet, monitors) started by the driver.

    Returns
    -------
    int
        Number of processes killed (0 after a normal shutdown).
    """
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        driver = None
    roots = []
    for pid in root_pids:
        try:
            roots.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    seen: dict[int, float] = {}
    while True:
        if driver is None or not _alive(driver):
            _snapshot(roots, seen)
            return _kill_recorded(seen)
        if not any(_alive(root) for root in roots):
            return 0
        _snapshot(roots, seen)
        time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    """Entry point: ``python -m gexplain.cluster.reaper DRIVER_PID ROOT_PID...``."""
    if len(argv) < 2:
        print("usage: python -m gexplain.cluster.reaper DRIVER_PID ROOT_PID...", file=sys.stderr)
        return 2
    watch(int(argv[0]), [int(p) for p in argv[1:]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
