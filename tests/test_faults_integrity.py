"""Issue 11's numbered defects (and issue 13 items 7-8), one test each; every one fails on the code before.

1 root attrs survive a kill inside an append; 2 the runner replaces what its own stage wrote, and
refuses a foreign model set before any training; 3 a model set appears whole or not at all;
4 Ctrl-C exits 130 with a message; 5 writer leases (second writer exits 2 naming the holder, readers
never blocked, stale leases taken over, whole-run lease, memory:// object store); 6 one completion
flag per multi-part result and ``info`` states; 7 stale leftovers removed, ``gexplain gc``, no empty
parent folders from bad input; 8 binary garbage as CSV/GCT exits 2; 13.7 plain readers get numpy
unicode; 13.8 plain Zarr readers see no foreign file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from gexplain.pipelines.cli.main import main
from gexplain.storage import lease
from gexplain.storage.checkpoints import (
    ModelSetWriter,
    list_checkpoints,
    list_model_sets,
    read_model_set_report,
    save_checkpoint,
    save_model_set_report,
)
from gexplain.storage.errors import InputError
from gexplain.storage.lease import LeaseHeldError, hold_scope, hold_store, lease_url, release_all
from gexplain.storage.nodes import read_group, write_group
from gexplain.storage.paths import host_name, temp_name
from gexplain.storage.store import (
    BlockLedger,
    add_variables,
    begin_result_set,
    create_store,
    list_results,
    mark_result_complete,
    open_store,
    read_result,
    result_states,
    write_result,
)

pytestmark = pytest.mark.faults


@pytest.fixture(autouse=True)
def _no_leases_left() -> Iterator[None]:
    yield
    release_all()


def _store(url: str, n_s: int = 8, n_g: int = 6) -> str:
    writer = create_store(
        url,
        sample_ids=np.array([f"S{i}" for i in range(n_s)]),
        gene_ids=np.array([f"ENSG{i:05d}" for i in range(n_g)]),
        coords={
            "gene_symbol": ("gene", np.array([f"G{i}" for i in range(n_g)])),
            "sample_tissue": ("sample", np.array(["lung", "liver"] * (n_s // 2))),
        },
        layers={"counts": "int32"},
        chunks={"sample": 4, "gene": 3},
        attrs={"label_column": "sample_tissue"},
    )
    writer.write_block({}, {"counts": np.arange(n_s * n_g, dtype="int32").reshape(n_s, n_g)})
    writer.commit()
    release_all()
    return url


HOLDER = textwrap.dedent("""
    import sys, time
    from gexplain.storage import lease
    kind, url, arg = sys.argv[1:4]
    if kind == "store":
        lease.hold_store(url, arg)
    elif kind == "scope":
        lease.hold_scope(url, arg)
    else:
        lease.hold(url, "exclusive", "run folder")
    print("held", flush=True)
    time.sleep(120)
