"""Normalization: size factors against R DESeq2, CPM/TPM/normalized counts against closed forms
and pydeseq2, the normalize stage and CLI."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.normalize.size_factors import median_of_ratios
from gexplain.pipelines.normalize.stage import STAGE, NormalizeParams
from gexplain.pipelines.normalize.transforms import cpm, log2p1, tpm
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.stages import StageContext
from gexplain.storage.errors import InputError
from gexplain.storage.store import create_store, open_store
from pydeseq2.preprocessing import deseq2_norm

REF = "pydeseq2-r-reference"
# (folder with the R size factors, folder with the counts)
CASES = [
    ("single_factor", "synthetic"),
    ("multi_factor", "synthetic"),
    ("continuous", "continuous"),
    ("large_counts", "large_counts"),
    ("wide", "wide"),
]


def _counts(shared: Path, folder: str) -> pd.DataFrame:
    """Counts as (sample, gene): the reference files are genes x samples."""
    return pd.read_csv(shared / REF / folder / "test_counts.csv", index_col=0).T


@pytest.mark.parametrize(("design", "folder"), CASES)
def test_ratio_size_factors_match_r(shared_data: Path, design: str, folder: str) -> None:
    counts = _counts(shared_data, folder)
    expected = pd.read_csv(shared_data / REF / design / "r_test_size_factors.csv", index_col=0).iloc[:, 0]
    expected = expected.loc[counts.index].to_numpy()
    got = median_of_ratios(counts.to_numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=0)
    # streamed: odd dask chunks and a row block of 3 samples give the same numbers
    lazy = da.from_array(counts.to_numpy(), chunks=(7, 3))
    streamed = median_of_ratios(lazy, block_bytes=3 * 8 * counts.shape[1])
    np.testing.assert_allclose(streamed, expected, rtol=1e-10, atol=0)


def test_poscounts_size_factors_match_r(shared_data: Path) -> None:
    counts = _counts(shared_data, "synthetic")
    assert (counts.to_numpy() == 0).any()  # the zeros are what poscounts handles differently
    expected = pd.read_csv(
        shared_data / REF / "single_factor" / "r_test_size_factors_poscount.csv", index_col=0
    )
    expected = expected.iloc[:, 0].loc[counts.index].to_numpy()
    for arr in (counts.to_numpy(), da.from_array(counts.to_numpy(), chunks=(9, 4))):
        got = median_of_ratios(arr, method="poscounts", block_bytes=8 * 5 * counts.shape[1])
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=0)


def test_ratio_with_a_zero_in_every_gene_says_use_poscounts() -> None:
    counts = np.array([[0, 5, 3], [4, 0, 2], [7, 1, 0]])
    with pytest.raises(InputError, match="poscounts"):
        median_of_ratios(counts)
    with pytest.raises(InputError, match="negative"):
        median_of_ratios(np.array([[1, 2], [-1, 3]]))


def _array(values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(da.from_array(values, chunks=(3, 4)), dims=("sample", "gene"))


def test_cpm_tpm_log2p1_closed_form() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(20, size=(7, 11)).astype(np.int64)
    lengths = rng.uniform(300, 9000, size=11)
    expected_cpm = counts / counts.sum(axis=1, keepdims=True) * 1e6
    rate = counts / lengths
    expected_tpm = rate / rate.sum(axis=1, keepdims=True) * 1e6
    got_cpm = cpm(_array(counts))
    got_tpm = tpm(_array(counts), xr.DataArray(lengths, dims=("gene",)))
    assert isinstance(got_cpm.data, da.Array)  # lazy
    np.testing.assert_allclose(got_cpm.values, expected_cpm, rtol=1e-12)
    np.testing.assert_allclose(got_tpm.values, expected_tpm, rtol=1e-12)
    np.testing.assert_allclose(got_tpm.values.sum(axis=1), 1e6, rtol=1e-12)
    np.testing.assert_allclose(log2p1(got_cpm).values, np.log2(expected_cpm + 1), rtol=1e-12)


def test_tpm_without_gene_length_says_how_to_supply_it() -> None:
    counts = _array(np.ones((3, 4), dtype=np.int64))
    with pytest.raises(InputError, match="gene_length"):
        tpm(counts, None)
    with pytest.raises(InputError, match="NaN"):
        tpm(counts, xr.DataArray(np.full(4, np.nan), dims=("gene",)))


def _store(tmp_path: Path, counts: pd.DataFrame, lengths: np.ndarray | None = None) -> str:
    url = str(tmp_path / "norm.zarr")
    coords = {"gene_symbol": ("gene", np.array([f"G{i}" for i in range(counts.shape[1])]))}
    if lengths is not None:
        coords["gene_length"] = ("gene", lengths)
    writer = create_store(
        url,
        sample_ids=counts.index.to_numpy(),
        gene_ids=counts.columns.to_numpy(),
        coords=coords,
        layers={"counts": "int64"},
        chunks={"sample": 16, "gene": 4},
    )
    writer.write_block({}, {"counts": counts.to_numpy()})
    return writer.commit()


def test_normalize_stage_writes_layers_matching_pydeseq2(shared_data: Path, tmp_path: Path) -> None:
    counts = _counts(shared_data, "synthetic")
    lengths = np.linspace(500.0, 5000.0, counts.shape[1])
    url = _store(tmp_path, counts, lengths)
    ctx = StageContext(
        run_dir=tmp_path / "run", store_url=url, seed=0, runtime=None, progress=Progress(enabled=False)
    )  # type: ignore[arg-type]
    params = NormalizeParams(size_factors="ratio", layers=["cpm", "tpm", "norm_counts"], log="tpm")
    outputs = STAGE.run(ctx, params)
    assert set(outputs["variables"]) == {"size_factors", "cpm", "tpm", "norm_counts", "log_expr"}
    ds = open_store(url)
    ref_norm, ref_sf = deseq2_norm(counts.to_numpy())
    r_sf = pd.read_csv(shared_data / REF / "single_factor" / "r_test_size_factors.csv", index_col=0)
    np.testing.assert_allclose(ds["size_factors"].values, r_sf.iloc[:, 0].loc[counts.index], rtol=1e-10)
    np.testing.assert_allclose(ds["size_factors"].values, ref_sf, rtol=1e-10)
    np.testing.assert_allclose(ds["norm_counts"].values, ref_norm, rtol=1e-6)  # stored as float32
    raw = counts.to_numpy().astype(np.float64)
    np.testing.assert_allclose(ds["cpm"].values, raw / raw.sum(1, keepdims=True) * 1e6, rtol=1e-6)
    rate = raw / lengths
    tpm_ref = rate / rate.sum(1, keepdims=True) * 1e6
    np.testing.assert_allclose(ds["log_expr"].values, np.log2(tpm_ref + 1), rtol=1e-6)
    assert ds["log_expr"].attrs["log_expr_source"] == "tpm"
    assert ds["cpm"].dtype == np.float32


def test_normalize_cli_bad_input_exits_2(shared_data: Path, tmp_path: Path) -> None:
    url = _store(tmp_path, _counts(shared_data, "synthetic"))
    assert main(["normalize", url, "--layers", "tpm"]) == 2  # no gene lengths
    assert main(["normalize", url, "--layers", "fpkm"]) == 2
    assert "cpm" not in open_store(url)  # nothing written
    assert main(["normalize", url, "--layers", "cpm", "--size-factors", "poscounts"]) == 0
    assert "cpm" in open_store(url)
