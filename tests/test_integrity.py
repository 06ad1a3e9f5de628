"""Issue 20, verified reads: deleted, flipped and truncated chunks of counts and attributions.

The reference is the Zarr v3 spec of the ``crc32c`` codec (read from each array's ``zarr.json``
directly, not through gexplain) and the damage done to the chunk files by the test itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from gexplain.pipelines.cli.main import main
from gexplain.storage.checkpoints import load_checkpoint, save_checkpoint
from gexplain.storage.errors import DamagedStoreError
from gexplain.storage.lease import release_all
from gexplain.storage.store import (
    add_variables,
    create_result,
    create_store,
    mark_result_complete,
    open_store,
    read_result,
    write_result_region,
)

pytestmark = pytest.mark.faults

N_S, N_G = 8, 6
ATTR = "results/explain/run1/attr_ig"


@pytest.fixture(autouse=True)
def _no_leases_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "300")  # tables: one row per line
    yield
    release_all()


def _store(path: Path, *, zero_block: bool = False) -> str:
    url = str(path)
    writer = create_store(
        url,
        sample_ids=np.array([f"S{i}" for i in range(N_S)]),
        gene_ids=np.array([f"ENSG{i:05d}" for i in range(N_G)]),
        coords={"sample_tissue": ("sample", np.array(["lung", "liver"] * (N_S // 2)))},
        layers={"counts": "int32"},
        chunks={"sample": 4, "gene": 3},
        attrs={"label_column": "sample_tissue"},
    )
    counts = np.arange(N_S * N_G, dtype="int32").reshape(N_S, N_G) + 1
    if zero_block:
        counts[:4, 3:] = 0  # one chunk holds only the fill value
    writer.write_block({}, {"counts": counts})
    writer.commit()
    template = xr.Dataset(
        {"attr_ig": (("sample", "gene"), np.zeros((N_S, N_G), dtype="float32"))},
        coords={"sample": [f"S{i}" for i in range(N_S)], "gene": [f"ENSG{i:05d}" for i in range(N_G)]},
    )
    create_result(url, "explain/run1", template.chunk({"sample": 4}), chunks={"sample": 4, "gene": 3})
    for start in (0, 4):
        block = np.full((4, N_G), 0.5 + start, dtype="float32")
        write_result_region(url, "explain/run1", {"sample": slice(start, start + 4)}, {"attr_ig": block})
    mark_result_complete(url, "explain/run1")
    release_all()
    return url


def _damage(chunk: Path, how: str) -> None:
    data = chunk.read_bytes()
    if how == "delete":
        chunk.unlink()
    elif how == "flip":
        middle = len(data) // 2
        chunk.write_bytes(data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :])
    else:
        chunk.write_bytes(data[: len(data) - 3])


def _read_counts(url: str) -> np.ndarray:
    return open_store(url)["counts"].values


def _read_attr(url: str) -> np.ndarray:
    return read_result(url, "explain/run1")["attr_ig"].values


def test_every_array_is_checksummed_and_every_chunk_written(tmp_path: Path) -> None:
    url = _store(tmp_path / "s.zarr", zero_block=True)
    add_variables(url, xr.Dataset({"cpm": (("sample", "gene"), np.full((N_S, N_G), np.nan, "float32"))}))
    save_checkpoint(url, "m", 0, b"weights", {})
    docs = [p for p in (tmp_path / "s.zarr").rglob("zarr.json") if "leases" not in p.parts]
    arrays = [json.loads(p.read_text()) for p in docs]
    arrays = [(p, d) for p, d in zip(docs, arrays, strict=True) if d["node_type"] == "array"]
    assert len(arrays) >= 7
    for path, doc in arrays:
        names = [c["name"] for c in doc["codecs"]]
        assert names[-1] == "crc32c", (path, names)  # the spec: a checksum over the encoded chunk
    # a chunk of zeros and an all-NaN layer are on disk, so an absent chunk can only be damage
    assert (tmp_path / "s.zarr" / "counts" / "c" / "0" / "1").is_file()
    assert len(list((tmp_path / "s.zarr" / "cpm" / "c").rglob("*"))) == 2 + 4  # 2 row folders, 4 chunks
    np.testing.assert_array_equal(_read_counts(url)[:4, 3:], 0)
    assert load_checkpoint(url, "m", 0)[0] == b"weights"


@pytest.mark.parametrize("how", ["delete", "flip", "truncate"])
@pytest.mark.parametrize(
    ("array", "index", "read", "stage"),
    [
        ("counts", "1/1", _read_counts, "ingest or simulate"),
        (ATTR, "1/0", _read_attr, "gexplain explain"),
    ],
)
def test_a_damaged_chunk_is_an_error_naming_store_array_chunk_and_stage(
    tmp_path: Path, how: str, array: str, index: str, read, stage: str
) -> None:
    url = _store(tmp_path / "s.zarr")
    _damage(tmp_path / "s.zarr" / array / "c" / index, how)
    with pytest.raises(DamagedStoreError) as err:
        read(url)
    message = str(err.value)
    assert url in message and f"chunk {index.replace('/', '.')} of array '{array}'" in message
    assert stage in message and "gexplain verify" in message
    assert ("missing" if how == "delete" else "CRC-32C mismatch") in message


@pytest.mark.parametrize("how", ["delete", "flip"])
def test_export_refuses_a_store_with_a_damaged_chunk(tmp_path: Path, how: str, capsys) -> None:
    url = _store(tmp_path / "s.zarr")
    chunk = tmp_path / "s.zarr" / ("counts/c/0/0" if how == "delete" else f"{ATTR}/c/0/1")
    _damage(chunk, how)
    out = tmp_path / "x.h5ad"
    assert main(["export", url, "--h5ad", str(out)]) == 2
    assert "is damaged" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("how", ["delete", "flip"])
def test_nothing_is_written_by_a_stage_whose_input_is_damaged(tmp_path: Path, how: str) -> None:
    url = _store(tmp_path / "s.zarr")
    _damage(tmp_path / "s.zarr" / "counts" / "c" / "0" / "1", how)

    def digest() -> dict[str, str]:
        root = tmp_path / "s.zarr"
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*")
            if p.is_file() and "leases" not in p.parts
        }

    before = digest()
    assert main(["normalize", url, "--run-dir", str(tmp_path / "run")]) == 2
    assert digest() == before


def test_verify_prints_a_table_records_it_and_info_shows_it(tmp_path: Path, capsys) -> None:
    url = _store(tmp_path / "s.zarr")
    assert main(["verify", url, "--json"]) == 0
    good = json.loads(capsys.readouterr().out)
    assert good["state"] == "ok" and good["chunks"] == sum(r["chunks"] for r in good["reports"])
    by_name = {r["array"]: r for r in good["reports"]}
    assert by_name["counts"]["chunks"] == 4 and by_name[ATTR]["ok"] == 4
    _damage(tmp_path / "s.zarr" / ATTR / "c" / "1" / "0", "truncate")
    _damage(tmp_path / "s.zarr" / "counts" / "c" / "0" / "0", "delete")
    assert main(["verify", url]) == 3
    table = capsys.readouterr().out
    assert "damaged" in table and "gexplain explain" in table and "0.0" in table and "1.0" in table
    assert main(["info", url]) == 2  # the store cannot be opened: a counts chunk is missing
    assert "chunk 0.0 of array 'counts'" in " ".join(capsys.readouterr().err.split())
    (tmp_path / "s.zarr" / ATTR / "c" / "1" / "0").unlink()
    from gexplain.storage.integrity import last_verification

    assert last_verification(url)["state"] == "damaged"


def test_an_old_store_without_checksums_reads_and_is_unverifiable(tmp_path: Path, capsys) -> None:
    url = str(tmp_path / "old.zarr")
    ds = xr.Dataset(
        {"counts": (("sample", "gene"), np.arange(N_S * N_G, dtype="int32").reshape(N_S, N_G))},
        coords={"sample": [f"S{i}" for i in range(N_S)], "gene": [f"G{i}" for i in range(N_G)]},
        attrs={"gexplain_complete": True, "gexplain_variables": ["counts"]},
    )
    ds.chunk({"sample": 4, "gene": 3}).to_zarr(url, zarr_format=3, consolidated=False)  # plain xarray
    np.testing.assert_array_equal(_read_counts(url), ds["counts"].values)
    assert main(["verify", url]) == 0
    out = capsys.readouterr().out
    assert "unverifiable" in out
    assert main(["info", url]) == 0
    assert "last verification: unverifiable" in capsys.readouterr().out
