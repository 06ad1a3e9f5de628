"""``preset = "bontonou"``: Bontonou et al.'s LDA simulator (mbonto/XAI_for_genomics,
``Simulation/Data/simulate_data.py``), checked against its code's values and its closed-form moments."""

from __future__ import annotations

import numpy as np
from gexplain.pipelines.simulate import simulate_lda
from gexplain.pipelines.simulate.lda import design_pathways
from gexplain.pipelines.simulate.stage import SimulateParams, lda_options
from gexplain.storage.store import open_store

SMALL = {
    "n_classes": 3,
    "n_pathways": 12,
    "genes_per_pathway": 10,
    "upweighted_per_class": 3,
    "upweight": 8.0,
    "pathway_concentration": 4.0,
    "within_concentration": 5.0,
    "min_share": 0.01,
    "pathway_layout": "blocks",
}


def test_preset_is_the_authors_simulator() -> None:
    opts = lda_options(SimulateParams(simulator="lda", preset="bontonou"))
    assert opts["n_classes"] == 33 and opts["n_genes"] == 15000  # simulate_data.py l.63-64
    assert opts["n_pathways"] == 1500  # l.82
    assert opts["genes_per_pathway"] == 10  # l.111 (case = 10)
    assert opts["upweighted_per_class"] == 37  # l.94 (P = 37)
    assert opts["pathway_concentration"] == 1.0 * 4.0  # l.88 times l.107
    assert opts["upweight"] == 2.0 * 4.0  # l.92 (cls_gap = 2.) times l.107
    assert opts["within_concentration"] == 5.0  # l.48 (eta ... * 5)
    assert opts["min_share"] == 0.1 / 10  # l.131 (min_prop = 0.1 / case)
    assert opts["pathway_layout"] == "blocks"  # l.102 (alpha[P * c + p])
    assert opts["library_mean"] == 1.5e6 and opts["library_sd"] == 0.0  # l.9 (n_read = 1500000)


def test_blocks_are_disjoint_and_shares_respect_the_floor() -> None:
    model = design_pathways(33, 1500, 10, 37, 8.0, 0, **{k: SMALL[k] for k in list(SMALL)[5:]})
    np.testing.assert_array_equal(model.upweighted, np.arange(33 * 37).reshape(33, 37))
    shares = model.within.reshape(1500, 10)
    assert shares[model.upweighted.reshape(-1)].min() >= 0.01
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert set(np.unique(model.alpha)) == {4.0, 8.0}


def test_counts_follow_the_dirichlet_multinomial_moments() -> None:
    """E[n_g | c] = L a_k / A w_g and Var = L p (1 - p) + L (L - 1) w_g^2 a_k (A - a_k) / (A^2 (A + 1))."""
    depth, n_samples, seed = 20000.0, 1200, 4
    url = simulate_lda(
        "memory://bontonou/small.zarr",
        n_samples=n_samples,
        n_genes=120,
        seed=seed,
        structure="pathways",
        library_mean=depth,
        library_sd=0.0,
        **SMALL,
    )
    ds = open_store(url).load()
    counts = ds["counts"].values.astype(np.float64)
    np.testing.assert_array_equal(counts.sum(axis=1), depth)  # constant depth
    model = design_pathways(seed=seed, **{k: v for k, v in SMALL.items()})
    labels = ds["sample_tissue"].values
    for c in range(3):
        rows = counts[labels == f"tissue_{c:02d}"]
        a = model.alpha[c][model.pathway]
        total = model.alpha[c].sum()
        p = a / total * model.within
        mean = depth * p
        var = depth * p * (1 - p) + depth * (depth - 1) * model.within**2 * a * (total - a) / (
            total**2 * (total + 1)
        )
        z = (rows.mean(axis=0) - mean) / np.sqrt(var / rows.shape[0])
        assert np.abs(z).max() < 5
        ratio = rows.var(axis=0, ddof=1) / var
        assert abs(ratio.mean() - 1) < 0.1 and 0.5 < ratio.min() and ratio.max() < 1.6
