"""Saturation pools from explain_block, checked against Captum; curves and summary tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from test_evaluate_store import make_demo_store

from pipelines.evaluate.run import EvaluateOptions, sample_subset
from pipelines.evaluate.saturation import saturation_curve
from pipelines.evaluate.saturation_stage import SaturationParams, saturation_part, saturation_pools
from pipelines.explain.references import compute_reference_stats, draw_references
from pipelines.models.load import load_models
from storage.store import open_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_demo_store(tmp_path_factory.mktemp("saturation"))


PARAMS = SaturationParams(
    enabled=True, axes=["references", "repeats"], pool=4, samples=6, n_steps=16, draws=2
)
OPTS = EvaluateOptions(k=5, seed=3)


def test_reference_pool_items_equal_captum_ig(store: str) -> None:
    pools = saturation_pools(store, OPTS, PARAMS)
    pool = pools[("integrated_gradients", "references")]
    assert pool.shape == (4, 6, 50)
    ds = open_store(store)
    pick = sample_subset(np.asarray(ds["sample"].values), 6, OPTS.seed)
    x_all = np.asarray(ds["log_expr"].values, dtype=np.float32)
    targets_all = (np.asarray(ds["sample_tissue"].values).astype(str) == "B").astype(np.int64)
    stats = compute_reference_stats(x_all, targets_all)
    model = load_models(store, "default")[0].module.eval()
    ig = IntegratedGradients(model)
    x = torch.tensor(x_all[pick])
    for i in range(4):
        ref = draw_references("universal", 1, stats, pick, i, targets_all[pick], OPTS.seed, 50)[:, 0]
        want = ig.attribute(
            x, baselines=torch.tensor(ref), target=torch.tensor(targets_all[pick]), n_steps=16
        )
        np.testing.assert_allclose(pool[i], want.detach().numpy(), rtol=1e-4, atol=1e-6)
    # the repeats pool uses dropout: its items differ from the deterministic ones
    assert not np.allclose(pools[("integrated_gradients", "repeats")], pool)


def test_saturation_tables(store: str) -> None:
    tables = saturation_part(store, OPTS, PARAMS)
    curves = tables["saturation_curves"]
    assert set(curves["curve"]) == {"integrated_gradients/references", "integrated_gradients/repeats"}
    assert sorted(set(curves["n"])) == [1, 2]
    pool = saturation_pools(store, OPTS, PARAMS)[("integrated_gradients", "references")]
    want = saturation_curve(pool, k=5, n_draws=2, max_replicates=PARAMS.max_replicates, seed=OPTS.seed)
    got = curves[curves["curve"] == "integrated_gradients/references"].reset_index(drop=True)
    np.testing.assert_allclose(got["spearman_mean"], want["spearman_mean"])
    summary = tables["saturation_summary"].set_index("curve")
    assert summary.loc["integrated_gradients/references", "max_n"] == 2


def test_no_model_set_means_no_curves(tmp_path: Path) -> None:
    url = make_demo_store(tmp_path, models=False)
    assert saturation_part(url, OPTS, PARAMS) == {}
