"""The one unlabelled-sample policy (``unlabelled = "exclude" | "error"``) in train, evaluate and DE.

``exclude`` (the default) leaves samples without a label out and gives the numbers of the labelled
samples alone (checked against scipy on those samples); ``error`` exits 2 naming the column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
import xarray as xr
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.stage import EvaluateParams
from gexplain.pipelines.models.data import read_training_data
from gexplain.storage.errors import InputError
from gexplain.storage.store import create_store, read_result, write_result

N, G = 30, 12
LABELS = np.array(["a"] * 12 + ["b"] * 12 + [""] * 3 + ["nan"] * 1 + ["a", "b"], dtype=object)
UNLABELLED = np.array([lab in ("", "nan") for lab in LABELS])


def _store(path: Path) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(4)
    x = rng.normal(5.0, 1.0, size=(N, G)).astype(np.float32)
    x[LABELS == "a", :3] += 2.0
    x[UNLABELLED, :3] += 50.0  # unlabelled samples would move every statistic if they took part
    url = str(path / "s.zarr")
    w = create_store(
        url,
        sample_ids=np.array([f"s{i:02d}" for i in range(N)], dtype=object),
        gene_ids=np.array([f"g{j:02d}" for j in range(G)], dtype=object),
        coords={"sample_tissue": ("sample", LABELS)},
        layers={"log_expr": "float32"},
        attrs={"label_column": "sample_tissue"},
        chunks={"sample": 8, "gene": 8},
    )
    w.write_block({}, {"log_expr": x})
    return w.commit(), x


def test_de_contrasts_leave_unlabelled_samples_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, x = _store(tmp_path)
    argv = [
        "de",
        url,
        "--method",
        "welch",
        "--one-vs-rest",
        "tissue",
        "--level",
        "a",
        "--run-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    result = read_result(url, "de/welch/tissue_a_vs_rest")
    labelled = ~UNLABELLED
    x64 = x.astype(np.float64)
    ref = st.ttest_ind(x64[labelled & (LABELS == "a")], x64[labelled & (LABELS == "b")], equal_var=False)
    np.testing.assert_allclose(result["pvalue"].values, ref.pvalue, rtol=1e-9)
    assert (tmp_path / "de" / "welch" / "tissue_a_vs_rest.csv").is_file()
    assert main([*argv, "--unlabelled", "error"]) == 2
    assert "label column 'sample_tissue': 4 samples have no label" in " ".join(
        capsys.readouterr().err.split()
    )


def test_training_reads_only_labelled_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, x = _store(tmp_path)
    data = read_training_data(url, "tissue", unlabelled="exclude")
    assert data.samples.size == int((~UNLABELLED).sum())
    np.testing.assert_array_equal(data.x, x[~UNLABELLED])
    with pytest.raises(InputError, match="4 samples have no label"):
        read_training_data(url, "tissue", unlabelled="error")
    assert main(["train", url, "--no-ray", "--unlabelled", "error", "--max-epochs", "1"]) == 2
    assert "no label" in capsys.readouterr().err


def test_evaluation_leaves_unlabelled_samples_out(tmp_path: Path) -> None:
    url, _ = _store(tmp_path)
    rng = np.random.default_rng(1)
    base = rng.normal(size=(N, G))
    runs = {name: (base + rng.normal(scale=0.5, size=(N, G))).astype(np.float32) for name in ("r1", "r2")}
    for name, attr in runs.items():
        res = xr.Dataset(
            {"attr_ig": (("sample", "gene"), attr)},
            coords={"sample": [f"s{i:02d}" for i in range(N)], "gene": [f"g{j:02d}" for j in range(G)]},
        )
        write_result(url, f"explain/{name}", res)
    out = evaluate_store(url, EvaluateParams(k=4, block=7))
    per_sample = out.tables["reproducibility_samples"]
    ids = np.array([f"s{i:02d}" for i in range(N)])
    assert sorted(per_sample["sample"]) == sorted(ids[~UNLABELLED])
    assert set(per_sample["label"]) == {"a", "b"}
    for _, row in per_sample.iterrows():
        i = int(str(row["sample"])[1:])
        ref = st.spearmanr(np.abs(runs["r1"][i]), np.abs(runs["r2"][i])).statistic  # ranks of |attribution|
        assert row["spearman"] == pytest.approx(ref, abs=1e-6)
    classes = out.tables["reproducibility_classes"]
    counts = pd.Series(LABELS[~UNLABELLED]).value_counts()
    assert {str(c) for c in classes.iloc[:, 0]} >= set(counts.index)
    with pytest.raises(InputError, match="4 samples have no label"):
        evaluate_store(url, EvaluateParams(k=4, unlabelled="error"))
