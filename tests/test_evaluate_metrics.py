"""Evaluation metrics against library references (scipy, sklearn) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from gexplain.pipelines.evaluate.biology import (
    class_top_genes,
    hidden_to_de,
    housekeeping,
    overlap_test,
    tissue_enhanced,
)
from gexplain.pipelines.evaluate.faithfulness import ensemble_predict_proba, prediction_gaps
from gexplain.pipelines.evaluate.ground_truth import (
    auroc,
    average_precision,
    ground_truth_table,
    precision_recall_at_k,
)
from gexplain.pipelines.evaluate.reproducibility import (
    compare_runs,
    per_sample_spearman,
    top_k_indices,
    top_k_overlap,
)
from gexplain.pipelines.evaluate.saturation import saturation_curve, saturation_point
from gexplain.storage.errors import InputError
from scipy.stats import hypergeom, spearmanr
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score
from torch import nn


def test_per_sample_spearman_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 40))
    b = a + rng.normal(scale=0.7, size=a.shape)
    b[0, :10] = b[0, 10:20]  # ties
    got = per_sample_spearman(a, b, absolute=True)
    want = [spearmanr(np.abs(a[i]), np.abs(b[i])).statistic for i in range(6)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got_signed = per_sample_spearman(a, b, absolute=False)
    want_signed = [spearmanr(a[i], b[i]).statistic for i in range(6)]
    np.testing.assert_allclose(got_signed, want_signed, rtol=1e-12)


def test_top_k_overlap_hand_case() -> None:
    a = np.array([[5.0, -4.0, 3.0, 0.1, 0.2, 0.0]])
    b = np.array([[0.0, 9.0, 0.1, 8.0, 7.0, 0.2]])
    # top-3 |a| = {0, 1, 2}; top-3 |b| = {1, 3, 4}; shared {1}
    assert top_k_overlap(a, b, 3)[0] == pytest.approx(1 / 3)
    assert top_k_overlap(a, a, 3)[0] == 1.0
    with pytest.raises(InputError, match="k=7"):
        top_k_overlap(a, b, 7)


def test_top_k_indices_equal_stable_full_sort() -> None:
    rng = np.random.default_rng(7)
    for trial in range(60):
        n, g = int(rng.integers(1, 5)), int(rng.integers(2, 30))
        s = np.round(rng.normal(size=(n, g)), int(rng.integers(0, 2)))  # many ties
        if trial % 4 == 0:
            s[:, : g // 2] = 0.0
        s[0, 1] = np.nan if trial % 6 == 0 else s[0, 1]
        for k in (1, g // 2 or 1, g):
            for largest in (True, False):
                key = -np.abs(s) if largest else np.abs(s)
                want = np.argsort(np.where(np.isnan(key), np.inf, key), axis=1, kind="stable")[:, :k]
                np.testing.assert_array_equal(top_k_indices(s, k, largest=largest), want)


def test_compare_runs_per_class_summary() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(8, 30))
    b = a + rng.normal(scale=0.5, size=a.shape)
    labels = np.array(["x"] * 5 + ["y"] * 3)
    per_sample, per_class = compare_runs(a, b, labels, np.arange(8).astype(str), k=10)
    rho = np.array([spearmanr(np.abs(a[i]), np.abs(b[i])).statistic for i in range(8)])
    row = per_class.set_index("label")
    assert row.loc["x", "spearman_mean"] == pytest.approx(rho[:5].mean())
    assert row.loc["y", "spearman_median"] == pytest.approx(np.median(rho[5:]))
    assert row.loc["all", "n"] == 8
    assert row.loc["x", "spearman_sd"] == pytest.approx(np.std(rho[:5], ddof=1))


def test_saturation_curve_follows_closed_form() -> None:
    # item = signal + independent noise; a mean of n items has Pearson rho = s2 / (s2 + sigma2 / n) with
    # another independent mean, and for Gaussians Spearman = 6/pi * arcsin(rho / 2).
    rng = np.random.default_rng(2)
    n_items, n_s, n_g, sigma = 32, 4, 4000, 2.0
    signal = rng.normal(size=(1, n_s, n_g))
    pool = signal + rng.normal(scale=sigma, size=(n_items, n_s, n_g))
    curve = saturation_curve(pool, k=50, n_draws=2, max_replicates=4, absolute=False, seed=3)
    assert list(curve["n"]) == [1, 2, 4, 8, 16]
    rho = 1.0 / (1.0 + sigma**2 / curve["n"].to_numpy())
    expected = 6 / np.pi * np.arcsin(rho / 2)
    np.testing.assert_allclose(curve["spearman_mean"], expected, atol=0.02)
    assert curve.loc[0, "n_pairs"] == 2 * 6  # 4 replicates -> 6 pairs per draw
    assert curve.loc[4, "n_pairs"] == 2 * 1  # 16 items: only 2 disjoint replicates
    assert np.all(np.diff(curve["top_k_overlap_mean"]) > 0)


def test_saturation_point_hand_case() -> None:
    curve = pd.DataFrame({"n": [1, 2, 4, 8, 16], "spearman_mean": [0.5, 0.7, 0.8, 0.805, 0.806]})
    assert saturation_point(curve, tol=0.01) == 4
    assert saturation_point(curve, tol=0.001) is None
    with pytest.raises(InputError, match="2\\*n"):
        saturation_curve(np.zeros((3, 2, 5)), grid=[2])


def test_sklearn_metrics_give_the_numbers_of_the_former_hand_written_ones() -> None:
    """AUROC as the Mann-Whitney U over n_pos n_neg (scipy) and AP as the step-wise sum over distinct
    thresholds (the definition the hand-written versions implemented), on tied scores."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(11)
    truth = rng.random(300) < 0.2
    scores = np.round(truth * 0.8 + rng.normal(size=300), 1)  # many ties
    u = mannwhitneyu(scores[truth], scores[~truth]).statistic
    assert auroc(scores, truth) == pytest.approx(u / (truth.sum() * (~truth).sum()), rel=1e-12)
    thresholds = np.unique(scores)[::-1]
    tp = np.array([(truth & (scores >= t)).sum() for t in thresholds], dtype=float)
    called = np.array([(scores >= t).sum() for t in thresholds], dtype=float)
    recall = tp / truth.sum()
    expected = float(np.sum(np.diff(np.r_[0.0, recall]) * tp / called))
    assert average_precision(scores, truth) == pytest.approx(expected, rel=1e-12)
    assert np.isnan(auroc(scores, np.ones(300, dtype=bool)))
    assert np.isnan(average_precision(scores, np.zeros(300, dtype=bool)))


