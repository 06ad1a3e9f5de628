"""The distributed attribution engine: results against Captum, determinism across actor counts,
actors writing their own blocks, fault tolerance (an actor killed mid-task) and resume after an
interrupted driver."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.explain import blockio, engine
from gexplain.pipelines.explain.engine import run_explain
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.models.architectures import MLP
from gexplain.pipelines.models.persist import save_model, state_bytes
from gexplain.pipelines.progress import SILENT
from gexplain.pipelines.runner import run_config
from gexplain.storage import store
from gexplain.storage.errors import InputError
from gexplain.storage.lease import release_all
from gexplain.storage.nodes import read_group
from gexplain.storage.paths import join
from gexplain.storage.store import BlockLedger, create_store, read_result, result_exists

N_SAMPLES, N_GENES, CLASSES, HIDDEN = 64, 50, ("a", "b", "c"), 16
BLOCK = 16


def _random_mlp(seed: int) -> MLP:
    torch.manual_seed(seed)
    model = MLP(N_GENES, len(CLASSES), hidden=HIDDEN, dropout=0.25)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[str, np.ndarray, np.ndarray, list[MLP]]:
    """A 64 x 50 store with log_expr and sample_tissue, and two random-init MLPs saved with it."""
    root = tmp_path_factory.mktemp("explain_engine")
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.5, size=(N_SAMPLES, N_GENES)).astype(np.float32)
    labels = np.array(CLASSES)[np.arange(N_SAMPLES) % len(CLASSES)]
    url = str(root / "cohort.zarr")
    writer = create_store(
        url,
        sample_ids=np.array([f"s{i}" for i in range(N_SAMPLES)]),
        gene_ids=np.array([f"g{j}" for j in range(N_GENES)]),
        coords={"sample_tissue": ("sample", labels)},
        layers={"log_expr": "float32"},
        chunks={"sample": 32, "gene": 32},
    )
    writer.write_block({}, {"log_expr": x})
    writer.commit()
    models = [_random_mlp(seed) for seed in (11, 12)]
    for k, model in enumerate(models):
        save_model(
            url,
            "default",
            k,
            state_bytes(model),
            {
                "arch": "mlp",
                "genes": [f"g{j}" for j in range(N_GENES)],
                "classes": list(CLASSES),
                "hyperparameters": model.hyperparameters(),
                "standardize": False,
                "layer": "log_expr",
                "label": "sample_tissue",
                "seed": 11 + k,
                "metrics": {},
            },
        )
    return url, x, labels, models


def _values(url: str, name: str, explainers: tuple[str, ...]) -> dict[str, np.ndarray]:
    ds = read_result(url, f"explain/{name}")
    out = {}
    for e in explainers:
        for suffix in ("", "_std", "_repeat_std", "_count"):
            if f"attr_{e}{suffix}" in ds:
                out[f"attr_{e}{suffix}"] = ds[f"attr_{e}{suffix}"].values
    return out


def test_engine_matches_captum_in_deterministic_mode(ray_runtime, cohort):
    url, x, labels, models = cohort
    spec = ExplainParams(
        explainers=["integrated_gradients", "saliency"],
        references="zero",
        mode="deterministic",
        repeats=2,
        repeat_mode="explicit",
        actors=1,
        sample_block=BLOCK,
    )
    summary = run_explain(url, spec, name="captum")
    assert summary.blocks == N_SAMPLES // BLOCK and summary.blocks_written == summary.blocks
    got = _values(url, "captum", spec.explainers)
    xt = torch.from_numpy(x)
    target = torch.as_tensor([CLASSES.index(v) for v in labels])
    per_model = {
        "integrated_gradients": [
            IntegratedGradients(m)
            .attribute(xt, torch.zeros_like(xt), target=target, n_steps=50)
            .detach()
            .numpy()
            for m in models
        ],
        "saliency": [Saliency(m).attribute(xt, target=target, abs=True).detach().numpy() for m in models],
    }
    for name, values in per_model.items():
        # 2 models x 2 identical repeats x 1 reference per sample
        stacked = np.stack([values[0], values[0], values[1], values[1]])
        np.testing.assert_allclose(got[f"attr_{name}"], stacked.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got[f"attr_{name}_std"], stacked.std(0, ddof=1), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(got[f"attr_{name}_count"], np.full(N_SAMPLES, 4))


MC_REPEATS = 3
MC_SPEC = ExplainParams(
    explainers=["integrated_gradients", "deeplift"],
    references="universal:3",
    repeats=MC_REPEATS,
    actors=1,
    sample_block=BLOCK,
)


@pytest.fixture(scope="module")
def reference_run(ray_runtime, cohort) -> dict[str, np.ndarray]:
    """MC-dropout run on one actor: the result every other run of ``MC_SPEC`` must reproduce."""
    url = cohort[0]
    summary = run_explain(url, MC_SPEC, name="one")
    assert summary.actors == 1 and summary.blocks_written == N_SAMPLES // BLOCK
    values = _values(url, "one", MC_SPEC.explainers)
    # non-trivial: dropout repeats and references vary, 2 models x 3 repeats x 3 references
    assert np.all(values["attr_integrated_gradients_repeat_std"] > 0)
    np.testing.assert_array_equal(values["attr_deeplift_count"], np.full(N_SAMPLES, 2 * 3 * 3))
    return values


def test_two_actors_with_one_killed_mid_task_give_the_one_actor_result(cohort, reference_run, tmp_path):
    url = cohort[0]
    marker = tmp_path / "crash-marker"
    killed = run_explain(url, MC_SPEC.model_copy(update={"actors": 2}), name="killed", crash_once=str(marker))
    assert killed.actors == 2
    assert marker.exists() and killed.actor_deaths == 1
    got = _values(url, "killed", MC_SPEC.explainers)
    for key, ref in reference_run.items():
        np.testing.assert_array_equal(got[key], ref, err_msg=key)


def test_actors_write_their_own_blocks_and_two_actors_give_the_one_actor_result(
    cohort, reference_run, monkeypatch
):
    url = cohort[0]
    driver_writes: list[str] = []

    def driver_write(url: str, group: str, *args, **kwargs) -> None:
        driver_writes.append(group)

    # the actors are other processes: only the driver's own region writes land here
    monkeypatch.setattr(store, "write_result_region", driver_write)
    monkeypatch.setattr(blockio, "write_result_region", driver_write)
    monkeypatch.setattr(engine, "write_result_region", driver_write, raising=False)
    two = run_explain(url, MC_SPEC.model_copy(update={"actors": 2}), name="two")
    assert two.actors == 2 and two.blocks_written == N_SAMPLES // BLOCK
    assert driver_writes == []
    got = _values(url, "two", MC_SPEC.explainers)
    for key, ref in reference_run.items():
        np.testing.assert_array_equal(got[key], ref, err_msg=key)
    markers = [
        read_group(join(url, "ledger", "explain", "two", blockio.block_key(b))) for b in range(two.blocks)
    ]
    writers = {m["writer"] for m in markers}
    assert writers and all(not w.endswith(f"-{os.getpid()}") for w in writers)  # written by actors


def test_interrupted_run_resumes_and_skips_finished_blocks(cohort, reference_run):
    url = cohort[0]

    class Interrupt(Exception):
        pass

    def stop_after_one(block: int, done: int, total: int) -> None:
        if done == 1:
            raise Interrupt

    # one actor, two blocks in flight: the driver stops while the second may still be written
    with pytest.raises(Interrupt):
        run_explain(url, MC_SPEC, name="resumed", on_block=stop_after_one)
    finished = len(BlockLedger(url, "explain/resumed").done_keys())
    assert 1 <= finished <= 2
    with pytest.raises(InputError, match="incomplete"):
        read_result(url, "explain/resumed")
    release_all()  # as a new process would: the rerun holds nothing until it takes the result's lease
    resumed = run_explain(url, MC_SPEC.model_copy(update={"actors": 2}), name="resumed")
    assert resumed.blocks_skipped >= finished and resumed.blocks_written >= N_SAMPLES // BLOCK - 2
    assert resumed.blocks_skipped + resumed.blocks_written == N_SAMPLES // BLOCK
    got = _values(url, "resumed", MC_SPEC.explainers)
    for key, ref in reference_run.items():
        np.testing.assert_array_equal(got[key], ref, err_msg=key)
    again = run_explain(url, MC_SPEC, name="resumed")
    assert (again.blocks_skipped, again.blocks_written, again.actors) == (N_SAMPLES // BLOCK, 0, 0)


def test_bad_options_raise_input_errors(cohort, reference_run):
    url = cohort[0]
    spec = ExplainParams(explainers=["saliency"], references="zero", repeats=1, overwrite=False)
    with pytest.raises(InputError, match="replicates \\[7\\]"):
        run_explain(url, spec.model_copy(update={"models": [7]}), name="bad")
    with pytest.raises(InputError, match="no model set 'nope'"):
        run_explain(url, spec.model_copy(update={"model_set": "nope"}), name="bad")
    with pytest.raises(ValueError, match="repeats"):
        ExplainParams(repeats=0)
    with pytest.raises(InputError, match="other parameters"):
        run_explain(
            url, MC_SPEC.model_copy(update={"repeats": MC_REPEATS + 1, "overwrite": False}), name="one"
        )
    # a CNN-only explainer on an MLP model set fails on the driver, before any result group exists
    with pytest.raises(InputError, match="guided_gradcam.*needs a CNN"):
        run_explain(url, spec.model_copy(update={"explainers": ["guided_gradcam"]}), name="cnn_only")
    assert not result_exists(url, "explain/cnn_only")


def test_explain_stage_in_a_run_config(ray_runtime, cohort, reference_run, tmp_path):
    url = cohort[0]
    config = tmp_path / "run.toml"
    config.write_text(
        f"""
