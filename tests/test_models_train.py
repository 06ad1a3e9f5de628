"""Training: accuracy on simulated and real data, determinism across Ray workers, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.models.data import read_training_data, stratified_split
from gexplain.pipelines.models.load import load_models
from gexplain.pipelines.models.persist import state_from_bytes
from gexplain.pipelines.models.replicates import replicate_jobs, replicate_seeds, run_jobs
from gexplain.pipelines.models.stage import TrainStageParams, run_training
from gexplain.pipelines.models.train import TrainParams, jittered, train_model
from gexplain.pipelines.simulate import simulate_cohort
from gexplain.storage.errors import InputError
from gexplain.storage.store import create_store, open_store
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score

SMALL_COHORT = {"n_program_genes": 20, "n_xor_pairs": 2, "n_circle_pairs": 2}


def make_store(
    url: str, x: np.ndarray, labels: dict[str, np.ndarray], genes: np.ndarray | None = None
) -> str:
    """A store with one ``log_expr`` layer and the given ``sample_*`` label columns."""
    n, g = x.shape
    writer = create_store(
        url,
        sample_ids=np.array([f"S{i:04d}" for i in range(n)]),
        gene_ids=genes if genes is not None else np.array([f"G{j:04d}" for j in range(g)]),
        coords={name: ("sample", values) for name, values in labels.items()},
        layers={"log_expr": "float32"},
        chunks={"sample": 64, "gene": 64},
    )
    writer.write_block({}, {"log_expr": x.astype(np.float32)})
    return writer.commit()


def gaussian_classes(n_per_class: int, n_genes: int, n_classes: int, seed: int, shift: float = 3.0):
    """Separable Gaussian classes: class c shifts genes [5c, 5c+5) up by ``shift`` (log2 units)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = rng.normal(4.0, 1.0, size=(y.size, n_genes))
    for c in range(n_classes):
        x[y == c, 5 * c : 5 * c + 5] += shift
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def cohort_store(tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("cohort") / "cohort.zarr")
    return simulate_cohort(url, n_samples=1000, n_genes=500, n_classes=10, seed=11, **SMALL_COHORT)


def test_mlp_reaches_95_percent_on_simulated_10_class_cohort(cohort_store, ray_runtime):
    params = TrainStageParams(replicates=2, max_epochs=25, early_stopping=5, model_set="sim")
    out = run_training(cohort_store, params, seed=3, runtime=ray_runtime)
    assert len(out["checkpoints"]) == 2
    # Independent check: reload the stored models and score them with sklearn on the held-out samples.
    ds = open_store(cohort_store)
    models = load_models(cohort_store, "sim")
    for model in models:
        test = ds.sel(sample=np.asarray(model.metadata["test_samples"]))
        assert test.sizes["sample"] >= 90
        with torch.no_grad():
            logits = model.module(torch.from_numpy(test["log_expr"].values.astype(np.float32)))
        predicted = model.classes[logits.argmax(1).numpy()]
        acc = accuracy_score(test["sample_tissue"].values.astype(str), predicted)
        assert acc >= 0.95
        assert model.metrics["accuracy"] == pytest.approx(acc)
    assert models[0].seed != models[1].seed


def _weights(result) -> dict[str, torch.Tensor]:
    return state_from_bytes(result.weights)


