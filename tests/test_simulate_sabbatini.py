"""Sabbatini & Manganaro datasets A-D: sizes, ground truth against scipy/sklearn, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from gexplain.pipelines.simulate import simulate_sabbatini
from gexplain.storage.errors import InputError
from gexplain.storage.store import open_store
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsClassifier


def _load(dataset: str, n_per_group: int = 300, seed: int = 5, **kw):
    kw.setdefault("overwrite", True)
    url = simulate_sabbatini(
        f"memory://sim-sabbatini/{dataset}-{n_per_group}-{seed}-{len(kw)}.zarr",
        dataset=dataset,
        seed=seed,
        n_per_group=n_per_group,
        **kw,
    )
    return open_store(url).load()


def _mwu_found(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = stats.mannwhitneyu(x[y], x[~y], axis=0).pvalue
    return stats.false_discovery_control(p, method="bh") < 0.05


def test_sizes_follow_the_paper():
    c = _load("C", n_per_group=1000)
    assert c.sizes["sample"] == 2000 and c.sizes["gene"] == 1000
    kinds = c["truth_kind"].values
    assert (kinds == "noise").sum() == 800 and (kinds == "correlated").sum() == 198
    assert (kinds == "circle").sum() == 2 and c["truth_informative"].values.sum() == 2
    assert (c["sample_group"].values == "group_0").sum() == 1000
    assert c.attrs["label_column"] == "sample_group"
    # correlations with the parent variable, up to 0.99, match the declared rho (numpy reference)
    x = c["log_expr"].values.astype(float)
    corr = c["truth_correlated_with"].values
    rho = c["truth_correlation"].values
    for g in np.flatnonzero(corr >= 0):
        assert abs(np.corrcoef(x[:, g], x[:, corr[g]])[0, 1] - rho[g]) < 0.06
    assert rho.max() == pytest.approx(0.99)
    assert (kinds[corr[corr >= 0]] != "correlated").all()
    for name, n_genes in (("A", 20), ("B", 20), ("D", 1000)):
        ds = _load(name, n_per_group=50)
        assert ds.sizes == {"sample": 100, "gene": n_genes}
        assert ds["counts"].dtype == np.int32 and ds["log_expr"].dtype == np.float32
        assert ds.gene.values[0] == "x1"  # the paper's variable names
    assert _load("D", n_per_group=50)["truth_informative"].values.sum() == 10


def test_noise_is_uniform_and_b_has_a_gamma_radius_around_a_normal_core():
    b = _load("B", n_per_group=1000)
    x = b["log_expr"].values.astype(float)
    kinds = b["truth_kind"].values
    for g in np.flatnonzero(kinds == "noise")[:4]:
        assert stats.kstest(x[:, g], stats.uniform(loc=-2, scale=4).cdf).pvalue > 1e-3
    y = b["sample_group"].values == "group_1"
    pair = np.flatnonzero(kinds == "circle")
    inner, outer = x[y][:, pair], x[~y][:, pair]
    for g in range(2):  # inner: N(0, 0.5^2) per coordinate
        assert stats.kstest(inner[:, g], stats.norm(0, 0.5).cdf).pvalue > 1e-3
    radius = np.hypot(outer[:, 0], outer[:, 1])  # outer: 1.5 + Gamma(2, 0.25), uniform angle
    assert stats.kstest(radius, stats.gamma(2.0, loc=1.5, scale=0.25).cdf).pvalue > 1e-3
    angle = np.arctan2(outer[:, 1], outer[:, 0])
    assert stats.kstest(angle, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3


def test_paper_layout_puts_the_pairs_where_the_paper_drew_them():
    for name, pair in (("A", ["x9", "x20"]), ("B", ["x4", "x17"]), ("C", ["x23", "x83"])):
        ds = _load(name, n_per_group=10, layout="paper")
        assert ds.gene.values[ds["truth_informative"].values].tolist() == pair


def test_rank_test_finds_clouds_but_not_circles_while_the_radius_separates():
    a = _load("A")
    y = a["sample_group"].values == "group_1"
    found = _mwu_found(a["log_expr"].values, y)
    np.testing.assert_array_equal(found, a["truth_mode"].values == "linear")

    b = _load("B")
    y = b["sample_group"].values == "group_1"
    for layer in ("log_expr", "counts"):
        assert not _mwu_found(b[layer].values.astype(float), y).any()
    circle = np.flatnonzero(b["truth_kind"].values == "circle")
    x = b["log_expr"].values[:, circle].astype(float)
    assert roc_auc_score(y, -np.hypot(x[:, 0], x[:, 1])) > 0.99  # the inner circle is group 1
    assert roc_auc_score(y, x[:, 0]) < 0.6 and roc_auc_score(y, x[:, 1]) < 0.6


def test_counts_track_the_values_monotonically_with_equal_group_means_for_circles():
    b = _load("B", n_per_group=1000)
    circle = b["truth_kind"].values == "circle"
    x = b["log_expr"].values[:, circle].astype(float)
    counts = b["counts"].values[:, circle].astype(float)
    for g in range(2):
        assert stats.spearmanr(x[:, g], counts[:, g]).statistic > 0.95
    y = b["sample_group"].values == "group_1"
    welch = stats.ttest_ind(counts[y], counts[~y], equal_var=False).pvalue
    assert (welch > 0.01).all()


def test_dataset_d_counts_hide_circles_from_rank_tests_but_not_from_a_pair_model():
    d = _load("D", n_per_group=400)
    y = d["sample_group"].values == "group_1"
    mode, pair = d["truth_mode"].values, d["truth_pair"].values
    found = _mwu_found(d["counts"].values.astype(float), y)
    assert not found[mode == "nonlinear"].any()
    assert found[mode == "none"].mean() <= 0.05
    x = d["log_expr"].values.astype(float)
    for p in range(3):
        xy = x[:, pair == p]
        xy = (xy - xy.mean(axis=0)) / xy.std(axis=0)
        proba = cross_val_predict(KNeighborsClassifier(25), xy, y, cv=3, method="predict_proba")[:, 1]
        assert roc_auc_score(y, proba) > 0.8


def test_deterministic_by_seed_across_chunkings():
    a = _load("C", n_per_group=40, chunks={"sample": 8, "gene": 100})
    b = _load("C", n_per_group=40, chunks={"sample": 2048, "gene": 2048}, overwrite=True)
    c = _load("C", n_per_group=40, seed=6)
    np.testing.assert_array_equal(a["log_expr"].values, b["log_expr"].values)
    np.testing.assert_array_equal(a["counts"].values, b["counts"].values)
    assert not np.array_equal(a["log_expr"].values, c["log_expr"].values)


def test_unknown_dataset_is_an_input_error():
    with pytest.raises(InputError, match="--dataset"):
        simulate_sabbatini("memory://sim-sabbatini/bad.zarr", dataset="E", seed=0)
