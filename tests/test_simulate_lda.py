"""The LDA-style simulator: class means against the Dirichlet closed form, ground truth, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from gexplain.pipelines.simulate import simulate_lda
from gexplain.pipelines.simulate.lda import design_topics
from gexplain.storage.errors import InputError
from gexplain.storage.store import open_store
from scipy import stats

KW = {"n_samples": 600, "n_genes": 240, "n_classes": 3, "n_programs": 7, "seed": 2, "genes_per_program": 15}


@pytest.fixture(scope="module")
def lda():
    return open_store(simulate_lda("memory://sim-lda/main.zarr", **KW)).load()


def test_class_means_match_the_dirichlet_closed_form(lda):
    model = design_topics(
        240, 3, 7, 2, genes_per_program=15, shared_concentration=0.5, specific_concentration=5.0
    )
    # E[theta | c] = alpha_c / sum(alpha_c) (Dirichlet mean); E[share of gene g | c] = E[theta | c] @ beta
    expected = (model.alpha / model.alpha.sum(axis=1, keepdims=True)) @ model.beta
    counts = lda["counts"].values.astype(float)
    share = counts / counts.sum(axis=1, keepdims=True)
    labels = lda["sample_tissue"].values
    for c in range(3):
        observed = share[labels == f"tissue_{c:02d}"].mean(axis=0)
        big = expected[c] > 1e-3
        rel = np.abs(observed[big] / expected[c][big] - 1)
        assert np.median(rel) < 0.05 and rel.max() < 0.35
        assert abs(observed.sum() - 1) < 1e-9


def test_informative_genes_differ_in_class_means_and_the_others_do_not(lda):
    counts = lda["counts"].values
    labels = lda["sample_tissue"].values
    groups = [counts[labels == k] for k in np.unique(labels)]
    p = np.array([stats.kruskal(*[g[:, i] for g in groups]).pvalue for i in range(counts.shape[1])])
    found = stats.false_discovery_control(p, method="bh") < 0.05
    informative = lda["truth_informative"].values
    strong = informative & (lda["truth_log2_effect"].values >= 1.0)
    assert strong.sum() >= 20
    assert found[strong].mean() >= 0.9
    assert found[~informative].mean() <= 0.05
    assert (lda["truth_mode"].values[informative] == "linear").all()
    assert (lda["truth_program"].values[~informative] == -1).all()
    assert set(lda["truth_program"].values[informative]) == {0, 1, 2}


def test_deterministic_across_chunks_and_nb_counts_work():
    a = open_store(simulate_lda("memory://sim-lda/a.zarr", **{**KW, "n_samples": 50}, chunks={"sample": 7}))
    b = open_store(simulate_lda("memory://sim-lda/b.zarr", **{**KW, "n_samples": 50}, chunks={"sample": 64}))
    np.testing.assert_array_equal(a["counts"].values, b["counts"].values)
    np.testing.assert_array_equal(a["log_expr"].values, b["log_expr"].values)
    nb = open_store(simulate_lda("memory://sim-lda/nb.zarr", **{**KW, "n_samples": 50}, count_model="nb"))
    assert nb.attrs["simulator"]["params"]["count_model"] == "nb"
    assert not np.array_equal(nb["counts"].values, a["counts"].values)
    cpm = nb["counts"].values / nb["counts"].values.sum(axis=1, keepdims=True) * 1e6
    np.testing.assert_allclose(nb["log_expr"].values, np.log2(cpm + 1), rtol=1e-5)


def test_too_few_programmes_is_an_input_error():
    with pytest.raises(InputError, match="--programs"):
        simulate_lda("memory://sim-lda/bad.zarr", n_samples=10, n_genes=50, n_classes=4, n_programs=4, seed=0)


PATHWAYS = {"n_samples": 400, "n_genes": 300, "n_classes": 4, "seed": 3, "structure": "pathways"}
PATHWAYS |= {"n_pathways": 30, "genes_per_pathway": 10, "upweighted_per_class": 4, "upweight": 10.0}


def test_pathway_class_means_match_the_dirichlet_closed_form_and_truth_is_recorded():
    ds = open_store(simulate_lda("memory://sim-lda/pathways.zarr", **PATHWAYS, library_mean=2e5)).load()
    up = np.asarray(ds.attrs["simulator"]["params"]["upweighted"])
    assert up.shape == (4, 4)
    pathway = ds["truth_pathway"].values
    np.testing.assert_array_equal(pathway, np.arange(300) // 10)
    counts = ds["counts"].values.astype(float)
    share = counts / counts.sum(axis=1, keepdims=True)
    labels = ds["sample_tissue"].values
    for c in range(4):
        # E[theta_k | c] = alpha_ck / sum_k alpha_ck: 10 for up-weighted pathways, 1 otherwise
        alpha = np.ones(30)
        alpha[up[c]] = 10.0
        expected_pathway = alpha / alpha.sum()
        observed_pathway = np.bincount(pathway, weights=share[labels == f"tissue_{c:02d}"].mean(axis=0))
        np.testing.assert_allclose(observed_pathway, expected_pathway, rtol=0.35)
        assert observed_pathway[up[c]].sum() == pytest.approx(expected_pathway[up[c]].sum(), rel=0.1)
    n_up = np.bincount(up.reshape(-1), minlength=30)
    np.testing.assert_array_equal(ds["truth_n_classes"].values, n_up[pathway])
    np.testing.assert_array_equal(ds["truth_informative"].values, (n_up[pathway] > 0) & (n_up[pathway] < 4))
    median_reads = np.median(counts.sum(axis=1))
    assert 1.8e5 < median_reads < 2.2e5


def test_pathway_sizes_must_agree_and_the_stage_preset_has_the_studys_sizes():
    from gexplain.pipelines.simulate.stage import SimulateParams, lda_options

    with pytest.raises(InputError, match="--genes"):
        simulate_lda("memory://sim-lda/bad.zarr", **{**PATHWAYS, "n_genes": 299})
    opts = lda_options(SimulateParams(simulator="lda", preset="bontonou"))
    assert opts["n_samples"] == 9900 and opts["n_classes"] == 33 and opts["n_genes"] == 15000
    assert opts["n_pathways"] == 1500 and opts["genes_per_pathway"] == 10
    assert opts["upweighted_per_class"] == 37 and opts["library_mean"] == 1.5e6
    smaller = lda_options(SimulateParams(simulator="lda", preset="bontonou", n_samples=990))
    assert smaller["n_samples"] == 990 and smaller["structure"] == "pathways"
