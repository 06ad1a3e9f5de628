"""The ``de`` stage (via a run config) and ``gexplain de``: results in the store, exported tables
and volcano plots, compared with R DESeq2 and scipy; bad input rejected before any compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from gexplain.cluster.runtime import Runtime
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.runner import run_config
from gexplain.storage.errors import InputError
from gexplain.storage.store import create_store, list_results, read_result

REF = "pydeseq2-r-reference"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _reference(shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = pd.read_csv(shared / REF / "synthetic" / "test_counts.csv", index_col=0).T
    meta = pd.read_csv(shared / REF / "synthetic" / "test_metadata.csv", index_col=0).loc[counts.index]
    return counts, meta


def _store(tmp_path: Path, counts: pd.DataFrame, meta: pd.DataFrame) -> str:
    url = str(tmp_path / "cohort.zarr")
    writer = create_store(
        url,
        sample_ids=counts.index.to_numpy(),
        gene_ids=counts.columns.to_numpy(),
        coords={
            "sample_condition": ("sample", meta["condition"].to_numpy()),
            "sample_group": ("sample", meta["group"].to_numpy()),
            "sample_batch": ("sample", np.where(meta["condition"] == "A", "b1", "b2").astype(object)),
            "gene_symbol": ("gene", np.array([f"SYM{i}" for i in range(counts.shape[1])])),
        },
        layers={"counts": "int64"},
        chunks={"sample": 32, "gene": 4},
    )
    writer.write_block({}, {"counts": counts.to_numpy()})
    return writer.commit()


CONFIG = """
[run]
name = "de"
out = "{out}"
store = "{store}"

