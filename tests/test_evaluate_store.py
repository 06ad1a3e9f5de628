"""The evaluate stage on a small hand-built store, checked against scipy / sklearn / torch directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.stage import STAGE, EvaluateParams
from gexplain.pipelines.evaluate.tables import read_tables
from gexplain.pipelines.models.architectures import MLP
from gexplain.pipelines.models.persist import save_model, state_bytes
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.stages import StageContext
from gexplain.storage.errors import InputError
from gexplain.storage.store import create_store, write_result
from scipy.stats import hypergeom, spearmanr
from sklearn.metrics import roc_auc_score

N_PER_CLASS, N_GENES = 20, 50


def make_demo_store(path: Path, *, models: bool = True) -> str:
    """A 40 x 50 store: classes A/B, genes 0-4 linear and 5-9 non-linear informative, two explain runs,
    one DE result and (optionally) one untrained MLP as model set ``default``."""
    rng = np.random.default_rng(0)
    n = 2 * N_PER_CLASS
    labels = np.array(["A"] * N_PER_CLASS + ["B"] * N_PER_CLASS, dtype=object)
    genes = np.array([f"g{i:02d}" for i in range(N_GENES)], dtype=object)
    tpm = rng.lognormal(mean=1.0, sigma=0.3, size=(n, N_GENES)).astype(np.float32)
    tpm[:N_PER_CLASS, :3] *= 10.0  # tissue-enhanced in A
    tpm[:, 40:] = 10.0 + rng.normal(scale=0.5, size=(n, 10))  # housekeeping-like
    tpm[N_PER_CLASS:, 3:5] *= 3.0  # linear shift in B
    mode = np.array(["linear"] * 5 + ["nonlinear"] * 5 + ["none"] * (N_GENES - 10), dtype=object)
    url = str(path / "demo.zarr")
    w = create_store(
        url,
        sample_ids=np.array([f"s{i:03d}" for i in range(n)], dtype=object),
        gene_ids=genes,
        coords={
            "sample_tissue": ("sample", labels),
            "gene_symbol": ("gene", np.array([f"SYM{i}" for i in range(N_GENES)], dtype=object)),
        },
        layers={"tpm": "float32", "log_expr": "float32"},
        attrs={"label_column": "sample_tissue"},
        chunks={"sample": 16, "gene": 16},
    )
    w.write_block({}, {"tpm": tpm, "log_expr": np.log2(tpm + 1.0)})
    w.write_vars({"truth_informative": ("gene", mode != "none"), "truth_mode": ("gene", mode)})
    w.commit()
    signal = np.r_[np.full(10, 3.0), np.zeros(N_GENES - 10)]
    for run, seed in (("r1", 1), ("r2", 2)):
        noise = np.random.default_rng(seed).normal(size=(n, N_GENES))
        attr = (signal + noise).astype(np.float32)
        res = xr.Dataset(
            {
                "attr_ig": (("sample", "gene"), attr),
                "attr_ig_std": (("sample", "gene"), np.full((n, N_GENES), 0.5, np.float32)),
                "attr_ig_count": ("sample", np.full(n, 20, np.int32)),
            },
            coords={"sample": [f"s{i:03d}" for i in range(n)], "gene": genes.astype(str)},
            attrs={"explainers": ["ig"], "seed": seed},
        )
        write_result(url, f"explain/{run}", res)
    pvalue = np.r_[np.full(5, 1e-6), np.linspace(0.05, 1.0, N_GENES - 5)]
    de = xr.Dataset(
        {
            "baseMean": ("gene", tpm.mean(axis=0).astype(np.float64)),
            "log2FoldChange": ("gene", np.r_[np.full(5, 1.5), np.zeros(N_GENES - 5)]),
            "lfcSE": ("gene", np.full(N_GENES, 0.1)),
            "stat": ("gene", np.zeros(N_GENES)),
            "pvalue": ("gene", pvalue),
            "padj": ("gene", np.minimum(pvalue * N_GENES, 1.0)),
        },
        coords={"gene": genes.astype(str)},
        attrs={"method": "welch", "contrast": ["tissue", "B", "A"], "design": "~tissue"},
    )
    write_result(url, "de/welch/tissue_B_vs_A", de)
    if models:
        torch.manual_seed(0)
        mlp = MLP(N_GENES, 2, hidden=8, dropout=0.1).eval()
        meta = {
            "arch": "mlp",
            "hyperparameters": mlp.hyperparameters(),
            "genes": genes.astype(str).tolist(),
            "classes": ["A", "B"],
            "layer": "log_expr",
            "label": "sample_tissue",
            "standardize": False,
            "gene_mean": np.log2(tpm + 1.0).mean(axis=0).tolist(),
            "seed": 0,
            "metrics": {"accuracy": 0.9, "macro_f1": 0.88, "per_class_accuracy": {"A": 0.95, "B": 0.85}},
        }
        save_model(url, "default", 0, state_bytes(mlp), meta)
    return url


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, pd.DataFrame], Path]:
    path = tmp_path_factory.mktemp("evaluate")
    url = make_demo_store(path)
    csv_dir = path / "csv"
    opts = EvaluateParams(
        k=5,
        faithfulness_samples=100,
        faithfulness_ks=[1, 5],
        faithfulness=["openxai", "replace"],
        n_random=2,
        min_frac=0.5,
    )
    out = evaluate_store(url, opts, csv_dir=csv_dir)
    return url, out.tables, csv_dir


def _attr(url: str, run: str) -> np.ndarray:
    from gexplain.storage.store import read_result

    return np.asarray(read_result(url, f"explain/{run}")["attr_ig"].values, dtype=np.float64)


def test_ground_truth_matches_sklearn(evaluated: tuple[str, dict[str, pd.DataFrame], Path]) -> None:
    url, tables, _ = evaluated
    gt = tables["ground_truth"].set_index(["source", "subset"])
    imp = np.abs(_attr(url, "r1")).mean(axis=0)
    truth = np.r_[np.ones(10, bool), np.zeros(N_GENES - 10, bool)]
    assert gt.loc[("r1:ig", "all"), "auroc"] == pytest.approx(roc_auc_score(truth, imp))
    de_row = gt.loc[("de/welch/tissue_B_vs_A", "nonlinear")]
    assert de_row["n_called_true"] == 0 and de_row["n_called"] == 0  # padj < 0.05 for genes 0-4 only
    assert gt.loc[("de/welch/tissue_B_vs_A", "linear"), "n_called_true"] == 5
    assert gt.loc[("de/welch/tissue_B_vs_A", "all"), "n_called"] == 5


def test_reproducibility_matches_scipy(evaluated: tuple[str, dict[str, pd.DataFrame], Path]) -> None:
    url, tables, _ = evaluated
    ps = tables["reproducibility_samples"]
    a, b = _attr(url, "r1"), _attr(url, "r2")
    want = [spearmanr(np.abs(a[i]), np.abs(b[i])).statistic for i in range(a.shape[0])]
    np.testing.assert_allclose(ps["spearman"].to_numpy(), want, rtol=1e-10)
    pc = tables["reproducibility_classes"].set_index("label")
    assert pc.loc["A", "spearman_mean"] == pytest.approx(np.mean(want[:N_PER_CLASS]))


def test_overlaps_match_hypergeometric(evaluated: tuple[str, dict[str, pd.DataFrame], Path]) -> None:
    url, tables, _ = evaluated
    from gexplain.storage.store import open_store

    ds = open_store(url)
    tpm = np.asarray(ds["tpm"].values, dtype=np.float64)
    mean_a, mean_b = tpm[:N_PER_CLASS].mean(axis=0), tpm[N_PER_CLASS:].mean(axis=0)
    enhanced_a = (mean_a >= 1.0) & (mean_a >= 4 * mean_b)  # two classes: "mean of the others" is class B
    top = tables["top_genes"].query("source == 'r1:ig'")
    shared_a = set(top[(top["label"] == "A") & top["shared"]]["gene"])
    genes = np.asarray(ds["gene"].values).astype(str)
    ov = int(sum(g in shared_a for g in genes[enhanced_a]))
    ovl = tables["class_overlaps"].query("source == 'r1:ig'")
    row = ovl.set_index(["label", "gene_set"]).loc[("A", "tissue_enhanced")]
    assert row["overlap"] == ov
    assert row["p_value"] == pytest.approx(hypergeom.sf(ov - 1, N_GENES, enhanced_a.sum(), len(shared_a)))
    assert row["expected"] == pytest.approx(len(shared_a) * enhanced_a.sum() / N_GENES)


def test_faithfulness_matches_direct_forward(evaluated: tuple[str, dict[str, pd.DataFrame], Path]) -> None:
    url, tables, _ = evaluated
    from gexplain.pipelines.models.load import load_models
    from gexplain.storage.store import open_store

    f = tables["faithfulness"].set_index("k")
    model = load_models(url, "default")[0].module.eval()
    x = np.asarray(open_store(url)["log_expr"].values, dtype=np.float64)
    attr = _attr(url, "r1")
    targets = np.r_[np.zeros(N_PER_CLASS, int), np.ones(N_PER_CLASS, int)]
    ref = x.mean(axis=0)
    gaps = []
    for i in range(x.shape[0]):
        top = np.argsort(-np.abs(attr[i]), kind="stable")[:5]
        xm = x[i].copy()
        xm[top] = ref[top]
        with torch.no_grad():
            p = torch.softmax(model(torch.tensor(np.stack([x[i], xm]), dtype=torch.float32)), dim=1)[
                :, targets[i]
            ]
        gaps.append(abs(float(p[0] - p[1])))
    rows = f[(f["source"] == "r1:ig") & (f["variant"] == "replace")]
    assert rows.loc[5, "pgi"] == pytest.approx(np.mean(gaps), abs=1e-6)


def test_hidden_to_de_and_csv_copies(evaluated: tuple[str, dict[str, pd.DataFrame], Path]) -> None:
    url, tables, csv_dir = evaluated
    hidden = tables["hidden_to_de"]
    # genes 5-9 carry strong attribution but padj >= 0.05; genes 0-4 are DE-significant
    r1 = set(hidden[hidden["source"] == "r1:ig"]["gene"])
    assert r1 and r1 <= {f"g{i:02d}" for i in range(5, 10)}
    assert not set(hidden["gene"]) & {f"g{i:02d}" for i in range(5)}
    stored = read_tables(url, "default")
    for name, table in tables.items():
        csv = pd.read_csv(csv_dir / f"{name}.csv")
        assert len(csv) == len(table) == len(stored[f"default/{name}"])
        assert list(csv.columns) == list(table.columns)


def test_stage_and_bad_options(tmp_path: Path, local_runtime: object) -> None:
    url = make_demo_store(tmp_path, models=False)
    ctx = StageContext(
        run_dir=tmp_path / "run", store_url=url, seed=0, runtime=local_runtime, progress=Progress()
    )  # type: ignore[arg-type]
    out = STAGE.run(ctx, EvaluateParams(name="e1", k=5))
    assert "evaluate/e1/ground_truth" in out["results"]
    assert "evaluate/e1/faithfulness" not in out["results"]  # no model set: not computed
    assert (tmp_path / "run" / "evaluate" / "e1" / "ground_truth.csv").is_file()
    csv_dir = tmp_path / "cli"
    assert main(["evaluate", url, "--name", "cli", "--out-dir", str(csv_dir), "--k", "5"]) == 0
    assert pd.read_csv(csv_dir / "ground_truth.csv").equals(read_tables(url, "cli")["cli/ground_truth"])
    assert main(["evaluate", url, "--runs", "nope"]) == 2
    with pytest.raises(InputError, match="explain_runs"):
        evaluate_store(url, EvaluateParams(explain_runs=("nope",)))
    with pytest.raises(InputError, match="pairs"):
        evaluate_store(url, EvaluateParams(pairs=(("r1", "r9"),)))
    with pytest.raises(InputError, match="label"):
        evaluate_store(url, EvaluateParams(label="nonexistent"))


def write_per_model_run(url: str, run: str = "pm") -> np.ndarray:
    """Add an explain run with per-model means of 3 models (``attr_ig_model``) to a demo store; return
    them, (model, sample, gene)."""
    n = 2 * N_PER_CLASS
    per_model = np.random.default_rng(5).normal(size=(3, n, N_GENES)).astype(np.float32)
    res = xr.Dataset(
        {
            "attr_ig": (("sample", "gene"), per_model.mean(axis=0)),
            "attr_ig_model": (("model", "sample", "gene"), per_model),
        },
        coords={
            "sample": [f"s{i:03d}" for i in range(n)],
            "gene": [f"g{i:02d}" for i in range(N_GENES)],
            "model": [0, 1, 2],
        },
    )
    write_result(url, f"explain/{run}", res)
    return per_model


def test_reproducibility_between_models_of_one_run(tmp_path: Path) -> None:
    url = make_demo_store(tmp_path, models=False)
    n = 2 * N_PER_CLASS
    per_model = write_per_model_run(url)
    out = evaluate_store(url, EvaluateParams(k=5, explain_runs=("pm",), block=16))
    ps = out.tables["reproducibility_samples"]
    assert sorted(set(zip(ps["run_a"], ps["run_b"], strict=True))) == [
        ("pm/model0", "pm/model1"), ("pm/model0", "pm/model2"), ("pm/model1", "pm/model2"),
    ]  # fmt: skip
    rows = ps[(ps["run_a"] == "pm/model0") & (ps["run_b"] == "pm/model2")]
    want = [spearmanr(np.abs(per_model[0, i]), np.abs(per_model[2, i])).statistic for i in range(n)]
    np.testing.assert_allclose(rows["spearman"], want, rtol=1e-6)
