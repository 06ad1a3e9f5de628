"""Label-permutation calibration of the DE stage (``calibrate = N``): permutations keep group
sizes and covariates, and the permuted-label call counts match scipy's Welch test + BH."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats as st
from gexplain.cluster.runtime import Runtime
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.de.calibration import PERMUTATION_STREAM, permute_contrast, read_calibration
from gexplain.pipelines.de.contrasts import one_vs_rest, pairwise
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.runner import run_config
from gexplain.storage.store import create_store, list_results, open_store

N, G, N_DE, SEED = 40, 60, 6, 7

CONFIG = """
[run]
name = "cal"
out = "{out}"
store = "{store}"
seed = {seed}
[[stage]]
kind = "de"
[stage.params]
export = "none"
volcano = false
calibrate = 5
[[stage.params.tests]]
method = "welch"
layer = "log_expr"
contrasts = [["cond", "B", "A"]]
[[stage.params.tests]]
method = "deseq2"
contrasts = [["cond", "B", "A"]]
"""


def _store(tmp_path: Path) -> str:
    rng = np.random.default_rng(0)
    cond = np.array(["A", "B"] * (N // 2), dtype=object)
    shift = np.zeros(G)
    shift[:N_DE] = 1.5
    log_expr = rng.normal(5.0, 1.0, (N, G)) + np.outer(cond == "B", shift)
    counts = rng.poisson(np.exp2(log_expr))
    writer = create_store(
        str(tmp_path / "cal.zarr"),
        sample_ids=np.array([f"s{i}" for i in range(N)], dtype=object),
        gene_ids=np.array([f"g{i}" for i in range(G)], dtype=object),
        coords={
            "sample_cond": ("sample", cond),
            "sample_site": ("sample", np.array(["x", "y", "z", "w"] * (N // 4), dtype=object)),
        },
        layers={"counts": "int64", "log_expr": "float32"},
        chunks={"sample": 16, "gene": 32},
    )
    writer.write_block({}, {"counts": counts, "log_expr": log_expr.astype(np.float32)})
    return writer.commit()


def test_permutation_keeps_sizes_and_moves_only_the_contrasts_samples(tmp_path: Path) -> None:
    ds = open_store(_store(tmp_path))
    (site_x,) = [c for c in one_vs_rest(ds, "site") if c.test == "x"]
    data, permuted = permute_contrast(ds, site_x, np.random.default_rng(1))
    assert permuted.test_index.size == site_x.test_index.size
    assert permuted.ref_index.size == site_x.ref_index.size
    labels = data["sample_site"].values
    assert (labels[permuted.test_index] == "x").all() and (labels[permuted.ref_index] != "x").all()
    assert sorted(labels.tolist()) == sorted(ds["sample_site"].values.tolist())
    assert (data["sample_cond"].values == ds["sample_cond"].values).all()  # covariates stay put


def test_stage_counts_permuted_calls_as_scipy_welch_with_bh(tmp_path: Path, local_runtime: Runtime) -> None:
    url = _store(tmp_path)
    cfg = tmp_path / "cal.toml"
    cfg.write_text(CONFIG.format(out=tmp_path / "run", store=url, seed=SEED))
    manifest = run_config(parse_config(cfg), runtime=local_runtime, progress=Progress(enabled=False))
    out = manifest["stages"][0]["outputs"]["de/calibration"]
    perms = pd.read_csv(out["permutations_table"])
    assert "calibration/de" in list_results(url) and not any(
        "calibration" in g for g in list_results(url, "de")
    )
    ds = open_store(url)
    x = np.asarray(ds["log_expr"].values, dtype=np.float64)
    contrast = pairwise(ds, "cond", "B", "A")
    rows = np.concatenate([contrast.test_index, contrast.ref_index])
    labels = ds["sample_cond"].values
    welch = perms[perms["method"] == "welch"].set_index("permutation")
    for p in range(5):
        shuffled = np.random.default_rng([SEED, PERMUTATION_STREAM, p]).permutation(rows)
        perm = labels.copy()
        perm[rows] = labels[shuffled]
        pvalue = st.ttest_ind(x[perm == "B"], x[perm == "A"], equal_var=False, axis=0).pvalue
        assert welch.loc[p, "n_called"] == int((st.false_discovery_control(pvalue) < 0.05).sum())
    real = st.ttest_ind(x[labels == "B"], x[labels == "A"], equal_var=False, axis=0).pvalue
    assert welch["observed"].iloc[0] == int((st.false_discovery_control(real) < 0.05).sum()) >= N_DE
    summary = read_calibration(url).set_index("method")
    assert set(summary.index) == {"welch", "deseq2"}
    assert summary.loc["welch", "perm_mean"] == welch["n_called"].mean()
    assert summary.loc["welch", "fdr_estimate"] == min(
        1.0, welch["n_called"].mean() / welch["observed"].iloc[0]
    )
    # the report shows the check beside the DE results
    from gexplain.pipelines.report.build import de_section
    from gexplain.storage.store import read_result

    de = {g: read_result(url, g) for g in list_results(url, "de")}
    section = de_section(de, 0.05, 0, read_calibration(url))
    assert section.tables["de_calibration"].shape[0] == 2


def test_cli_calibration_prints_its_table(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """``gexplain de --calibrate N`` exits 0 and names the calibration table it wrote."""
    from gexplain.pipelines.cli.main import main

    url = _store(tmp_path)
    args = ["de", url, "--method", "welch", "--layer", "log_expr", "--contrast", "cond", "B", "A"]
    assert main([*args, "--calibrate", "2", "--run-dir", str(tmp_path / "run"), "--no-volcano"]) == 0
    table = tmp_path / "run" / "de" / "calibration.csv"
    assert table.is_file() and str(table) in " ".join(capsys.readouterr().out.split())
    assert set(pd.read_csv(table)["method"]) == {"welch"}