def test_ranking_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random(200) < 0.15
    scores = truth * 1.0 + rng.normal(size=200)
    scores[:20] = np.round(scores[:20])  # ties
    assert auroc(scores, truth) == pytest.approx(roc_auc_score(truth, scores), rel=1e-12)
    assert average_precision(scores, truth) == pytest.approx(
        average_precision_score(truth, scores), rel=1e-12
    )
    k = 25
    called = np.zeros(200, dtype=bool)
    called[np.argsort(-scores, kind="stable")[:k]] = True
    p, r = precision_recall_at_k(scores, truth, k)
    assert p == pytest.approx(precision_score(truth, called))
    assert r == pytest.approx(recall_score(truth, called))


def test_ground_truth_table_separates_modes() -> None:
    import xarray as xr

    n = 60
    mode = np.array(["none"] * n, dtype=object)
    mode[:5] = "linear"
    mode[5:10] = "nonlinear"
    inf = mode != "none"
    attr_imp = np.r_[np.full(10, 5.0), np.linspace(0, 1, n - 10)]  # finds both kinds
    pvalue = np.r_[np.full(5, 1e-8), np.full(5, 0.9), np.linspace(0.1, 1, n - 10)]  # finds linear only
    de = xr.Dataset(
        {"pvalue": ("gene", pvalue), "padj": ("gene", np.minimum(pvalue * n, 1.0))},
        coords={"gene": np.arange(n).astype(str)},
    )
    table = ground_truth_table(inf, mode, {"ig": attr_imp}, {"welch": de}, k=5)
    t = table.set_index(["source", "subset"])
    keep_lin = (mode == "linear") | (mode == "none")
    assert t.loc[("welch", "linear"), "auroc"] == pytest.approx(
        roc_auc_score(mode[keep_lin] == "linear", -np.log10(pvalue[keep_lin]))
    )
    assert t.loc[("welch", "linear"), "n_called_true"] == 5
    assert t.loc[("welch", "nonlinear"), "n_called_true"] == 0
    assert t.loc[("ig", "nonlinear"), "auroc"] == 1.0
    assert t.loc[("ig", "all"), "precision_at_k"] == 1.0


