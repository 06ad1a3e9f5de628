"""Saturation pools from explain_block, checked against Captum; curves and summary tables."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from captum.attr import IntegratedGradients
from gexplain.pipelines.evaluate.run import sample_subset
from gexplain.pipelines.evaluate.saturation import inter_model_curve, resampled_curve, saturation_curve
from gexplain.pipelines.evaluate.saturation_stage import SaturationParams, saturation_part, saturation_pools
from gexplain.pipelines.evaluate.stage import EvaluateParams
from gexplain.pipelines.explain.references import compute_reference_stats, draw_references
from gexplain.pipelines.models.architectures import MLP
from gexplain.pipelines.models.load import load_models
from gexplain.pipelines.models.persist import read_model, save_model, state_bytes
from gexplain.storage.store import open_store, write_result
from scipy.stats import spearmanr
from test_evaluate_store import make_demo_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_demo_store(tmp_path_factory.mktemp("saturation"))


PARAMS = SaturationParams(
    enabled=True, axes=["references", "repeats"], pool=4, samples=6, n_steps=16, draws=2
)
OPTS = EvaluateParams(k=5, seed=3)


def test_reference_pool_items_equal_captum_ig(store: str) -> None:
    pools = saturation_pools(store, OPTS, PARAMS)
    pool = pools[("integrated_gradients", "references")][0]  # the only model of the demo store
    assert pools[("integrated_gradients", "references")].shape == (1, 4, 6, 50)
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
    assert not np.allclose(pools[("integrated_gradients", "repeats")][0], pool)


def test_saturation_curve_against_scipy_on_tiny_pool() -> None:
    """4 items x 2 samples x 5 genes. n=1: all 6 item pairs (no permutation involved); n=2: the
    two halves of the documented permutation ``default_rng([seed, n, d])``, averaged explicitly.
    Spearman from scipy on |values|, top-2 overlap from explicit sets."""
    pool = np.array(
        [
            [[1.0, -4.0, 2.5, 0.3, 3.0], [0.1, 0.9, -2.0, 5.0, 1.5]],
            [[0.5, 3.5, -2.0, 1.0, 4.0], [2.2, 0.4, 1.0, -3.0, 0.2]],
            [[2.0, 1.0, -3.0, 0.2, 5.0], [1.1, -0.3, 4.0, 2.5, 0.6]],
            [[-1.5, 2.5, 0.1, 0.7, 3.3], [0.8, 1.9, -0.5, 4.2, 2.9]],
        ]
    )

    def top2(v: np.ndarray) -> set[int]:
        return set(np.argsort(-np.abs(v))[:2].tolist())

    def pair_metrics(a: np.ndarray, b: np.ndarray) -> tuple[list[float], list[float]]:
        rho = [spearmanr(np.abs(a[s]), np.abs(b[s])).statistic for s in range(2)]
        ovl = [len(top2(a[s]) & top2(b[s])) / 2 for s in range(2)]
        return rho, ovl

    curve = saturation_curve(pool, k=2, n_draws=2, max_replicates=8, seed=11).set_index("n")
    assert list(curve.index) == [1, 2]
    rho1, ovl1 = [], []
    for i, j in combinations(range(4), 2):
        r, o = pair_metrics(pool[i], pool[j])
        rho1 += r
        ovl1 += o
    assert curve.loc[1, "n_pairs"] == 2 * 6
    assert curve.loc[1, "spearman_mean"] == pytest.approx(np.mean(rho1))
    assert curve.loc[1, "spearman_sd"] == pytest.approx(np.std(rho1))
    assert curve.loc[1, "top_k_overlap_mean"] == pytest.approx(np.mean(ovl1))
    rho2, ovl2 = [], []
    for d in range(2):
        order = np.random.default_rng([11, 2, d]).permutation(4)
        first = (pool[order[0]] + pool[order[1]]) / 2
        second = (pool[order[2]] + pool[order[3]]) / 2
        r, o = pair_metrics(first, second)
        rho2 += r
        ovl2 += o
    assert curve.loc[2, "n_pairs"] == 2
    assert curve.loc[2, "spearman_mean"] == pytest.approx(np.mean(rho2))
    assert curve.loc[2, "top_k_overlap_mean"] == pytest.approx(np.mean(ovl2))
    assert curve.loc[2, "top_k_overlap_sd"] == pytest.approx(np.std(ovl2))


def test_saturation_tables(store: str) -> None:
    tables = saturation_part(store, OPTS, PARAMS)
    curves = tables["saturation_curves"]
    # one model in the demo store: only the intra-model variant, said in n_models
    assert set(curves["curve"]) == {
        "integrated_gradients/references/intra_model",
        "integrated_gradients/repeats/intra_model",
    }
    assert (curves["n_models"] == 1).all() and (curves["variant"] == "intra_model").all()
    assert sorted(set(curves["n"])) == [1, 2]
    # pool of 4 items, max_replicates >= 4: n=1 compares all 6 item pairs per draw, n=2 one pair
    got = curves[curves["curve"] == "integrated_gradients/references/intra_model"].set_index("n")
    assert got.loc[1, "n_pairs"] == 6 * PARAMS.draws and got.loc[2, "n_pairs"] == PARAMS.draws
    assert ((got["spearman_mean"] > -1) & (got["spearman_mean"] <= 1)).all()
    summary = tables["saturation_summary"].set_index("curve")
    assert summary.loc["integrated_gradients/references/intra_model", "max_n"] == 2
    gain = got.loc[2, "spearman_mean"] - got.loc[1, "spearman_mean"]
    expected_sat = 1 if gain < 0.01 else None
    assert summary.loc[
        "integrated_gradients/references/intra_model", "saturation_n_spearman"
    ] == expected_sat or (
        expected_sat is None
        and np.isnan(summary.loc["integrated_gradients/references/intra_model", "saturation_n_spearman"])
    )


def test_no_model_set_means_no_curves(tmp_path: Path) -> None:
    url = make_demo_store(tmp_path, models=False)
    assert saturation_part(url, OPTS, PARAMS) == {}


def test_models_pool_from_stored_per_model_means(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a per_model run stored, the models pool is that run's per-model means (models of the
    set only, nothing recomputed) and its curve is scipy's Spearman over the model pairs."""
    url = make_demo_store(tmp_path)
    weights, meta = read_model(url, "default", 0)
    meta = {k: v for k, v in meta.items() if k not in ("replicate", "versions")}
    for k in (1, 2):
        torch.manual_seed(k)
        save_model(url, "default", k, state_bytes(MLP(50, 2, hidden=8, dropout=0.1)), meta)
    ds = open_store(url)
    samples, genes = ds["sample"].values.astype(str), ds["gene"].values.astype(str)
    per_model = np.random.default_rng(5).normal(size=(4, samples.size, genes.size)).astype(np.float32)
    write_result(
        url,
        "explain/pm",
        xr.Dataset(
            {
                "attr_integrated_gradients": (("sample", "gene"), per_model.mean(0)),
                "attr_integrated_gradients_model": (("model", "sample", "gene"), per_model),
            },
            coords={"model": [0, 9, 1, 2], "sample": samples, "gene": genes},  # model 9: not in the set
        ),
    )

    def no_recompute(*args: object, **kwargs: object) -> None:
        raise AssertionError("the models pool must come from the stored per-model means")

    monkeypatch.setattr("gexplain.pipelines.explain.compute.explain_block", no_recompute)
    params = SaturationParams(enabled=True, axes=["models"], pool=16, samples=samples.size, draws=1)
    pools = saturation_pools(url, OPTS, params)
    np.testing.assert_array_equal(pools[("integrated_gradients", "models")], per_model[[0, 2, 3]])
    curves = saturation_part(url, OPTS, params)["saturation_curves"]
    curve = curves[curves["variant"] == "intra_model"].set_index("n")
    assert list(curve.index) == [1]
    rho = [
        spearmanr(np.abs(per_model[a, s]), np.abs(per_model[b, s])).statistic
        for a, b in combinations([0, 2, 3], 2)
        for s in range(samples.size)
    ]
    assert curve.loc[1, "n_pairs"] == 3
    assert curve.loc[1, "spearman_mean"] == pytest.approx(np.mean(rho))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_repeat_pool_is_the_exact_decomposition_of_explicit_repeats(store: str) -> None:
    """Repeats-axis items come from the per-unit terms, not from recomputing: item k equals Captum
    IG with repeat k's keyed dropout mask and the cohort references, averaged over references."""
    from gexplain.pipelines.evaluate.saturation_stage import EXACT_REPEAT_VARIANCE
    from gexplain.pipelines.explain.modes import dropout_mask
    from gexplain.pipelines.explain.references import draw_reference_sets

    params = SaturationParams(enabled=True, axes=["repeats"], pool=4, samples=3, n_steps=16, n_references=2)
    pool = saturation_pools(store, OPTS, params)[("integrated_gradients", "repeats")][0]
    ds = open_store(store)
    pick = sample_subset(np.asarray(ds["sample"].values), 3, OPTS.seed)
    x_all = np.asarray(ds["log_expr"].values, dtype=np.float32)
    targets_all = (np.asarray(ds["sample_tissue"].values).astype(str) == "B").astype(np.int64)
    stats = compute_reference_stats(x_all, targets_all)
    loaded = load_models(store, "default")[0]
    model = loaded.module.eval()
    sets = draw_reference_sets("universal", 2, stats, OPTS.seed, 2, 50)
    hidden = model.fc1.out_features
    for k in range(4):
        for j, s in enumerate(pick):
            mask = torch.from_numpy(
                dropout_mask(OPTS.seed, loaded.replicate, int(s), k, 0, (hidden,), model.dropout.p)
            )

            def masked(v: torch.Tensor, mask: torch.Tensor = mask) -> torch.Tensor:
                z = model.act(model.bn(model.fc1(model.standardize(v))))
                return model.fc2(z * mask)

            xi = torch.tensor(x_all[s : s + 1])
            want = np.mean(
                [
                    IntegratedGradients(masked)
                    .attribute(xi, baselines=torch.tensor(r[None]), target=int(targets_all[s]), n_steps=16)
                    .detach()
                    .numpy()[0]
                    for r in sets.values[0]
                ],
                axis=0,
            )
            np.testing.assert_allclose(pool[k, j], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert EXACT_REPEAT_VARIANCE[("integrated_gradients", 0)] > 0


# --- Zhao et al. (2022) Methods, written out directly --------------------------------------------
# "Simulation for optimal repeat number on the same model": for each of 5 models, the score with n
# repeats is the mean of n of its repeats chosen at random; Spearman's correlation between the 5
# models' scores over all C(5, 2) pairs. "... optimal number of aggregated models": K = max(60 / n, 4)
# replicates, each the mean of n of the 60 models chosen at random; all C(K, 2) pairs. Below, a
# plain loop per sample with scipy's spearmanr on |scores| (gexplain ranks by absolute attribution),
# using the random choices the implementation documents (``default_rng([seed, n, d, j])``).


def _paper_repeats(pools: np.ndarray, n: int, seed: int, draws: int) -> float:
    m, items, s_, _ = pools.shape
    rhos = []
    for d in range(draws):
        reps = []
        for j in range(m):
            chosen = np.random.default_rng([seed, n, d, j]).permutation(items)[:n]
            reps.append(sum(pools[j, c] for c in chosen) / n)
        for a in range(m):
            for b in range(a + 1, m):
                rhos += [spearmanr(np.abs(reps[a][i]), np.abs(reps[b][i])).statistic for i in range(s_)]
    return float(np.mean(rhos))


def _paper_models(pool: np.ndarray, n: int, seed: int) -> tuple[float, int]:
    m = pool.shape[0]
    big_k = max(m // n, 4)
    reps = []
    for r in range(big_k):
        chosen = np.random.default_rng([seed, n, 0, r]).permutation(m)[:n]
        reps.append(pool[chosen].mean(axis=0))
    rhos = [
        spearmanr(np.abs(reps[a][i]), np.abs(reps[b][i])).statistic
        for a, b in combinations(range(big_k), 2)
        for i in range(pool.shape[1])
    ]
    return float(np.mean(rhos)), len(list(combinations(range(big_k), 2)))


def test_inter_model_curve_is_the_papers_procedure() -> None:
    rng = np.random.default_rng(0)
    # 5 models whose limits differ (model effect) plus repeat noise: the curve saturates below 1
    limits = rng.normal(size=(5, 1, 3, 30)) + rng.normal(size=(1, 1, 3, 30)) * 2
    pools = limits + rng.normal(size=(5, 8, 3, 30))
    curve = inter_model_curve(pools, k=5, n_draws=3, seed=4).set_index("n")
    assert list(curve.index) == [1, 2, 4, 8]
    for n in curve.index:
        assert curve.loc[n, "spearman_mean"] == pytest.approx(_paper_repeats(pools, n, 4, 3), rel=1e-12)
        assert curve.loc[n, "n_pairs"] == 10 * 3
    # intra-model curves on one model's pool tend to 1; the paper's stay at the between-model level
    intra = saturation_curve(pools[0], k=5, n_draws=3, seed=4).set_index("n")
    assert intra["spearman_mean"].iloc[-1] > curve.loc[4, "spearman_mean"] + 0.1
    limit = np.mean(
        [
            spearmanr(np.abs(limits[a, 0, i]), np.abs(limits[b, 0, i])).statistic
            for a, b in combinations(range(5), 2)
            for i in range(3)
        ]
    )
    assert curve.loc[8, "spearman_mean"] < limit + 0.05


def test_resampled_models_curve_is_the_papers_procedure() -> None:
    rng = np.random.default_rng(1)
    pool = rng.normal(size=(1, 4, 40)) + rng.normal(size=(12, 4, 40))
    curve = resampled_curve(pool, k=5, seed=2).set_index("n")
    assert list(curve.index) == [1, 2, 4]  # up to 12 // 3 = 4
    for n in curve.index:
        rho, pairs = _paper_models(pool, n, 2)
        assert curve.loc[n, "spearman_mean"] == pytest.approx(rho, rel=1e-12)
        assert curve.loc[n, "n_pairs"] == pairs  # K = 12, 6, 4 -> 66, 15, 6 pairs
    assert list(curve["n_pairs"]) == [66, 15, 6]