""")


@pytest.fixture()
def holder(tmp_path: Path) -> Iterator:
    """Start another process that holds a lease; yields a starter returning its pid."""
    procs: list[subprocess.Popen[str]] = []

    def start(kind: str, url: str, arg: str = "") -> int:
        script = tmp_path / "holder.py"
        script.write_text(HOLDER)
        proc = subprocess.Popen(
            [sys.executable, str(script), kind, url, arg],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "GEXPLAIN_LEASE_TTL": "30"},
            cwd=Path(__file__).resolve().parents[1],
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


# 1 -------------------------------------------------------------------------------------------


def test_root_attrs_survive_an_interrupt_inside_an_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    seen: list[dict] = []
    original = xr.Dataset.to_zarr

    def interrupted(self: xr.Dataset, store, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, store, *args, **kwargs)
        seen.append(dict(zarr.open_group(str(store), mode="r").attrs))
        raise KeyboardInterrupt  # Ctrl-C right after xarray rewrote the root attrs

    monkeypatch.setattr(xr.Dataset, "to_zarr", interrupted)
    new = xr.Dataset({"cpm": (("sample", "gene"), np.ones((8, 6), dtype="float32"))})
    with pytest.raises(KeyboardInterrupt):
        add_variables(url, new)
    assert (
        seen and seen[0].get("gexplain_complete") is True and seen[0].get("label_column") == "sample_tissue"
    )
    ds = open_store(url)  # still complete and readable; the half-added variable is hidden
    assert "cpm" not in ds and ds.attrs["label_column"] == "sample_tissue"


# 2 -------------------------------------------------------------------------------------------

RUN = """
[run]
name = "t"
out = "{out}"
store = "s.zarr"
seed = 0
[[stage]]
kind = "simulate"
[stage.params]
simulator = "cohort"
n_samples = 60
n_genes = 150
n_classes = 2
[[stage]]
kind = "train"
[stage.params]
replicates = 1
max_epochs = {epochs}
"""


def test_runner_reruns_replace_what_they_own_and_foreign_sets_are_refused_first(
    tmp_path: Path, ray_runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gexplain.pipelines.config import parse_config
    from gexplain.pipelines.progress import SILENT
    from gexplain.pipelines.runner import run_config

    cfg = tmp_path / "c.toml"
    for epochs in (2, 3, 2):  # a changed train parameter, then the original config again
        cfg.write_text(RUN.format(out=tmp_path / "run", epochs=epochs))
        out = run_config(parse_config(cfg), progress=SILENT, runtime=ray_runtime)
        assert "train" in out["ran"]
        store = str(tmp_path / "run" / "s.zarr")
        assert list_checkpoints(store, "default") == [0]
    # a fresh run folder does not own the store's model set: refused before any training
    import gexplain.pipelines.models.stage as train_stage

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("trained before checking the model set")

    monkeypatch.setattr(train_stage, "run_jobs", no_training)
    from gexplain.pipelines.models.stage import TrainStageParams, run_training

    with pytest.raises(InputError, match="model set 'default' already exists"):
        run_training(store, TrainStageParams(replicates=1, max_epochs=2), 0, runtime=None)


# 3 -------------------------------------------------------------------------------------------


def test_a_model_set_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gexplain.pipelines.models import replicates

    url = _store(str(tmp_path / "s.zarr"))
    calls = {"n": 0}

    def dies_on_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed while saving replicate 1 of 3
        return {"arch": "mlp"}

    monkeypatch.setattr(replicates, "checkpoint_metadata", dies_on_second)

    class Result:
        weights = b"w"

    with pytest.raises(KeyboardInterrupt):
        replicates.save_replicates(url, "m", None, None, [Result(), Result(), Result()], run_seed=0)  # type: ignore[arg-type]
    assert list_model_sets(url) == [] and list_checkpoints(url, "m") == []
    # an existing set is kept whole when its replacement dies half-way
    writer = ModelSetWriter(url, "m")
    for k in range(3):
        writer.add(k, b"old%d" % k, {})
    writer.commit()
    writer = ModelSetWriter(url, "m", overwrite=True)
    writer.add(0, b"new", {})
    assert list_checkpoints(url, "m") == [0, 1, 2]  # still the old, whole set
    writer.abort()
    assert list_checkpoints(url, "m") == [0, 1, 2]
    with pytest.raises(InputError, match="already exists"):
        ModelSetWriter(url, "m")


# 4 -------------------------------------------------------------------------------------------


def test_ctrl_c_exits_130_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import gexplain.pipelines.cli.info as info

    url = _store(str(tmp_path / "s.zarr"))

    def interrupted(_url: str) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(info, "describe_store", interrupted)
    assert main(["info", url]) == 130
    assert "interrupted; rerun to resume" in capsys.readouterr().err


def test_sigterm_exits_143(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    script = "import os, signal, gexplain.pipelines.cli.info as i\n"
    script += "i.describe_store = lambda u: os.kill(os.getpid(), signal.SIGTERM)\n"
    script += f"from gexplain.pipelines.cli.main import main\nraise SystemExit(main(['info', {url!r}]))\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143 and "interrupted; rerun to resume" in proc.stderr


# 5 -------------------------------------------------------------------------------------------


def test_second_writer_exits_2_naming_the_holder_and_readers_are_not_blocked(tmp_path: Path, holder) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    pid = holder("store", url, "exclusive")  # e.g. a normalize rewriting root variables
    ds = open_store(url)  # readers never wait
    assert ds.sizes["sample"] == 8 and main(["info", url]) == 0
    new = xr.Dataset({"cpm": (("sample", "gene"), np.ones((8, 6), dtype="float32"))})
    with pytest.raises(LeaseHeldError, match=rf"pid {pid}"):
        add_variables(url, new)
    with pytest.raises(LeaseHeldError, match=rf"pid {pid}"):
        write_result(url, "de/welch/x", xr.Dataset({"v": ("gene", np.zeros(6))}))
    assert main(["normalize", url, "--size-factors", "none"]) == 2


def test_normalize_under_a_running_explain_and_two_explains_of_one_name(tmp_path: Path, holder) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    pid = holder("scope", url, "results/explain/run1")  # an explain writing results/explain/run1
    new = xr.Dataset({"cpm": (("sample", "gene"), np.ones((8, 6), dtype="float32"))})
    with pytest.raises(LeaseHeldError, match=rf"pid {pid}"):
        add_variables(url, new)  # would change the layer under the explain
    with pytest.raises(LeaseHeldError, match=rf"pid {pid}"):
        BlockLedger(url, "explain/run1").mark_done("block-0")  # a second explain of the same name
    write_result(url, "explain/other", xr.Dataset({"v": ("gene", np.zeros(6))}))  # other names run alongside
    assert "explain/other" in list_results(url)
    states = {s["name"]: s for s in result_states(url)}
    assert states["explain/other"]["state"] == "complete"


def test_stale_leases_are_taken_over(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    folder = lease_url(url, "store")
    far = time.time() + 3600
    me = {"owner": "gexplain normalize", "mode": "exclusive", "acquired": time.time()}
    # killed on this host: its pid is gone, taken over at once
    write_group(
        folder,
        {
            "gexplain_lease": {
                "holders": {"t1": {**me, "host": host_name(), "pid": int(dead.stdout), "expires": far}}
            }
        },
    )
    hold_store(url, "exclusive")
    release_all()
    # another host: live until its expiry
    other = {**me, "host": "elsewhere", "pid": 1}
    write_group(folder, {"gexplain_lease": {"holders": {"t2": {**other, "expires": far}}}})
    with pytest.raises(LeaseHeldError, match="host elsewhere"):
        hold_store(url, "shared")
    write_group(folder, {"gexplain_lease": {"holders": {"t2": {**other, "expires": time.time() - 1}}}})
    hold_store(url, "shared")


def test_leases_are_renewed_while_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEXPLAIN_LEASE_TTL", "0.6")
    url = _store(str(tmp_path / "s.zarr"))
    hold_store(url, "exclusive")
    first = lease.read_holders(lease_url(url, "store"))[0]["expires"]
    deadline = time.monotonic() + 30
    renewed = first
    while renewed <= first + 0.1 and time.monotonic() < deadline:
        time.sleep(0.1)  # the renewer runs every ttl / 3 (a loaded machine may delay it)
        holders = read_group(lease_url(url, "store"))["gexplain_lease"]["holders"]
        renewed = max(float(h["expires"]) for h in holders.values())
    assert renewed > first + 0.1


def test_two_overlapping_runs_of_one_config(tmp_path: Path, holder) -> None:
    from gexplain.pipelines.config import parse_config
    from gexplain.pipelines.progress import SILENT
    from gexplain.pipelines.runner import run_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(RUN.format(out=tmp_path / "run", epochs=1))
    (tmp_path / "run").mkdir()
    pid = holder("run", str(tmp_path / "run" / ".lease"))
    with pytest.raises(LeaseHeldError, match=rf"pid {pid}"):
        run_config(parse_config(cfg), progress=SILENT, runtime=object())  # type: ignore[arg-type]
    assert not (tmp_path / "run" / "s.zarr").exists()


def test_leases_on_an_object_store() -> None:
    url = "memory://lease-test/s.zarr"
    _store(url)
    hold_scope(url, "results/explain/a")
    holders = lease.read_holders(lease_url(url, "results/explain/a"))
    assert [h["pid"] for h in holders] == [os.getpid()]
    release_all()
    folder = lease_url(url, "store")
    other = {
        "owner": "gexplain run",
        "mode": "exclusive",
        "host": "node-7",
        "pid": 9,
        "expires": time.time() + 60,
    }
    write_group(folder, {"gexplain_lease": {"holders": {"x": other}}})
    with pytest.raises(LeaseHeldError, match="node-7"):
        hold_scope(url, "results/explain/a")


# 6 -------------------------------------------------------------------------------------------


def test_one_flag_per_multi_part_result_and_info_states(tmp_path: Path, holder, capsys) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    table = xr.Dataset({"v": ("row", np.arange(3.0))})
    begin_result_set(url, "evaluate/default")
    write_result(url, "evaluate/default/ground_truth", table)  # killed before the second table
    release_all()
    assert list_results(url) == []  # a partial evaluation never counts
    states = {s["name"]: s["state"] for s in result_states(url)}
    assert states == {"evaluate/default": "incomplete"}
    save_checkpoint(url, "done", 0, b"w", {})
    write_group(str(tmp_path / "s.zarr" / "models" / "half"), {"gexplain_complete": False, "replicates": [0]})
    release_all()
    pid = holder("scope", url, "results/evaluate/default")  # a rerun is writing it now
    assert main(["info", url, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {m["name"]: m["state"] for m in d["models"]} == {"done": "complete", "half": "incomplete"}
    running = [r for r in d["result_states"] if r["name"] == "evaluate/default"][0]
    assert running["state"] == "running" and running["holder"]["pid"] == pid
    assert main(["info", url]) == 0
    text = capsys.readouterr().out
    assert "running" in text and f"pid {pid}" in text and "models/half" in text


def test_de_and_evaluation_sets_close_with_their_stage(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    begin_result_set(url, "de/welch")
    write_result(url, "de/welch/a_vs_b", xr.Dataset({"padj": ("gene", np.zeros(6))}))
    assert list_results(url, "de") == []
    mark_result_complete(url, "de/welch")
    assert list_results(url, "de") == ["de/welch/a_vs_b"]
    assert read_result(url, "de/welch/a_vs_b").sizes["gene"] == 6


# 7 -------------------------------------------------------------------------------------------


def _dead_pid() -> int:
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(out.stdout)


def test_stale_leftovers_are_removed_at_the_next_write_and_by_gc(tmp_path: Path, capsys) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    dead = _dead_pid()
    stale = tmp_path / f".s.zarr.partial-{host_name()}-{dead}-abc123"
    old = tmp_path / f".s.zarr.old-{host_name()}-{dead}-abc124"
    live = tmp_path / temp_name("s.zarr", "partial")  # this process: still writing
    for d in (stale, old, live):
        (d / "counts").mkdir(parents=True)
        (d / "counts" / "chunk").write_bytes(b"x" * 1000)
    add_variables(url, xr.Dataset({"cpm": (("sample", "gene"), np.ones((8, 6), dtype="float32"))}))
    assert not stale.exists() and not old.exists() and live.exists()
    release_all()
    models_tmp = tmp_path / "s.zarr" / "models" / f".m.partial-{host_name()}-{dead}-abc125"
    models_tmp.mkdir(parents=True)
    assert main(["gc", url, "--dry-run"]) == 0 and models_tmp.exists()
    assert main(["gc", url]) == 0
    out = capsys.readouterr().out
    assert f"removed {models_tmp}" in out and not models_tmp.exists() and live.exists()
    assert not (
        tmp_path / "s.zarr" / "models"
    ).exists()  # made by the killed writer, left without a group document
    assert main(["gc", str(tmp_path / "nothing.zarr")]) == 2


def test_bad_input_leaves_no_empty_parent_folders(tmp_path: Path) -> None:
    bad = tmp_path / "neg.csv"
    bad.write_text("gene_id,S1,S2\nENSG00000000001,4,5\nENSG00000000002,3,-5\n")
    assert main(["ingest", str(bad), "--out", str(tmp_path / "a" / "b" / "s.zarr")]) == 2
    assert not (tmp_path / "a").exists()


# 8 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".gct"])
def test_binary_garbage_as_a_text_table_exits_2_naming_the_file(tmp_path: Path, suffix: str, capsys) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    out = tmp_path / "x" / "s.zarr"
    assert main(["ingest", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert path.name in err.replace("\n", "") and "UTF-8" in err
    assert not (tmp_path / "x").exists()


# issue 13 items 7 and 8 ----------------------------------------------------------------------


def test_plain_readers_get_numpy_unicode_and_no_foreign_files(tmp_path: Path) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    write_result(
        url,
        "de/welch/x",
        xr.Dataset({"padj": ("gene", np.zeros(6))}, coords={"gene": [f"g{i}" for i in range(6)]}),
    )
    save_checkpoint(url, "default", 0, b"weights", {"genes": ["a"]})
    save_model_set_report(url, "default", "cv", {"accuracy": 0.5})
    assert read_model_set_report(url, "default", "cv") == {"accuracy": 0.5}
    BlockLedger(url, "explain/run1").mark_done("block-0", {"samples": [0, 4]})
    hold_store(url, "shared")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = xr.open_zarr(url, consolidated=False)
        assert plain["gene_symbol"].values.astype(str)[0] == "G0"
        assert plain["gene_symbol"].dtype.kind == "U" and plain["sample"].dtype.kind == "U"
        root = zarr.open_group(url, mode="r")
        names = [name for name, _ in root.members(max_depth=None)]
    assert "models/default/replicate-0" in names and "ledger/explain/run1/block-0" in names
    res = xr.open_zarr(url, group="results/de/welch/x", consolidated=False)
    assert res["gene"].dtype.kind == "U"