class _Logistic(nn.Module):
    """Two-class model whose class-1 logit minus class-0 logit is w.x + b."""

    def __init__(self, w: np.ndarray, b: float) -> None:
        super().__init__()
        self.w = torch.as_tensor(w, dtype=torch.float32)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_pgi_pgu_closed_form_linear_model() -> None:
    rng = np.random.default_rng(4)
    n_s, n_g = 10, 12
    w = rng.normal(size=n_g)
    b = 0.3
    x = rng.normal(size=(n_s, n_g))
    attr = x * w  # input x gradient of the logit: exact contributions
    targets = np.ones(n_s, dtype=int)
    reference = np.zeros(n_g)
    predict = ensemble_predict_proba([_Logistic(w, b)])
    table = prediction_gaps(predict, x, attr, targets, [1, 3, 6], reference, n_random=3, seed=0)

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    for _, row in table.iterrows():
        k = int(row["k"])
        pgi, pgu = [], []
        for i in range(n_s):
            contrib = x[i] * w
            order = sorted(range(n_g), key=lambda j: -abs(contrib[j]))
            p0 = sigmoid(contrib.sum() + b)
            pgi.append(abs(p0 - sigmoid(contrib.sum() - contrib[order[:k]].sum() + b)))
            pgu.append(abs(p0 - sigmoid(contrib.sum() - contrib[order[-k:]].sum() + b)))
        assert row["pgi"] == pytest.approx(np.mean(pgi), abs=1e-6)
        assert row["pgu"] == pytest.approx(np.mean(pgu), abs=1e-6)
        assert row["pgu"] <= row["random"] <= row["pgi"]


def test_overlap_test_matches_hypergeometric() -> None:
    universe = 50
    a = np.zeros(universe, dtype=bool)
    b = np.zeros(universe, dtype=bool)
    a[:10] = True
    b[6:20] = True  # overlap 4
    res = overlap_test(a, b)
    assert res["overlap"] == 4
    assert res["expected"] == pytest.approx(hypergeom(universe, 14, 10).mean())
    tail = sum(math.comb(14, x) * math.comb(36, 10 - x) for x in range(4, 11)) / math.comb(50, 10)
    assert res["p_value"] == pytest.approx(tail, rel=1e-10)


def test_tissue_enhanced_and_housekeeping_rules() -> None:
    means = np.array(
        [
            [40.0, 10.0, 0.5, 3.0],  # gene 0: 40 >= 4 * mean(5, 15)=40 -> enhanced in class 0
            [5.0, 12.0, 0.1, 3.5],
            [15.0, 11.0, 0.0, 5.0],
        ]
    )
    enh = tissue_enhanced(means)
    assert enh[:, 0].tolist() == [True, False, False]
    assert not enh[:, 2].any()  # below 1 TPM
    hk = housekeeping(means)
    assert hk.tolist() == [False, True, False, True]  # gene 3: 5/3 < 2; gene 0: 40/5 >= 2


def test_class_top_genes_and_hidden_to_de() -> None:
    genes = np.array([f"g{i}" for i in range(6)])
    attr = np.array(
        [
            [9.0, 1.0, 8.0, 0.0, 0.1, 0.2],
            [5.0, 0.5, 9.0, 6.0, 0.1, 0.2],
            [0.1, 5.0, 0.2, 0.3, 6.0, 0.0],
        ]
    )
    labels = np.array(["A", "A", "B"])
    top = class_top_genes(attr, labels, genes, k=2, min_samples=2)
    a_rows = top[top["label"] == "A"].set_index("gene")
    assert set(a_rows.index) == {"g0", "g2", "g3"}
    assert a_rows["shared"].to_dict() == {"g2": True, "g0": False, "g3": False}
    assert a_rows.loc["g2", "rank"] == 1 and a_rows.loc["g0", "rank"] == 2  # means 8.5, 7.0, 3.0
    de = pd.DataFrame(
        {"padj": [0.01, 0.5, 0.2, 0.9, 0.9, np.nan], "log2FoldChange": 0.0, "baseMean": 1.0}, index=genes
    )
    std = np.full(attr.shape, 0.5)
    count = np.array([100, 100, 100])
    hidden = hidden_to_de(attr, std, count, labels, genes, de, "A", k=2, min_frac=1.0)
    assert hidden["gene"].tolist() == ["g2"]  # the only gene in the top-2 of both samples
    hidden = hidden_to_de(attr, std, count, labels, genes, de, "A", k=2, min_frac=0.5)
    assert hidden["gene"].tolist() == ["g2", "g3"]  # g0 is significant in DE (padj 0.01)
    noisy = hidden_to_de(attr, np.full(attr.shape, 50.0), count, labels, genes, de, "A", k=2, min_frac=0.5)
    # z of g3 = 3.0 / (sqrt(2 * 50**2 / 100) / 2) = 1.2 < 3: not reproducible; g2: 8.5 / 3.54 = 2.4
    assert noisy.empty
