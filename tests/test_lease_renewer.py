"""The lease renewer: a process that holds a lease and writes nothing keeps it alive.

A writer that is busy computing (a long training epoch, an explain block) makes no storage write
for minutes; only the background renewer keeps its lease from expiring so that a second writer
cannot take the store over. Checked in a child process with a 0.6 s lifetime: after 4 lifetimes
without a write, the lease document still names the child with an expiry in the future, read from
outside (this process), and a renewal happened (the expiry moved).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, time
from gexplain.storage import lease
url = sys.argv[1]
lease.hold(lease.lease_url(url, "store"), "exclusive", "renewer test", base=url)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _expiry(store: Path, pid: int) -> float:
    from gexplain.storage.lease import lease_url, read_holders

    mine = [h for h in read_holders(lease_url(str(store), "store")) if h.get("pid") == pid]
    assert mine, "the child's lease is gone: nothing renewed it"
    return float(mine[0]["expires"])


def test_an_idle_holder_keeps_its_lease(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    store.mkdir()
    env = {**os.environ, "GEXPLAIN_LEASE_TTL": "0.6"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), "6"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        first = _expiry(store, child.pid)
        time.sleep(2.4)  # 4 lifetimes without a write
        assert child.poll() is None
        later = _expiry(store, child.pid)
        assert later > time.time() and later > first, (first, later)
    finally:
        child.kill()
        child.wait()