[[stage]]
kind = "de"
[stage.params]
export = "csv"
[[stage.params.tests]]
method = "deseq2"
design = "~ group + condition"
contrasts = [["condition", "B", "A"]]
[[stage.params.tests]]
method = "mannwhitney"
layer = "cpm"
contrasts = [["condition", "B", "A"]]
preset = "zhao"
[[stage.params.tests]]
method = "welch"
one_vs_rest = {{ column = "group" }}
"""


def test_de_stage_matches_r_and_scipy(shared_data: Path, tmp_path: Path, local_runtime: Runtime) -> None:
    counts, meta = _reference(shared_data)
    url = _store(tmp_path, counts, meta)
    cfg_path = tmp_path / "de.toml"
    cfg_path.write_text(CONFIG.format(out=tmp_path / "run", store=url))
    manifest = run_config(parse_config(cfg_path), runtime=local_runtime, progress=Progress(enabled=False))
    outputs = manifest["stages"][0]["outputs"]
    assert set(list_results(url, "de")) == {
        "de/deseq2/condition_B_vs_A",
        "de/mannwhitney/condition_B_vs_A",
        "de/welch/group_X_vs_rest",
        "de/welch/group_Y_vs_rest",
    }
    # deseq2 through the stage: R DESeq2 on ~ group + condition, as close as pydeseq2's own tests ask
    r_res = pd.read_csv(shared_data / REF / "multi_factor" / "r_test_res.csv", index_col=0)
    got = read_result(url, "de/deseq2/condition_B_vs_A").to_dataframe().loc[r_res.index]
    for col in ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"):
        np.testing.assert_allclose(got[col], r_res[col], rtol=0.02, err_msg=col)
    # mannwhitney on CPM: scipy on the whole in-memory matrix
    cpm = counts.to_numpy() / counts.to_numpy().sum(1, keepdims=True) * 1e6
    is_b, is_a = (meta["condition"] == "B").to_numpy(), (meta["condition"] == "A").to_numpy()
    ref = st.mannwhitneyu(cpm[is_b], cpm[is_a], method="asymptotic", axis=0)
    mw = read_result(url, "de/mannwhitney/condition_B_vs_A")
    np.testing.assert_allclose(mw["pvalue"].values, ref.pvalue, rtol=1e-12, atol=0)
    padj = st.false_discovery_control(ref.pvalue)
    lfc = np.log2(cpm[is_b].mean(0) / cpm[is_a].mean(0))
    np.testing.assert_array_equal(mw["call"].values, (padj <= 0.001) & (np.abs(lfc) >= np.log2(3)))
    # exported table = stored result, with ids and symbols
    entry = outputs["de/mannwhitney/condition_B_vs_A"]
    table = pd.read_csv(entry["table"])
    assert list(table.columns[:8]) == [
        "gene",
        "gene_symbol",
        "baseMean",
        "log2FoldChange",
        "lfcSE",
        "stat",
        "pvalue",
        "padj",
    ]
    np.testing.assert_array_equal(table["gene"], counts.columns)
    np.testing.assert_allclose(table["pvalue"], ref.pvalue, rtol=1e-12)
    assert Path(entry["volcano"]).read_bytes()[:8] == PNG_MAGIC
    # welch one-vs-rest: group X vs Y (the only other level) on log2(cpm + 1)
    y = np.log2(cpm + 1)
    is_x = (meta["group"] == "X").to_numpy()
    welch = read_result(url, "de/welch/group_X_vs_rest")
    ref_t = st.ttest_ind(y[is_x], y[~is_x], equal_var=False, axis=0)
    np.testing.assert_allclose(welch["pvalue"].values, ref_t.pvalue, rtol=1e-10)


def test_de_stage_checks_every_test_before_computing(
    shared_data: Path, tmp_path: Path, local_runtime: Runtime
) -> None:
    counts, meta = _reference(shared_data)
    url = _store(tmp_path, counts, meta)
    bad = CONFIG.replace('one_vs_rest = {{ column = "group" }}', 'contrasts = [["condition", "B", "C"]]')
    cfg_path = tmp_path / "bad.toml"
    cfg_path.write_text(bad.format(out=tmp_path / "run", store=url))
    with pytest.raises(InputError, match="levels present: A, B"):
        run_config(parse_config(cfg_path), runtime=local_runtime, progress=Progress(enabled=False))
    assert list_results(url, "de") == []  # the good tests before it did not run
    # deseq2 listed last with a design that is not full rank (batch duplicates condition)
    rank = CONFIG.replace('design = "~ group + condition"', 'design = "~ batch + condition"')
    lines = rank.splitlines()
    deseq2 = lines.index('method = "deseq2"')
    moved = lines[: deseq2 - 1] + lines[deseq2 + 3 :] + lines[deseq2 - 1 : deseq2 + 3]
    cfg_path.write_text("\n".join(moved).format(out=tmp_path / "run2", store=url))
    with pytest.raises(InputError, match="full rank"):
        run_config(parse_config(cfg_path), runtime=local_runtime, progress=Progress(enabled=False))
    assert list_results(url, "de") == []
    # a negative count, found by deseq2's pass over the data, which runs before the other methods
    negative = counts.copy()
    negative.iloc[5, 3] = -1
    bad_url = _store(tmp_path / "negative", negative, meta)
    cfg_path.write_text(
        "\n".join(moved).replace("batch", "group").format(out=tmp_path / "run3", store=bad_url)
    )
    with pytest.raises(InputError, match="negative"):
        run_config(parse_config(cfg_path), runtime=local_runtime, progress=Progress(enabled=False))
    assert list_results(bad_url, "de") == []


def test_de_cli_writes_table_and_exits_2_on_bad_input(shared_data: Path, tmp_path: Path) -> None:
    counts, meta = _reference(shared_data)
    url = _store(tmp_path, counts, meta)
    out = tmp_path / "res.parquet"
    args = ["de", url, "--method", "mannwhitney", "--layer", "counts", "--contrast", "group", "Y", "X"]
    assert main([*args, "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    ref = st.mannwhitneyu(
        counts[(meta["group"] == "Y").to_numpy()],
        counts[(meta["group"] == "X").to_numpy()],
        method="asymptotic",
    )
    np.testing.assert_allclose(table["pvalue"], ref.pvalue, rtol=1e-12)
    assert out.with_suffix(".png").is_file()
    assert main([*args[:-3], "--contrast", "group", "Y", "Z"]) == 2  # level Z does not exist
    assert main([*args[:-3], "--contrast", "grp", "Y", "X"]) == 2  # unknown column
    assert main([*args, "--out", str(tmp_path / "res.xlsx")]) == 2  # unknown table format
    assert main(["de", url, "--method", "welch", "--design", "~ condition + group", *args[4:]]) == 2
    assert list_results(url, "de") == ["de/mannwhitney/group_Y_vs_X"]


def _direct(
    counts: pd.DataFrame, meta: pd.DataFrame, design: str, contrast: tuple[str, str, str]
) -> pd.DataFrame:
    """run_deseq2 called on exactly these samples (itself equal to R: test_deseq2_r_parity.py)."""
    import xarray as xr
    from gexplain.pipelines.de.deseq2 import run_deseq2

    ds = xr.Dataset(
        {f"sample_{c}": ("sample", meta[c].astype(str).to_numpy()) for c in meta.columns}
        | {"counts": (("sample", "gene"), counts.to_numpy(np.int64))},
        coords={"sample": counts.index.to_numpy(str), "gene": counts.columns.to_numpy(str)},
    )
    (res,) = run_deseq2(ds, design, [contrast]).values()
    return res.to_dataframe()


@pytest.mark.filterwarnings("ignore")
def test_deseq2_per_group_and_one_vs_rest_fit_the_right_samples(shared_data: Path, tmp_path: Path) -> None:
    from gexplain.pipelines.de.analysis import execute, plan
    from gexplain.pipelines.de.stage import DeTest
    from gexplain.storage.store import open_store

    counts, meta = _reference(shared_data)
    ds = open_store(_store(tmp_path, counts, meta))
    per_group = execute(
        ds,
        plan(
            ds,
            DeTest(
                method="deseq2", per_group={"by": "group", "column": "condition", "test": "B", "ref": "A"}
            ),
        ),
    )
    ovr = execute(
        ds,
        plan(
            ds,
            DeTest(
                method="deseq2", design="~ condition + group", one_vs_rest={"column": "group", "level": "Y"}
            ),
        ),
    )
    expected = {
        "condition_B_vs_A_in_group_X": _direct(
            counts[meta["group"] == "X"], meta[meta["group"] == "X"], "~condition", ("condition", "B", "A")
        ),
        # group has two levels, so Y vs rest is Y vs X with the same covariate
        "group_Y_vs_rest": _direct(counts, meta, "~condition + group", ("group", "Y", "X")),
    }
    results = {**per_group, **ovr}
    for name, ref in expected.items():
        got = results[name].to_dataframe().loc[ref.index]
        for col in ("log2FoldChange", "lfcSE", "stat", "pvalue", "padj"):
            rel = np.abs(got[col] - ref[col]) / np.abs(ref[col])
            # one vs rest codes the derived factor with 'level' as the reference: the same model,
            # reparametrised, so the IRLS path (and its 1e-8 deviance stop) differs: ~1e-6 relative
            assert rel.max() <= 1e-5, f"{name} {col}: {rel.max():.1e}"
        np.testing.assert_array_equal(got["padj"] < 0.05, ref["padj"] < 0.05)
    assert results["group_Y_vs_rest"].attrs["contrast"] == ["group", "Y", "rest"]
