"""Issue 21: the watchdog of the embedded Ray notices its driver's death through a pipe (no polling
of the driver) and kills what it recorded under the roots; after the roots exit it exits quietly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil

DRIVER = """
import json, subprocess, sys, time
root = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"])
time.sleep(1.0)  # the root has started its child
reaper = subprocess.Popen([sys.executable, "-m", "gexplain.cluster.reaper", str(root.pid)], stdin=subprocess.PIPE)
time.sleep(1.0)  # the reaper has recorded the tree
family = [root.pid] + [c.pid for c in __import__("psutil").Process(root.pid).children(recursive=True)]
print(json.dumps({"family": family, "reaper": reaper.pid}), flush=True)
time.sleep(600)
"""


def _gone(pids: list[int], deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        alive = [
            p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_the_family_dies_when_the_driver_is_killed() -> None:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(driver.stdout.readline())
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert len(info["family"]) == 2  # the root and its child
    assert _gone(info["family"], 20), "the watchdog did not kill the root's family"
    assert _gone([info["reaper"]], 20), "the watchdog outlived its work"


def test_the_watchdog_exits_quietly_after_the_roots() -> None:
    root = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    reaper = subprocess.Popen(
        [sys.executable, "-m", "gexplain.cluster.reaper", str(root.pid)], stdin=subprocess.PIPE
    )
    try:
        root.wait()
        assert reaper.wait(timeout=30) == 0
    finally:
        reaper.stdin.close()
        if reaper.poll() is None:
            reaper.kill()
