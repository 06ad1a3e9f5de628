"""Issue 20, fencing: generations, conditional lease writes, a paused writer that lost its lease.

The reference is the lease protocol's contract itself, observed from outside: who holds the lease
document, which generation it records, what a continued writer prints and what bytes it leaves.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr
from cluster_procs import BIN, free_port, start, tcp_open, wait_until
from gexplain.storage import lease
from gexplain.storage.backend import LocalBackend, backend_for
from gexplain.storage.lease import LeaseLostError, hold_store, lease_url, release_all
from gexplain.storage.nodes import group_doc, read_group
from gexplain.storage.store import add_variables, create_store, open_store

pytestmark = pytest.mark.faults


@pytest.fixture(autouse=True)
def _no_leases_left() -> Iterator[None]:
    yield
    release_all()


def _store(url: str) -> str:
    writer = create_store(
        url,
        sample_ids=np.array([f"S{i}" for i in range(8)]),
        gene_ids=np.array([f"ENSG{i:05d}" for i in range(6)]),
        coords={"sample_tissue": ("sample", np.array(["lung", "liver"] * 4))},
        layers={"counts": "int32"},
        chunks={"sample": 4, "gene": 3},
        attrs={"label_column": "sample_tissue"},
    )
    writer.write_block({}, {"counts": np.arange(48, dtype="int32").reshape(8, 6) + 1})
    writer.commit()
    release_all()
    return url


def _lease_doc(url: str) -> dict:
    return read_group(lease_url(url, "store"))["gexplain_lease"]


def _take_over(url: str, generation: int) -> None:
    """What another host's writer does once this process's record expired: replace it."""
    folder = lease_url(url, "store")
    other = {
        "token": "elsewhere-9-abc",
        "owner": "gexplain normalize",
        "host": "elsewhere",
        "pid": 9,
        "mode": "exclusive",
        "generation": generation,
        "acquired": time.time(),
        "expires": time.time() + 3600,
    }
    doc = {"generation": generation, "holders": {"elsewhere-9-abc": other}, "taken": other}
    backend_for(folder).write_atomic(f"{folder}/zarr.json", group_doc({"gexplain_lease": doc}))


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "leases" not in p.parts
    }


def test_generation_increases_at_every_acquisition(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    seen = []
    for _ in range(3):
        hold_store(url, "exclusive")
        doc = _lease_doc(url)
        (mine,) = doc["holders"].values()
        assert mine["generation"] == doc["generation"] and mine["pid"] == os.getpid()
        seen.append(doc["generation"])
        release_all()
    assert seen == sorted(seen) and len(set(seen)) == 3


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_writer_that_lost_its_lease_writes_nothing_and_names_the_new_holder(
    tmp_path: Path, where: str
) -> None:
    url = _store(str(tmp_path / "s.zarr") if where == "local" else f"memory://fence-{os.getpid()}/s.zarr")
    hold_store(url, "exclusive")
    generation = _lease_doc(url)["generation"]
    _take_over(url, generation + 1)
    lease.renew_all()  # the renewer wakes after the pause: it must not re-add its record
    doc = _lease_doc(url)
    assert list(doc["holders"]) == ["elsewhere-9-abc"] and doc["generation"] == generation + 1
    before = _tree_digest(tmp_path / "s.zarr") if where == "local" else None
    new = xr.Dataset({"cpm": (("sample", "gene"), np.ones((8, 6), dtype="float32"))})
    with pytest.raises(LeaseLostError, match=r"host elsewhere, pid 9") as err:
        add_variables(url, new)
    assert f"generation {generation}" in str(err.value)
    assert "cpm" not in open_store(url)
    if before is not None:
        assert _tree_digest(tmp_path / "s.zarr") == before  # not one byte written
    assert list(_lease_doc(url)["holders"]) == ["elsewhere-9-abc"]  # release leaves the new holder


def test_a_writer_past_its_expiry_rechecks_before_writing_a_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    monkeypatch.setenv("GEXPLAIN_LEASE_TTL", "3600")
    hold_store(url, "exclusive")
    held = lease._HELD[lease.lease_url(url, "store")]
    _take_over(url, held.generation + 1)
    held.expires = time.time() - 1  # as after a SIGSTOP longer than the lease: no renewal since
    with pytest.raises(LeaseLostError, match="host elsewhere"):
        lease.check_unexpired(url)  # what GuardedStore.set runs before every chunk


def _race(url: str, barrier: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    lease._TOKEN = f"racer-{os.getpid()}"  # a forked child is another writer
    lease._HELD.clear()
    time.sleep(max(0.0, barrier - time.time()))
    try:
        generation = lease._acquire(lease_url(url, "store"), "exclusive", "store", url)
        queue.put(("won", generation))
    except lease.LeaseHeldError:
        queue.put(("lost", 0))


def _race_winners(url: str, n: int = 4) -> list[tuple[str, int]]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    barrier = time.time() + 1.5
    procs = [ctx.Process(target=_race, args=(url, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    out = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return out


def test_only_one_of_racing_writers_takes_an_exclusive_lease(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    results = _race_winners(url)
    assert [r for r, _ in results].count("won") == 1, results


def test_local_conditional_write_refuses_a_stale_version(tmp_path: Path) -> None:
    backend = LocalBackend()
    target = str(tmp_path / "doc.json")
    assert backend.write_if(target, b"one", None)
    assert not backend.write_if(target, b"two", None)  # it exists now
    _, version = backend.read_versioned(target)
    assert backend.write_if(target, b"three", version)
    assert not backend.write_if(target, b"four", version)  # changed since that version
    assert Path(target).read_bytes() == b"three"


# -- through the CLI: SIGSTOP past the lease, another writer takes over, SIGCONT -------------------


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEXPLAIN_", "AWS_", "FSSPEC_"))}
    return {**env, "COLUMNS": "400", "GEXPLAIN_LEASE_TTL": "3", **extra}


def _paused_writer_case(tmp_path: Path, url: str, extra_args: list[str], env: dict[str, str]) -> None:
    gexplain = str(BIN / "gexplain")
    # A stops itself at its 3rd storage write: the store lease is taken, cpm not yet written
    a = start(
        [gexplain, "normalize", url, "--run-dir", str(tmp_path / "a"), *extra_args],
        tmp_path / "a.log",
        env={**env, "GEXPLAIN_FAULT": "-:3:STOP"},
    )
    try:
        wait_until(
            lambda: psutil.Process(a.popen.pid).status() == psutil.STATUS_STOPPED,
            a,
            "writer A",
            timeout=400,
        )
        time.sleep(4)  # past A's lease (ttl 3 s): it is stale now
        b = subprocess.run(
            [gexplain, "normalize", url, "--run-dir", str(tmp_path / "b"), *extra_args],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert b.returncode == 0, b.stdout + b.stderr
        after_b = open_store(url)
        stamp = after_b["cpm"].attrs["gexplain_written"]
        cpm = after_b["cpm"].values
        os.kill(a.popen.pid, signal.SIGCONT)
        assert a.popen.wait(timeout=300) != 0
        log = " ".join(a.log.read_text().split())  # one line, however the console wrapped it
        assert "lost its lease" in log and "took over" in log, log
        assert "gexplain normalize" in log.split("lost its lease", 1)[1]
        final = open_store(url)
        assert final["cpm"].attrs["gexplain_written"] == stamp  # B's variable, untouched by A
        np.testing.assert_array_equal(final["cpm"].values, cpm)
    finally:
        if a.popen.poll() is None:
            os.kill(a.popen.pid, signal.SIGCONT)
        a.stop()


def test_paused_writer_through_the_cli_local(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    before = {k: v for k, v in _tree_digest(tmp_path / "s.zarr").items() if k.startswith("counts")}
    _paused_writer_case(tmp_path, url, [], _cli_env())
    after = {k: v for k, v in _tree_digest(tmp_path / "s.zarr").items() if k.startswith("counts")}
    assert after == before


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server on 127.0.0.1 (stopped by PID) with one bucket; yields the endpoint."""
    tmp = tmp_path_factory.mktemp("moto")
    port = free_port()
    env = {**_cli_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], tmp / "moto.log", env=env)
    try:
        wait_until(lambda: tcp_open(port), proc, "moto_server", timeout=120)
        endpoint = f"http://127.0.0.1:{port}"
        import s3fs

        s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing").mkdir("gexplain-fence")
        yield endpoint
    finally:
        proc.stop()


@pytest.fixture
def s3_options(moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from gexplain.storage.options import set_storage_options

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    set_storage_options("s3://gexplain-fence/x", {"endpoint_url": moto})
    yield {"endpoint_url": moto}
    set_storage_options("s3://gexplain-fence/x", {})


@pytest.mark.cluster
def test_only_one_racing_writer_wins_on_s3(s3_options: dict[str, str]) -> None:
    url = _store(f"s3://gexplain-fence/race-{os.getpid()}.zarr")
    assert backend_for(url).atomic_conditional
    results = _race_winners(url)
    assert [r for r, _ in results].count("won") == 1, results


@pytest.mark.cluster
def test_paused_writer_through_the_cli_on_s3(tmp_path: Path, s3_options: dict[str, str]) -> None:
    url = _store(f"s3://gexplain-fence/paused-{os.getpid()}.zarr")
    env = _cli_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    option = ["--storage-option", f"endpoint_url={s3_options['endpoint_url']}"]
    _paused_writer_case(tmp_path, url, option, env)