[run]
name = "t"
out = "{tmp_path / "run"}"
store = "{url}"
seed = 0

[[stage]]
kind = "explain"
name = "staged"
[stage.params]
explainers = ["integrated_gradients", "deeplift"]
references = "universal:3"
repeats = 3
actors = 1
sample_block = {BLOCK}
repeat_block = 2
per_model = true
"""
    )
    manifest = run_config(parse_config(config), runtime=ray_runtime, progress=SILENT)
    outputs = manifest["stages"][0]["outputs"]
    assert outputs["path"] == "results/explain/staged" and outputs["blocks_written"] == N_SAMPLES // BLOCK
    ds = read_result(url, "explain/staged")
    assert list(ds["model"].values) == [0, 1]
    for e in MC_SPEC.explainers:
        # splitting repeats over tasks reorders only float64 sums
        np.testing.assert_allclose(ds[f"attr_{e}"].values, reference_run[f"attr_{e}"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ds[f"attr_{e}_count"].values, reference_run[f"attr_{e}_count"])
        # both models contribute equally many values: the overall mean is the mean of model means
        np.testing.assert_allclose(
            ds[f"attr_{e}_model"].values.mean(0), ds[f"attr_{e}"].values, rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "first"], "--models 'first'"),
        (["--explainers", "nope"], "unknown explainer 'nope'"),
        (["--references", "universal:x"], "--references"),
        (["--repeats", "0"], "--repeats"),
    ],
)
def test_cli_bad_options_exit_2(ray_runtime, cohort, capsys, args, message):
    assert main(["explain", cohort[0], *args]) == 2
    assert message in capsys.readouterr().err.replace("\n", "")


def test_collapsed_run_equals_explicit_run(ray_runtime, cohort, reference_run):
    """The engine's collapsed repeats (default) equal explicit repeats on the same draws."""
    url = cohort[0]
    run_explain(url, MC_SPEC.model_copy(update={"repeat_mode": "explicit"}), name="explicit")
    got = _values(url, "explicit", tuple(MC_SPEC.explainers))
    for e in MC_SPEC.explainers:
        np.testing.assert_allclose(got[f"attr_{e}"], reference_run[f"attr_{e}"], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(got[f"attr_{e}_count"], reference_run[f"attr_{e}_count"])
        assert f"attr_{e}_std" in got and f"attr_{e}_repeat_std" not in got


def test_unlabelled_samples_are_excluded_and_counted(ray_runtime, cohort, tmp_path, caplog):
    url, x, labels, models = cohort
    partial = labels.copy()
    partial[[3, 40]] = ""
    url2 = str(tmp_path / "partial.zarr")
    writer = create_store(
        url2,
        sample_ids=np.array([f"s{i}" for i in range(N_SAMPLES)]),
        gene_ids=np.array([f"g{j}" for j in range(N_GENES)]),
        coords={"sample_tissue": ("sample", partial)},
        layers={"log_expr": "float32"},
        chunks={"sample": 32, "gene": 32},
    )
    writer.write_block({}, {"log_expr": x})
    writer.commit()
    for k, model in enumerate(models):
        save_model(
            url2,
            "default",
            k,
            state_bytes(model),
            {
                "arch": "mlp",
                "genes": [f"g{j}" for j in range(N_GENES)],
                "classes": list(CLASSES),
                "hyperparameters": model.hyperparameters(),
                "standardize": False,
                "layer": "log_expr",
                "label": "sample_tissue",
                "seed": 11 + k,
                "metrics": {},
            },
        )
    params = ExplainParams(
        explainers=["deeplift"], references="zero", repeats=2, actors=1, sample_block=BLOCK
    )
    with caplog.at_level("WARNING", logger="gexplain"):
        run_explain(url2, params, name="some")
    assert "2 samples without a label are left out" in caplog.text
    ds = read_result(url2, "explain/some")
    count = ds["attr_deeplift_count"].values
    assert (count[[3, 40]] == 0).all() and (np.delete(count, [3, 40]) == 2 * 2).all()
    assert np.isnan(ds["attr_deeplift"].values[[3, 40]]).all()
    assert np.isfinite(np.delete(ds["attr_deeplift"].values, [3, 40], axis=0)).all()
    with pytest.raises(InputError, match="2 samples have no label"):
        run_explain(url2, params.model_copy(update={"unlabelled": "error"}), name="strict")


def test_fingerprint_covers_device_and_threads():
    from gexplain.pipelines.explain.engine import ModelSetInfo, fingerprint

    info = ModelSetInfo((0,), "log_expr", "tissue", ("a", "b"), ("x",))
    params = ExplainParams()
    sizes = {"sample": 4, "gene": 3}
    base = fingerprint(params, info, 0, 10, sizes, "cpu")
    assert fingerprint(params, info, 0, 10, sizes, "cuda") != base
    assert fingerprint(params.model_copy(update={"cpus_per_actor": 2}), info, 0, 10, sizes, "cpu") != base
    assert fingerprint(params.model_copy(update={"actors": 3}), info, 0, 10, sizes, "cpu") == base