def _same(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_same_weights_with_one_or_two_workers_and_outside_ray(tmp_path, ray_runtime):
    x, y = gaussian_classes(40, 30, 3, seed=1)
    url = make_store(str(tmp_path / "g.zarr"), x, {"sample_group": np.array(["a", "b", "c"])[y]})
    data = read_training_data(url, "group")
    params = TrainParams(max_epochs=3, batch_size=32, jitter=0.2)
    split = stratified_split(data.y, seed=5)
    jobs = replicate_jobs(split, params, seed=5, k=3)
    outside = run_jobs(data, jobs, use_ray=False)
    one_worker = run_jobs(data, jobs, use_ray=True, max_parallel=1)
    two_workers = run_jobs(data, jobs, use_ray=True, max_parallel=2)
    for a, b, c in zip(outside, one_worker, two_workers, strict=True):
        assert _same(a, b) and _same(a, c)
    # Different seeds (replicates, and another run seed) give different weights.
    assert not _same(outside[0], outside[1])
    other = run_jobs(data, replicate_jobs(split, params, seed=6, k=1), use_ray=False)
    assert not _same(outside[0], other[0])


def test_replicate_seeds_and_jitter_bounds():
    seeds = replicate_seeds(9, 5)
    assert len(set(seeds)) == 5 and replicate_seeds(9, 3) == seeds[:3]
    base = TrainParams(jitter=0.5)
    lrs = []
    for s in seeds:
        p = jittered(base, s)
        for value, ref in ((p.learning_rate(), 1e-3), (p.weight_decay, 1e-3), (p.dropout, 0.25)):
            assert ref / 1.5 - 1e-12 <= value <= ref * 1.5 + 1e-12
        lrs.append(p.learning_rate())
    assert len(set(lrs)) == 5


def test_cnn_learns_separable_classes():
    x, y = gaussian_classes(60, 64, 3, seed=2, shift=4.0)
    split = stratified_split(y, seed=0)
    params = TrainParams(arch="cnn", max_epochs=6, batch_size=32, gene_order="random")
    result = train_model(x, y, split, np.array(["a", "b", "c"]), params, seed=1)
    acc = accuracy_score(y[split.test], result.test_pred)
    assert acc >= 0.9
    assert result.hyperparameters["grid"] == 8  # ceil(sqrt(64)) = 8


def _brca(shared_data):
    folder = shared_data / "tcga-brca"
    expr = pd.read_csv(folder / "divergence_breastTCGA_log2tpm.csv", index_col=0)
    sheet = pd.read_csv(folder / "divergence_breastTCGA_samples.csv", index_col=0).loc[expr.columns]
    return expr.T.to_numpy(np.float32), sheet, expr.index.to_numpy().astype(str)


@pytest.mark.parametrize("label", ["group", "ER_status"])
def test_tcga_brca_accuracy_beats_majority_baseline(shared_data, tmp_path, label):
    x, sheet, genes = _brca(shared_data)
    labels = {f"sample_{c}": sheet[c].fillna("").to_numpy().astype(str) for c in ("group", "ER_status")}
    url = make_store(str(tmp_path / "brca.zarr"), x, labels, genes=genes)
    params = TrainStageParams(label=label, replicates=1, max_epochs=30, early_stopping=5, model_set=label)
    out = run_training(url, params, seed=0, runtime=None)
    model = load_models(url, label)[0]
    ds = open_store(url)
    test = ds.sel(sample=np.asarray(model.metadata["test_samples"]))
    truth = test[f"sample_{label}"].values.astype(str)
    with torch.no_grad():
        predicted = model.classes[model.module(torch.from_numpy(test["log_expr"].values)).argmax(1).numpy()]
    acc = accuracy_score(truth, predicted)
    train_truth = np.setdiff1d(ds.sample.values, test.sample.values)
    train_labels = ds.sel(sample=train_truth)[f"sample_{label}"].values.astype(str)
    train_labels = train_labels[train_labels != ""]
    baseline = DummyClassifier(strategy="most_frequent").fit(np.zeros((train_labels.size, 1)), train_labels)
    base_acc = accuracy_score(truth, baseline.predict(np.zeros((truth.size, 1))))
    print(
        f"TCGA BRCA {label}: MLP test accuracy {acc:.3f} (n={truth.size}), majority baseline {base_acc:.3f}"
    )
    assert out["test_accuracy"][0] == pytest.approx(acc)
    assert acc > base_acc


def _bad_store(tmp_path, x=None, labels=None) -> str:
    x = np.random.default_rng(0).normal(size=(6, 4)) if x is None else x
    labels = labels or {"sample_tissue": np.array(["lung", "lung", "liver", "liver", "skin", "skin"])}
    return make_store(str(tmp_path / "bad.zarr"), x, labels)


def test_bad_input_one_class(tmp_path):
    url = _bad_store(tmp_path, labels={"sample_tissue": np.array(["lung"] * 6)})
    with pytest.raises(InputError, match=r"'sample_tissue' has 1 class.*lung.*--label"):
        read_training_data(url, "sample_tissue")


def test_bad_input_class_with_one_sample_is_named(tmp_path):
    url = _bad_store(
        tmp_path, labels={"sample_tissue": np.array(["lung", "lung", "liver", "liver", "skin", "bone"])}
    )
    with pytest.raises(InputError, match=r"fewer than 2 samples: bone, skin"):
        read_training_data(url, "tissue")


def test_bad_input_nan_names_sample_and_gene(tmp_path):
    x = np.ones((6, 4))
    x[3, 2] = np.nan
    with pytest.raises(InputError, match=r"NaN.*sample 'S0003', gene 'G0002'"):
        read_training_data(_bad_store(tmp_path, x=x), "sample_tissue")


def test_bad_input_unknown_label_lists_existing(tmp_path):
    url = _bad_store(tmp_path)
    with pytest.raises(
        InputError, match=r"'sample_cancer' is not in the store.*--label must be one of: sample_tissue"
    ):
        read_training_data(url, "sample_cancer")
    with pytest.raises(InputError, match=r"layer 'tpm'.*--layer must be one of: log_expr"):
        read_training_data(url, "sample_tissue", layer="tpm")


def test_cli_train_and_exit_codes(tmp_path, capsys):
    x, y = gaussian_classes(20, 12, 2, seed=3)
    url = make_store(str(tmp_path / "c.zarr"), x, {"sample_tissue": np.array(["a", "b"])[y]})
    assert main(["train", url, "--label", "sample_tissue", "--epochs", "2", "--no-ray"]) == 0
    assert main(["train", url, "--label", "sample_tissue", "--epochs", "2", "--no-ray"]) == 2  # exists
    assert main(["train", url, "--label", "nope", "--no-ray", "--model-set", "x"]) == 2
    assert main(["train", url, "--epochs", "0", "--no-ray", "--model-set", "y"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "sample_tissue" in err and "max_epochs (--max-epochs 0)" in err
    assert len(load_models(url)) == 1


def test_train_stage_in_a_run_config(tmp_path, ray_runtime):
    from gexplain.pipelines.config import parse_config
    from gexplain.pipelines.progress import Progress
    from gexplain.pipelines.runner import run_config

    x, y = gaussian_classes(12, 16, 3, seed=5)
    tissues = np.array(["a", "b", "c"])[y]
    url = make_store(str(tmp_path / "st.zarr"), x, {"sample_tissue": tissues})
    config = tmp_path / "run.toml"
    config.write_text(
        f'[run]\nname = "t"\nout = "{tmp_path / "run"}"\nstore = "{url}"\nseed = 4\n\n'
        '[[stage]]\nkind = "train"\nname = "train"\n[stage.params]\n'
        'label = "sample_tissue"\nreplicates = 2\ncv = 3\nmax_epochs = 2\nbatch_size = 16\n'
    )
    result = run_config(parse_config(config), runtime=ray_runtime, progress=Progress(enabled=False))
    outputs = result["stages"][0]["outputs"]
    assert len(outputs["checkpoints"]) == 2 and len(load_models(url)) == 2
    confusion = pd.read_csv(outputs["cv_tables"][0], index_col=0)
    counts = pd.Series(tissues).value_counts().sort_index()
    np.testing.assert_array_equal(confusion.sum(axis=1).to_numpy(), counts.to_numpy())
    config.write_text(config.read_text().replace("cv = 3", "folds = 3"))
    with pytest.raises(InputError, match="folds"):
        parse_config(config)
