"""``gexplain export``: the store round-trips through anndata (h5ad and zarr) and scanpy reads it."""

from __future__ import annotations

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.stage import EvaluateParams
from gexplain.pipelines.evaluate.tables import read_tables
from gexplain.storage.store import open_store, read_result, write_result
from scipy.stats import ttest_ind
from test_evaluate_store import make_demo_store


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    path = tmp_path_factory.mktemp("export")
    url = make_demo_store(path)
    ds = open_store(url)
    part = xr.Dataset(  # a run over a subset of samples and genes: NaN elsewhere in its layer
        {"attr_deeplift": (("sample", "gene"), np.arange(12, dtype=np.float32).reshape(3, 4))},
        coords={"sample": ["s005", "s001", "s030"], "gene": ["g03", "g00", "g49", "g10"]},
        attrs={"explainers": ["deeplift"]},
    )
    write_result(url, "explain/part", part)
    evaluate_store(url, EvaluateParams(k=5, faithfulness_samples=8, faithfulness_perturbations=4, n_random=1))
    assert ds.sizes["sample"] == 40
    h5ad, zarr = path / "out" / "cohort.h5ad", path / "out" / "cohort.zarr"
    args = [
        "export",
        url,
        "--h5ad",
        str(h5ad),
        "--zarr",
        str(zarr),
        "--layer",
        "log_expr",
        "--attribution-std",
    ]
    assert main(args) == 0
    return url, h5ad, zarr


def _check(adata: anndata.AnnData, url: str) -> None:
    ds = open_store(url)
    samples, genes = ds["sample"].values.astype(str), ds["gene"].values.astype(str)
    assert list(adata.obs_names) == list(samples) and list(adata.var_names) == list(genes)
    np.testing.assert_array_equal(np.asarray(adata.X), ds["log_expr"].values)
    np.testing.assert_array_equal(np.asarray(adata.layers["tpm"]), ds["tpm"].values)
    assert list(adata.obs["sample_tissue"].astype(str)) == list(ds["sample_tissue"].values.astype(str))
    assert list(adata.var["gene_symbol"].astype(str)) == list(ds["gene_symbol"].values.astype(str))
    np.testing.assert_array_equal(
        adata.var["truth_informative"].to_numpy(bool), ds["truth_informative"].values
    )
    for run in ("r1", "r2"):
        res = read_result(url, f"explain/{run}")
        np.testing.assert_array_equal(np.asarray(adata.layers[f"attr_{run}_ig"]), res["attr_ig"].values)
        np.testing.assert_array_equal(
            np.asarray(adata.layers[f"attr_{run}_ig_std"]), res["attr_ig_std"].values
        )
    part = np.asarray(adata.layers["attr_part_deeplift"])
    rows, cols = {s: i for i, s in enumerate(samples)}, {g: j for j, g in enumerate(genes)}
    expected = np.full(part.shape, np.nan, np.float32)
    for a, s in enumerate(["s005", "s001", "s030"]):
        for b, g in enumerate(["g03", "g00", "g49", "g10"]):
            expected[rows[s], cols[g]] = 4 * a + b
    np.testing.assert_array_equal(part, expected)
    de = adata.varm["de_welch_tissue_B_vs_A"]
    res = read_result(url, "de/welch/tissue_B_vs_A")
    assert list(de.columns) == ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]  # pydeseq2's
    for column in de.columns:
        np.testing.assert_array_equal(de[column].to_numpy(), res[column].values)
    assert list(adata.uns["de"]["de_welch_tissue_B_vs_A"]["contrast"]) == ["tissue", "B", "A"]
    assert adata.uns["gexplain"]["x_layer"] == "log_expr"


def test_h5ad_round_trips_through_anndata(exported: tuple[str, Path, Path]) -> None:
    url, h5ad, _ = exported
    _check(anndata.read_h5ad(h5ad), url)


def test_zarr_round_trips_through_anndata(exported: tuple[str, Path, Path]) -> None:
    url, _, zarr = exported
    _check(anndata.read_zarr(zarr), url)


