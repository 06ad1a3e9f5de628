"""Expression store: round trip, memory://, atomicity under a killed writer, results, ledgers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr
from gexplain.storage.errors import IncompleteStoreError, InputError
from gexplain.storage.schema import validate
from gexplain.storage.store import (
    BlockLedger,
    add_variables,
    create_store,
    list_results,
    open_store,
    read_result,
    write_result,
)


def _make(url: str, data: np.ndarray, **kw) -> None:
    n_s, n_g = data.shape
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
        **kw,
    )
    for start in range(0, n_s, 4):
        writer.write_block({"sample": slice(start, start + 4)}, {"counts": data[start : start + 4]})
    writer.commit()


@pytest.mark.parametrize("url", ["local", "memory://gexplain-test/store.zarr"])
def test_round_trip_local_and_memory(tmp_path, url):
    url = str(tmp_path / "s.zarr") if url == "local" else url
    rng = np.random.default_rng(0)
    data = rng.poisson(5, size=(10, 7)).astype("int32")
    _make(url, data, overwrite=True)
    ds = open_store(url)
    np.testing.assert_array_equal(ds["counts"].values, data)
    assert ds["counts"].encoding["chunks"] == (4, 3)
    assert list(ds["sample_tissue"].values[:2]) == ["lung", "liver"]
    assert ds.attrs["gexplain_complete"] is True and "created" in ds.attrs
    validate(ds, require=("counts",))


def test_add_variables_lazy_and_visible_only_when_written(tmp_path):
    url = str(tmp_path / "s.zarr")
    data = np.arange(70, dtype="int32").reshape(10, 7)
    _make(url, data)
    ds = open_store(url)
    add_variables(url, xr.Dataset({"cpm": (("sample", "gene"), (ds["counts"] * 2.0).astype("float32").data)}))
    out = open_store(url)
    np.testing.assert_allclose(out["cpm"].values, data * 2.0)
    assert out["counts"].encoding["chunks"] == out["cpm"].encoding["chunks"]


def test_killed_writer_leaves_no_complete_store_and_keeps_old_one(tmp_path):
    url = str(tmp_path / "s.zarr")
    old = np.ones((8, 6), dtype="int32")
    _make(url, old)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from gexplain.storage.store import create_store
        w = create_store({url!r}, sample_ids=np.array([f"S{{i}}" for i in range(8)]),
                         gene_ids=np.array([f"E{{i}}" for i in range(6)]), layers={{"counts": "int32"}},
                         chunks={{"sample": 4, "gene": 3}}, overwrite=True)
        w.write_block({{"sample": slice(0, 4)}}, {{"counts": np.full((4, 6), 7)}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    ds = open_store(url)  # the old store is intact
    np.testing.assert_array_equal(ds["counts"].values, old)
    partial = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert partial, "the killed writer wrote into a temporary sibling"


def test_incomplete_store_in_place_is_refused(tmp_path):
    url = "memory://gexplain-test/incomplete.zarr"
    writer = create_store(
        url,
        sample_ids=np.array(["a", "b"]),
        gene_ids=np.array(["g"]),
        layers={"counts": "int32"},
        overwrite=True,
    )
    writer.write_block({}, {"counts": np.array([[1], [2]])})
    with pytest.raises(IncompleteStoreError, match="incomplete"):
        open_store(url)
    assert open_store(url, allow_incomplete=True).sizes["sample"] == 2


def test_existing_store_not_overwritten_without_flag(tmp_path):
    url = str(tmp_path / "s.zarr")
    _make(url, np.zeros((4, 3), dtype="int32"))
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        _make(url, np.zeros((4, 3), dtype="int32"))


def test_schema_rejects_undeclared_and_misdimensioned(tmp_path):
    ds = xr.Dataset(
        {
            "weird": ("sample", [1, 2]),
            "gene_symbol": ("sample", ["a", "b"]),
            "counts": (("sample", "gene"), [[0.5], [1.0]]),
        },
        coords={"sample": ["a", "a"], "gene": ["g"]},
    )
    with pytest.raises(InputError) as err:
        validate(ds, require=("tpm",), where="x.zarr")
    msg = str(err.value)
    for needle in (
        "'weird' is not declared",
        "'gene_symbol' has dims ('sample',)",
        "'counts' has dtype float64",
        "required variable 'tpm'",
        "duplicate sample ids",
    ):
        assert needle in msg


def test_results_and_ledger(tmp_path):
    url = str(tmp_path / "s.zarr")
    _make(url, np.zeros((4, 3), dtype="int32"))
    write_result(url, "de/welch/a_vs_b", xr.Dataset({"pvalue": ("gene", [0.1, 0.2, 0.3])}))
    assert list_results(url) == ["de/welch/a_vs_b"]
    assert list_results(url, "explain") == []
    np.testing.assert_allclose(read_result(url, "de/welch/a_vs_b")["pvalue"].values, [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="results present: de/welch/a_vs_b"):
        read_result(url, "de/nope")
    ledger = BlockLedger(url, "explain/run1")
    assert ledger.done_keys() == set()
    ledger.mark_done("block-0/model-1", {"rows": 4})
    assert ledger.is_done("block-0/model-1") and not ledger.is_done("block-1/model-1")
    assert ledger.done_keys() == {"block-0/model-1"}


def test_add_variables_refuses_misaligned_ids(tmp_path):
    url = str(tmp_path / "s.zarr")
    _make(url, np.zeros((4, 3), dtype="int32"))
    ds = open_store(url)
    flipped = xr.Dataset(
        {"cpm": (("sample", "gene"), np.ones((4, 3), "float32"))},
        coords={"sample": ds["sample"].values[::-1], "gene": ds["gene"].values},
    )
    with pytest.raises(InputError, match="sample ids differ"):
        add_variables(url, flipped)
    add_variables(url, flipped.assign_coords(sample=ds["sample"].values))
    first = open_store(url)["cpm"].attrs["gexplain_written"]
    add_variables(url, flipped.assign_coords(sample=ds["sample"].values))
    assert open_store(url)["cpm"].attrs["gexplain_written"] != first
