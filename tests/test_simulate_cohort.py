"""The cohort simulator: determinism, ground truth against scipy/sklearn, NB moments in closed form."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from gexplain.pipelines.simulate import simulate_cohort
from gexplain.storage.errors import InputError
from gexplain.storage.store import layer_chunks, open_store
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

SMALL = {"n_program_genes": 10, "n_xor_pairs": 3, "n_circle_pairs": 3}


@pytest.fixture(scope="module")
def cohort():
    url = simulate_cohort(
        "memory://sim-cohort/main.zarr", n_samples=900, n_genes=300, n_classes=3, seed=7, **SMALL
    )
    return open_store(url).load()


def _bh(pvalues: np.ndarray) -> np.ndarray:
    return stats.false_discovery_control(pvalues, method="bh")


def test_same_seed_same_store_whatever_chunks_and_workers(tmp_path):
    kw = {"n_samples": 70, "n_genes": 120, "n_classes": 2, "seed": 3, **SMALL}
    with dask.config.set(scheduler="sync"):
        a = open_store(simulate_cohort(str(tmp_path / "a.zarr"), chunks={"sample": 64, "gene": 64}, **kw))
    with dask.config.set(scheduler="threads", num_workers=2):
        b = open_store(simulate_cohort("memory://sim-cohort/b.zarr", chunks={"sample": 16, "gene": 50}, **kw))
    c = open_store(simulate_cohort("memory://sim-cohort/c.zarr", **{**kw, "seed": 4}))
    assert layer_chunks(a) == {"sample": 64, "gene": 64} and layer_chunks(b) == {"sample": 16, "gene": 50}
    for layer in ("counts", "tpm", "log_expr"):
        np.testing.assert_array_equal(a[layer].values, b[layer].values)
    for name in ("sample_tissue", "truth_informative", "truth_mode", "truth_mean", "gene_length"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert not np.array_equal(a["counts"].values, c["counts"].values)


def test_layers_and_attrs_follow_the_schema(cohort):
    ds = cohort
    assert ds["counts"].dtype == np.int32 and ds["tpm"].dtype == np.float32
    assert ds.attrs["label_column"] == "sample_tissue"
    assert ds.attrs["simulator"]["name"] == "cohort" and ds.attrs["simulator"]["params"]["seed"] == 7
    counts = ds["counts"].values.astype(float)
    rate = counts / (ds["gene_length"].values / 1e3)
    tpm = rate / rate.sum(axis=1, keepdims=True) * 1e6
    np.testing.assert_allclose(ds["tpm"].values, tpm, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ds["log_expr"].values, np.log2(tpm + 1), rtol=1e-5, atol=1e-5)
    modes = set(ds["truth_mode"].values)
    assert modes == {"none", "linear", "nonlinear"}
    np.testing.assert_array_equal(ds["truth_informative"].values, ds["truth_mode"].values != "none")
    assert (ds["truth_program"].values[ds["truth_mode"].values == "linear"] >= 0).all()


def test_rank_test_finds_linear_genes_and_misses_nonlinear_ones(cohort):
    ds = cohort
    labels = ds["sample_tissue"].values
    counts = ds["counts"].values
    groups = [counts[labels == k] for k in np.unique(labels)]
    p = np.array([stats.kruskal(*[g[:, i] for g in groups]).pvalue for i in range(counts.shape[1])])
    found = _bh(p) < 0.05
    mode = ds["truth_mode"].values
    assert found[mode == "linear"].mean() >= 0.9
    assert not found[mode == "nonlinear"].any()
    assert found[mode == "none"].mean() <= 0.05
    # a per-gene two-sample distribution test (KS) sees no difference either: equal marginals
    for g in np.flatnonzero(mode == "nonlinear"):
        own = labels == f"tissue_{ds['truth_class'].values[g]:02d}"
        assert stats.ks_2samp(counts[own, g], counts[~own, g]).pvalue > 1e-3


def test_a_model_of_each_nonlinear_pair_separates_its_class(cohort):
    ds = cohort
    labels = ds["sample_tissue"].values
    x = np.log(ds["counts"].values / ds["sample_library_factor"].values[:, None] + 1.0)
    pair, klass, kind = (ds[n].values for n in ("truth_pair", "truth_class", "truth_kind"))
    for p in np.unique(pair[pair >= 0]):
        genes = np.flatnonzero(pair == p)
        y = labels == f"tissue_{klass[genes[0]]:02d}"
        xy = x[:, genes] - np.median(x[:, genes], axis=0)
        knn = cross_val_predict(KNeighborsClassifier(25), xy, y, cv=3, method="predict_proba")[:, 1]
        linear = cross_val_predict(LogisticRegression(), xy, y, cv=3, method="predict_proba")[:, 1]
        assert roc_auc_score(y, knn) > 0.8, (p, kind[genes[0]])
        assert roc_auc_score(y, linear) < 0.65, (p, kind[genes[0]])
        if kind[genes[0]] == "circle":  # the radius alone separates ring from cross
            radius = np.hypot(xy[:, 0], xy[:, 1])
            ring = np.median(radius[y])
            assert roc_auc_score(y, -np.abs(radius - ring)) > 0.75


def test_nb_counts_have_the_specified_mean_and_variance():
    url = simulate_cohort(
        "memory://sim-cohort/moments.zarr", n_samples=3000, n_genes=150, n_classes=1, seed=11, **SMALL
    )
    ds = open_store(url)
    flat = np.flatnonzero(np.isin(ds["truth_kind"].values, ["background", "housekeeping"]))
    y = ds["counts"].values[:, flat].astype(float)
    s = ds["sample_library_factor"].values[:, None]
    m, alpha = ds["truth_mean"].values[flat], ds["truth_dispersion"].values[flat]
    mu = s * m
    # closed form of the NB variance, checked against scipy's parametrisation
    n_, p_ = 1 / alpha, 1 / (1 + alpha * mu)
    np.testing.assert_allclose(stats.nbinom(n_, p_).var(), mu + alpha * mu**2, rtol=1e-10)
    np.testing.assert_allclose(stats.nbinom(n_, p_).mean(), mu, rtol=1e-10)
    var = mu + alpha * mu**2
    z_mean = (y - mu).sum(axis=0) / np.sqrt(var.sum(axis=0))  # ~ N(0, 1) per gene
    assert abs(z_mean.mean()) < 0.3 and 0.75 < z_mean.std() < 1.25
    ratio = ((y - mu) ** 2).sum(axis=0) / var.sum(axis=0)  # ~ 1 per gene
    assert 0.95 < np.median(ratio) < 1.05
    assert np.mean(np.abs(ratio - 1) < 0.25) > 0.9


def test_bad_sizes_and_existing_store_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="--genes"):
        simulate_cohort("memory://sim-cohort/bad.zarr", n_samples=10, n_genes=50, n_classes=5, seed=0)
    with pytest.raises(InputError, match="--samples"):
        simulate_cohort("memory://sim-cohort/bad.zarr", n_samples=0, n_genes=500, n_classes=2, seed=0)
    with pytest.raises(InputError, match="--seed"):
        simulate_cohort("memory://sim-cohort/bad.zarr", n_samples=10, n_genes=500, n_classes=2, seed=-1)
    path = str(tmp_path / "s.zarr")
    simulate_cohort(path, n_samples=5, n_genes=120, n_classes=2, seed=0, **SMALL)
    with pytest.raises(InputError, match="already exists"):
        simulate_cohort(path, n_samples=5, n_genes=120, n_classes=2, seed=0, **SMALL)
