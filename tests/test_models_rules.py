"""Sabbatini & Manganaro's fixed decision rules: geometry against numpy closed forms, storage
round trip through the ordinary model-set format, and the train stage's rule kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gexplain.pipelines.models.architectures import ARCHITECTURES
from gexplain.pipelines.models.data import read_training_data
from gexplain.pipelines.models.load import load_models
from gexplain.pipelines.models.rules import CircleRule, LinearRule, fit_rule, save_rule_set
from gexplain.pipelines.models.stage import TrainStageParams, run_training
from gexplain.pipelines.simulate.sabbatini import simulate_sabbatini
from gexplain.storage.errors import InputError
from gexplain.storage.store import open_store


def test_linear_rule_is_the_perpendicular_bisector_of_the_centres() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal([2.0, 0.0], 0.3, (200, 2))
    b = rng.normal([0.0, 1.0], 0.3, (200, 2))
    xy, y = np.vstack([a, b]), np.r_[np.zeros(200, int), np.ones(200, int)]
    params = fit_rule("rule_linear", xy, y)
    c0, c1 = a.mean(axis=0), b.mean(axis=0)
    normal = np.asarray(params["normal"])
    # perpendicular to the line through the centres, through their midpoint
    assert np.cross(normal, c1 - c0) == pytest.approx(0.0, abs=1e-12)
    assert normal @ (c1 - c0) > 0
    np.testing.assert_allclose(params["midpoint"], (c0 + c1) / 2)
    rule = LinearRule(5, 2, pair=[3, 1], **params)
    x = np.zeros((3, 5))
    x[:, [3, 1]] = [c0, c1, (c0 + c1) / 2 + 0.01 * normal]
    out = rule(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_array_equal(out.argmax(axis=1), [0, 1, 1])
    np.testing.assert_array_equal(out.sum(axis=1), 1.0)  # hard labels, one-hot


def test_circle_rule_is_centred_on_the_inner_cloud() -> None:
    rng = np.random.default_rng(1)
    inner = rng.normal([1.0, -1.0], 0.3, (300, 2))
    phi = rng.uniform(0, 2 * np.pi, 300)
    outer = np.c_[np.cos(phi), np.sin(phi)] * 2.0 + [1.0, -1.0]
    xy, y = np.vstack([outer, inner]), np.r_[np.zeros(300, int), np.ones(300, int)]
    params = fit_rule("rule_circle", xy, y)
    np.testing.assert_allclose(params["centre"], inner.mean(axis=0))
    assert params["positive"] == 1  # the inner (smaller-spread) class is found
    assert 0.9 < params["radius"] < 2.0
    rule = CircleRule(2, 2, pair=[0, 1], sharpness=4.0, **params)
    out = rule(torch.as_tensor(xy, dtype=torch.float32)).numpy()
    assert (out.argmax(axis=1) == y).mean() > 0.99
    # soft logits: +-sharpness * (r - |x - c|) / 2
    d = params["radius"] - np.linalg.norm(xy[0] - params["centre"])
    np.testing.assert_allclose(out[0], [-2.0 * d, 2.0 * d], rtol=1e-5)


def test_rules_round_trip_through_the_model_set_format(tmp_path) -> None:
    url = simulate_sabbatini(str(tmp_path / "b.zarr"), dataset="B", seed=2, n_per_group=100)
    ds = open_store(url)
    data = read_training_data(ds, "group", "log_expr")
    summary = save_rule_set(url, "rule", "rule_circle", data)
    assert summary["accuracy"] > 0.95
    (loaded,) = load_models(url, "rule")
    assert loaded.arch == "rule_circle" and isinstance(loaded.module, CircleRule)
    assert set(ARCHITECTURES) >= {"mlp", "cnn", "rule_linear", "rule_circle"}
    pair = np.flatnonzero(ds["truth_informative"].values)
    assert loaded.module.pair.tolist() == pair.tolist()
    x = torch.as_tensor(data.x)
    predicted = loaded.module(x).argmax(dim=1).numpy()
    assert (predicted == data.y).mean() == pytest.approx(summary["accuracy"])
    with pytest.raises(InputError, match="already exists"):
        save_rule_set(url, "rule", "rule_circle", data)
    with pytest.raises(InputError, match="rule_genes"):
        save_rule_set(url, "other", "rule_linear", data, genes=["x1"])


def test_train_stage_places_a_rule_instead_of_training(tmp_path) -> None:
    url = simulate_sabbatini(str(tmp_path / "a.zarr"), dataset="A", seed=3, n_per_group=100)
    out = run_training(
        url, TrainStageParams(arch="rule_linear", label="group", model_set="paper"), 0, runtime=None
    )
    assert out["model_set"] == "paper" and out["accuracy"] > 0.9
    assert isinstance(load_models(url, "paper")[0].module, LinearRule)