def test_scanpy_reads_and_analyses_the_export(exported: tuple[str, Path, Path]) -> None:
    scanpy = pytest.importorskip("scanpy")  # dev extra
    url, h5ad, _ = exported
    adata = scanpy.read_h5ad(h5ad)
    _check(adata, url)
    frame = scanpy.get.obs_df(adata, keys=["sample_tissue", "g00"])
    np.testing.assert_array_equal(frame["g00"].to_numpy(), open_store(url)["log_expr"].values[:, 0])
    scanpy.tl.rank_genes_groups(adata, "sample_tissue", groups=["B"], reference="A", method="t-test")
    names = adata.uns["rank_genes_groups"]["names"]["B"]
    scores = adata.uns["rank_genes_groups"]["scores"]["B"]
    x = np.asarray(adata.X, dtype=np.float64)
    labels = adata.obs["sample_tissue"].astype(str).to_numpy()
    reference = ttest_ind(x[labels == "B"], x[labels == "A"], equal_var=False).statistic
    order = [list(adata.var_names).index(n) for n in names]
    np.testing.assert_allclose(scores, reference[order], rtol=1e-4)  # scanpy sums in float32


def test_export_bad_input_exits_2(exported: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, h5ad, _ = exported
    assert main(["export", url]) == 2  # no output named
    assert main(["export", url, "--h5ad", str(h5ad)]) == 2  # exists, no --overwrite
    assert main(["export", url, "--h5ad", str(tmp_path / "x.h5ad"), "--layer", "nope"]) == 2
    assert main(["export", url, "--h5ad", str(tmp_path / "x.h5ad"), "--attributions", "missing"]) == 2
    assert main(["export", url, "--h5ad", str(tmp_path / "x.txt")]) == 2
    assert main(["export", str(tmp_path / "none.zarr"), "--h5ad", str(tmp_path / "x.h5ad")]) == 2
    assert not (tmp_path / "x.h5ad").exists()
    assert main(["export", url, "--h5ad", str(h5ad), "--overwrite", "--attributions", "r1"]) == 0
    assert set(anndata.read_h5ad(h5ad).layers) == {"tpm", "attr_r1_ig"}  # X = log_expr


def test_attribution_ranking_is_scanpys_rank_genes_groups_layout(exported: tuple[str, Path, Path]) -> None:
    """scanpy's own readers (``get.rank_genes_groups_df``, ``pl.rank_genes_groups``) read the per-class
    ranking; its scores are the class means of |attribution| computed here from the stored result."""
    scanpy = pytest.importorskip("scanpy")
    import matplotlib

    matplotlib.use("Agg")
    url, h5ad, zarr = exported
    adata = scanpy.read_h5ad(h5ad)
    key = "rank_attr_r1_ig"
    assert adata.uns[key]["params"]["groupby"] == "sample_tissue"
    res = read_result(url, "explain/r1")
    attr = np.asarray(res["attr_ig"].values, dtype=np.float64)
    labels = open_store(url)["sample_tissue"].values.astype(str)
    genes = res["gene"].values.astype(str)
    for group in ("A", "B"):
        df = scanpy.get.rank_genes_groups_df(adata, group=group, key=key)
        expected = pd.Series(np.abs(attr[labels == group]).mean(axis=0), index=genes)
        np.testing.assert_allclose(df["scores"].to_numpy(), expected[df["names"]].to_numpy(), rtol=1e-12)
        assert df["scores"].is_monotonic_decreasing
        assert list(df["names"][:10].sort_values()) == sorted(expected.nlargest(10).index)
        signed = pd.Series(attr[labels == group].mean(axis=0), index=genes)
        got = pd.Series(adata.uns[key]["mean_attr"][group], index=adata.uns[key]["names"][group])
        np.testing.assert_allclose(got[genes].to_numpy(), signed.to_numpy(), rtol=1e-12)
    scanpy.pl.rank_genes_groups(adata, key=key, n_genes=5, show=False)
    # the partial run (in the Zarr export; a later test rewrites the h5ad with r1 only): its 4 genes
    part = scanpy.get.rank_genes_groups_df(anndata.read_zarr(zarr), group="A", key="rank_attr_part_deeplift")
    assert len(part) == 4


def test_evaluation_tables_are_in_uns(exported: tuple[str, Path, Path]) -> None:
    url, h5ad, zarr = exported
    tables = read_tables(url)
    assert "default/ground_truth" in tables and "default/faithfulness" in tables
    for adata in (anndata.read_h5ad(h5ad), anndata.read_zarr(zarr)):
        stored = adata.uns["evaluate"]["default"]
        assert set(stored) == {t.split("/", 1)[1].replace("/", "_") for t in tables}
        gt = tables["default/ground_truth"].reset_index(drop=True)
        np.testing.assert_allclose(stored["ground_truth"]["auroc"].to_numpy(), gt["auroc"].to_numpy())
        assert list(stored["ground_truth"]["source"].astype(str)) == list(gt["source"].astype(str))
