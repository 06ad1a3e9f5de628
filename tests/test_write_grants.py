"""Delegated writes: a worker process writes result regions under the leases another process holds.

The reference is the lease protocol observed from outside, with real processes: what the worker
leaves in the store, what the lease document records, and what a worker whose granter lost its
lease (taken over, or paused past its expiry) writes -- nothing.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from gexplain.storage.backend import backend_for
from gexplain.storage.lease import (
    LeaseLostError,
    WriteGrant,
    accept,
    grant,
    lease_url,
    read_holders,
    release_all,
)
from gexplain.storage.nodes import group_doc, read_group
from gexplain.storage.paths import join, normalize_url
from gexplain.storage.store import (
    BlockLedger,
    create_result,
    create_store,
    read_result,
    result_scope,
    write_result_region,
)

pytestmark = pytest.mark.faults

GROUP = "explain/granted"
N_SAMPLES, N_GENES, CHUNK = 8, 6, 4
SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter: another writer, with its own token


def _store(url: str) -> str:
    writer = create_store(
        url,
        sample_ids=np.array([f"S{i}" for i in range(N_SAMPLES)]),
        gene_ids=np.array([f"G{i}" for i in range(N_GENES)]),
        layers={"counts": "int32"},
        chunks={"sample": CHUNK, "gene": 3},
    )
    writer.write_block({}, {"counts": np.ones((N_SAMPLES, N_GENES), dtype="int32")})
    writer.commit()
    release_all()
    return url


def _create(url: str) -> None:
    """What the explain driver does: create the empty result (taking its leases)."""
    plane = np.zeros((N_SAMPLES, N_GENES), dtype="float32")
    template = xr.Dataset(
        {"attr": (("sample", "gene"), plane)},
        coords={"sample": [f"S{i}" for i in range(N_SAMPLES)], "gene": [f"G{i}" for i in range(N_GENES)]},
    ).chunk({"sample": CHUNK, "gene": 3})
    create_result(url, GROUP, template)


def _write_block(url: str, start: int) -> None:
    """What an explain actor does for one block: its rows (whole chunks), then its marker."""
    values = np.full((CHUNK, N_GENES), start + 1, dtype="float32")
    write_result_region(
        url, GROUP, {"sample": slice(start, start + CHUNK)}, {"attr": values}, whole_chunks=True
    )
    BlockLedger(url, GROUP).mark_done(f"block-{start}", {"writer": os.getpid()})


def _worker(url: str, grants: tuple[WriteGrant, ...], start: int, queue: Any) -> None:
    accept(grants)
    try:
        _write_block(url, start)
        queue.put(("written", os.getpid()))
    except LeaseLostError as exc:
        queue.put(("lost", str(exc)))


def _in_worker(url: str, grants: tuple[WriteGrant, ...], start: int) -> tuple[str, Any]:
    queue = SPAWN.Queue()
    proc = SPAWN.Process(target=_worker, args=(url, grants, start, queue))
    proc.start()
    try:
        return queue.get(timeout=300)
    finally:
        proc.join(timeout=60)


def _granter(url: str, queue: Any) -> None:
    _create(url)
    queue.put(grant(url, result_scope(GROUP)))
    time.sleep(600)  # holds (and renews) its leases until stopped or killed by the test


def _result_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "leases" not in p.parts
    }


def _attr(url: str) -> np.ndarray:
    return read_result(url, GROUP, allow_incomplete=True)["attr"].values


def test_a_worker_writes_its_block_under_the_granted_leases(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    _create(url)
    outcome, pid = _in_worker(url, grant(url, result_scope(GROUP)), 4)
    assert outcome == "written" and pid != os.getpid()
    attr = _attr(url)
    np.testing.assert_array_equal(attr[4:], np.full((4, N_GENES), 5.0))
    assert np.isnan(attr[:4]).all()  # never written: the fill value
    marker = read_group(join(url, "ledger", GROUP, "block-4"))
    assert marker is not None and marker["writer"] == pid
    for scope in ("store", "results/explain/granted"):  # the worker never entered the lease documents
        assert [h["pid"] for h in read_holders(lease_url(url, scope))] == [os.getpid()]


def test_a_worker_whose_granter_lost_the_lease_writes_nothing(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    _create(url)
    grants = grant(url, result_scope(GROUP))
    folder = lease_url(url, "results/explain/granted")
    doc = read_group(folder)["gexplain_lease"]
    other = {
        "token": "elsewhere-9-abc",
        "owner": "gexplain explain",
        "host": "elsewhere",
        "pid": 9,
        "mode": "exclusive",
        "generation": doc["generation"] + 1,
        "acquired": time.time(),
        "expires": time.time() + 3600,
    }
    taken = {"generation": doc["generation"] + 1, "holders": {"elsewhere-9-abc": other}, "taken": other}
    backend_for(folder).write_atomic(f"{folder}/zarr.json", group_doc({"gexplain_lease": taken}))
    before = _result_digest(tmp_path / "s.zarr")
    outcome, message = _in_worker(url, grants, 0)
    assert outcome == "lost" and "host elsewhere, pid 9" in message
    assert _result_digest(tmp_path / "s.zarr") == before  # not one byte: no chunk, no marker


def test_a_worker_stops_writing_once_its_paused_granter_lets_the_lease_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    monkeypatch.setenv("GEXPLAIN_LEASE_TTL", "2")  # the granter's lease lifetime
    queue = SPAWN.Queue()
    granter = SPAWN.Process(target=_granter, args=(url, queue))
    granter.start()
    try:
        accept(queue.get(timeout=300))  # this process is the worker now
        _write_block(url, 0)
        os.kill(granter.pid, signal.SIGSTOP)  # it renews no more
        time.sleep(3)  # past the last expiry it confirmed
        before = _result_digest(tmp_path / "s.zarr")
        with pytest.raises(LeaseLostError, match="no longer holds its lease"):
            _write_block(url, 4)
        assert _result_digest(tmp_path / "s.zarr") == before
        attr = _attr(url)
        np.testing.assert_array_equal(attr[:4], np.ones((4, N_GENES)))
        assert np.isnan(attr[4:]).all()
    finally:
        granter.kill()
        granter.join(timeout=60)


def test_a_worker_stops_writing_at_once_when_its_granter_on_this_host_dies(tmp_path: Path) -> None:
    """A killed granter's lease is free to a rerun on its host at once, so its workers stop at once too."""
    url = _store(str(tmp_path / "s.zarr"))
    queue = SPAWN.Queue()
    granter = SPAWN.Process(target=_granter, args=(url, queue))
    granter.start()
    try:
        accept(queue.get(timeout=300))
        _write_block(url, 0)
        granter.kill()
        granter.join(timeout=60)
        before = _result_digest(tmp_path / "s.zarr")
        with pytest.raises(LeaseLostError, match="has exited"):
            _write_block(url, 4)  # well within the 60 s lifetime it last confirmed
        assert _result_digest(tmp_path / "s.zarr") == before
    finally:
        granter.kill()
        granter.join(timeout=60)


def test_only_the_store_and_the_written_scope_are_granted(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    _create(url)
    granted = {g.url for g in grant(url, result_scope(GROUP))}
    assert granted == {normalize_url(lease_url(url, s)) for s in ("store", result_scope(GROUP))}
    with pytest.raises(RuntimeError, match="hold_scope first"):
        grant(url, result_scope("explain/other"))
    release_all()


def test_a_region_that_cuts_a_chunk_is_refused_before_any_write(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    _create(url)
    before = _result_digest(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match=r"attr: region sample\[2:6\] is not made of whole chunks of 4"):
        write_result_region(
            url, GROUP, {"sample": slice(2, 6)}, {"attr": np.ones((4, N_GENES), "float32")}, whole_chunks=True
        )
    assert _result_digest(tmp_path / "s.zarr") == before
