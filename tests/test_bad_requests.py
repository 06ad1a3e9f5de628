"""Issue 20, smaller cases: requests too big for the machine, a binary run config, a full disk.

Each case runs the real command (in process, through ``gexplain.pipelines.cli.main.main``) and
checks the exit code, that the message names what is at fault, and what is left on disk.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr.storage
from gexplain.pipelines.cli.main import main
from gexplain.storage.backend import LocalBackend
from gexplain.storage.errors import DiskFullError
from gexplain.storage.lease import release_all
from gexplain.storage.store import create_store, open_store

pytestmark = pytest.mark.faults


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "400")  # messages on one line
    yield
    release_all()


def test_simulate_refuses_a_cohort_too_big_for_memory_stating_the_bytes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "big.zarr"
    code = main(
        ["simulate", "cohort", "--out", str(out), "--samples", "1000000000000", "--run-dir", str(tmp_path)]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2, err
    # 1e12 samples x 64 bytes of ids and annotations alone: 6.4e13 bytes
    assert "--samples/--genes" in err and "bytes) of memory" in err
    needed = int(err.split("(", 1)[1].split(" bytes", 1)[0].replace(",", ""))
    assert needed >= 10**12 * 64
    assert not out.exists()


def test_simulate_refuses_a_cohort_too_big_for_the_disk(tmp_path: Path, capsys, monkeypatch) -> None:
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10 * 2**20))  # 10 MiB free
    out = tmp_path / "wide.zarr"
    # 20,000 x 60,000 x 12 bytes = 14.4 GB of layers: at least 1.8 GB stored, more than 10 MiB
    code = main(
        [
            "simulate",
            "cohort",
            "--out",
            str(out),
            "--samples",
            "20000",
            "--genes",
            "60000",
            "--run-dir",
            str(tmp_path),
        ]
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2, err
    assert "14,400,000,000 bytes" in err and "10.0 MiB free" in err and str(tmp_path) in err
    assert not out.exists()


def test_a_binary_run_config_exits_2_naming_the_file(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_bytes(b"[run]\nname = 'x'\n\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert main(["run", str(cfg)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(cfg) in err and "not a text file" in err and "line 3" in err


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


def test_disk_full_during_normalize_names_the_path_and_leaves_no_visible_variable(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _store(str(tmp_path / "s.zarr"))
    real_set = zarr.storage.LocalStore.set

    async def full(self, key, value):  # type: ignore[no-untyped-def]
        if "/c/" in key and key.startswith("cpm"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", full)
    assert main(["normalize", url, "--run-dir", str(tmp_path / "run")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no space left while writing" in err and url in err
    monkeypatch.setattr(zarr.storage.LocalStore, "set", real_set)
    plain = xr.open_zarr(url, consolidated=False, zarr_format=3)  # what a plain reader sees
    assert "cpm" not in plain and "size_factors" not in plain
    assert "cpm" not in open_store(url)
    np.testing.assert_array_equal(open_store(url)["counts"].values, np.arange(48).reshape(8, 6) + 1)


def test_disk_full_on_an_atomic_file_write_names_it_and_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=str(target)):
        LocalBackend().write_atomic(str(target), b"new content")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
