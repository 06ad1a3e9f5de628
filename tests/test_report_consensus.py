"""The first screen's logic against hand computations on small tables (consensus, sign, DE calls,
hidden-to-DE deduplication, DE-missed recovery, AUPRC summary, saturation verdicts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.report.consensus import (
    annotate,
    consensus_sign,
    consensus_top_genes,
    de_calls,
    hidden_genes,
)
from gexplain.pipelines.report.findings import auprc_by_kind, de_missed_recovery, saturation_verdicts


def _top(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["source", "label", "gene", "rank"])


TOP = _top(
    [
        ("s1", "A", "g1", 1), ("s1", "A", "g2", 2), ("s1", "A", "g3", 3),
        ("s2", "A", "g2", 1), ("s2", "A", "g1", 2), ("s2", "A", "g4", 3),
        ("s3", "A", "g2", 1), ("s3", "A", "g3", 2), ("s3", "A", "g1", 5),
        ("s1", "B", "g5", 1), ("s1", "B", "g6", 2),
        ("s2", "B", "g6", 1), ("s2", "B", "g5", 2),
    ]
)  # fmt: skip


def test_consensus_counts_agreement_then_mean_rank() -> None:
    got = consensus_top_genes(TOP, k=2)
    a = got[got["label"] == "A"].set_index("gene")
    # top 2 of A: s1 {g1, g2}, s2 {g2, g1}, s3 {g2, g3}; g4 is in no top 2
    assert a["agreement"].to_dict() == {"g2": 3, "g1": 2, "g3": 1}
    # mean rank over 3 sources, a rank beyond 2 or a missing gene counted as 3
    assert a.loc["g2", "mean_rank"] == pytest.approx((2 + 1 + 1) / 3)
    assert a.loc["g1", "mean_rank"] == pytest.approx((1 + 2 + 3) / 3)
    assert a.loc["g3", "mean_rank"] == pytest.approx((3 + 3 + 2) / 3)
    assert list(a.sort_values("consensus_rank").index) == ["g2", "g1", "g3"]
    assert set(a["n_sources"]) == {3}
    b = got[got["label"] == "B"].sort_values("consensus_rank")
    # g5 and g6 tie on agreement (2) and mean rank (1.5): gene id decides
    assert list(b["gene"]) == ["g5", "g6"] and set(b["n_sources"]) == {2}
    assert b["mean_rank"].tolist() == [1.5, 1.5]


def test_sign_is_plus_or_minus_only_when_every_source_agrees() -> None:
    signed = pd.DataFrame(
        {
            "source": ["s1", "s2", "s1", "s2", "s1", "s2"],
            "label": ["A"] * 6,
            "gene": ["g1", "g1", "g2", "g2", "g3", "g3"],
            "mean_attr": [0.5, 0.1, -0.2, -0.4, 0.3, -0.1],
        }
    )
    got = consensus_sign(signed).set_index("gene")
    assert got["sign"].to_dict() == {"g1": "+", "g2": "-", "g3": "mixed"}
    assert got["mean_attr"].to_dict() == pytest.approx({"g1": 0.3, "g2": -0.3, "g3": 0.1})


def test_de_calls_name_the_methods_and_annotate_the_consensus() -> None:
    de = pd.DataFrame(
        {
            "label": ["A", "A", "A", "A", "B", "B"],
            "method": ["welch", "deseq2", "welch", "deseq2", "welch", "welch"],
            "gene": ["g1", "g1", "g2", "g2", "g5", "g6"],
            "padj": [0.01, 0.001, 0.2, np.nan, 0.04, 0.5],
        }
    )
    calls = de_calls(de, alpha=0.05).set_index(["label", "gene"])
    assert calls.loc[("A", "g1"), "de_methods"] == "deseq2, welch"
    assert not calls.loc[("A", "g2"), "de_called"] and calls.loc[("A", "g2"), "de_tested"] == "deseq2, welch"
    assert calls.loc[("B", "g5"), "de_called"]
    consensus = consensus_top_genes(TOP, k=2)
    sign = pd.DataFrame({"label": ["A"], "gene": ["g1"], "sign": ["+"], "mean_attr": [0.3]})
    got = annotate(consensus, sign, de_calls(de, alpha=0.05)).set_index(["label", "gene"])
    assert got.loc[("A", "g1"), "de_call"] == "yes: deseq2, welch"
    assert got.loc[("A", "g2"), "de_call"] == "no (deseq2, welch)"
    assert got.loc[("A", "g3"), "de_call"] == "not tested"  # g3 is in no DE table of A
    assert got.loc[("B", "g6"), "de_call"] == "no (welch)"
    assert got.loc[("A", "g1"), "sign"] == "+" and got.loc[("A", "g2"), "sign"] == ""
    assert list(got.index) == list(consensus.set_index(["label", "gene"]).index)  # order kept
    untested = annotate(consensus, sign, de_calls(de[de["label"] == "B"], alpha=0.05))
    assert set(untested.loc[untested["label"] == "A", "de_call"]) == {"not tested"}


def test_hidden_genes_deduplicated_with_source_counts() -> None:
    hidden = pd.DataFrame(
        {
            "source": ["r1:ig", "r2:ig", "r1:dl", "r1:ig", "r1:ig"],
            "contrast": [
                "de/w/A_vs_rest",
                "de/w/A_vs_rest",
                "de/d/A_vs_B",
                "de/w/B_vs_rest",
                "de/w/A_vs_rest",
            ],
            "label": ["A", "A", "A", "B", "A"],
            "gene": ["g1", "g1", "g1", "g1", "g2"],
            "mean_abs_attr": [0.5, 0.7, 0.2, 0.1, 0.9],
            "padj": [0.3, 0.3, 0.8, 0.06, np.nan],
        }
    )
    got = hidden_genes(hidden)
    assert list(got["gene"]) == ["g1", "g2"]  # 3 sources before 1
    g1 = got.iloc[0]
    assert (g1["n_sources"], g1["classes"], g1["mean_abs_attr"], g1["padj"]) == (3, "A, B", 0.7, 0.06)
    assert g1["contrasts"] == "de/d/A_vs_B, de/w/A_vs_rest, de/w/B_vs_rest"
    assert got.iloc[1]["n_sources"] == 1 and np.isnan(got.iloc[1]["padj"])


def test_de_missed_recovery_by_hand() -> None:
    genes = [f"g{i}" for i in range(8)]
    truth = pd.DataFrame(
        {
            "informative": [True, True, True, True, True, False, False, False],
            "mode": ["linear", "linear", "nonlinear", "nonlinear", "nonlinear", "none", "none", "none"],
        },
        index=genes,
    )
    de_called = pd.Series([True, False, False, False, False, True, False, False], index=genes)
    in_top = pd.DataFrame(
        {
            "s1": [True, True, True, False, False, True, False, False],
            "s2": [True, False, True, True, False, False, False, False],
            "s3": [False, False, True, False, False, False, True, False],
            "s4": [False, False, False, True, False, False, False, False],
        },
        index=genes,
    )
    got = de_missed_recovery(truth, de_called, in_top).set_index("subset")
    # missed by DE: g1..g4; in the top of >= 2 of 4 sources: g0, g2, g3 -> recovered g2, g3
    assert got.loc["all"].to_dict() == {
        "n_informative": 5,
        "n_de_missed": 4,
        "n_recovered": 2,
        "n_sources": 4,
    }
    assert got.loc["linear", ["n_informative", "n_de_missed", "n_recovered"]].tolist() == [2, 1, 0]
    assert got.loc["nonlinear", ["n_informative", "n_de_missed", "n_recovered"]].tolist() == [3, 3, 2]
    assert list(got.index) == ["all", "linear", "nonlinear"]


def test_auprc_by_kind_means_each_kind() -> None:
    gt = pd.DataFrame(
        {
            "source": ["a", "b", "de1", "a", "b", "de1"],
            "kind": ["attribution", "attribution", "de"] * 2,
            "subset": ["all"] * 3 + ["nonlinear"] * 3,
            "auprc": [0.2, 0.4, 0.1, 0.18, np.nan, 0.07],
        }
    )
    got = auprc_by_kind(gt).set_index("subset")
    assert got.loc["all", "auprc_attribution"] == pytest.approx(0.3)
    assert got.loc["nonlinear", "auprc_attribution"] == pytest.approx(0.18)  # NaN left out
    assert got.loc["nonlinear", "auprc_de"] == pytest.approx(0.07)
    assert got.loc["all", ["n_attribution", "n_de"]].tolist() == [2, 1]


def _curve(name: str, variant: str, axis: str, points: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "curve": name,
            "explainer": "ig",
            "axis": axis,
            "variant": variant,
            "n_models": 3,
            "n": list(points),
            "spearman_mean": list(points.values()),
        }
    )


def test_saturation_verdicts_by_hand_with_paper_variants_first() -> None:
    curves = pd.concat(
        [
            # gains per doubling: 1->2 0.2, 2->4 0.05, 4->8 0.005 (< 0.01): saturated at 4
            _curve("ig/repeats/inter_model", "inter_model", "repeats", {1: 0.5, 2: 0.7, 4: 0.75, 8: 0.755}),
            _curve("ig/repeats/intra_model", "intra_model", "repeats", {1: 0.9, 2: 0.99}),
            # last doubling still gains 0.03: not saturated
            _curve("ig/references/inter_model", "inter_model", "references", {1: 0.6, 2: 0.7, 4: 0.73}),
            # only the intra-model curve, one point: no verdict
            _curve("ig/models/intra_model", "intra_model", "models", {1: 0.8}),
        ]
    )
    got = saturation_verdicts(curves, tol=0.01).set_index("axis")
    assert got["variant"].to_dict() == {
        "models": "intra_model",
        "references": "inter_model",
        "repeats": "inter_model",
    }
    assert len(got) == 3  # the repeats axis shows the paper's curve only
    assert got.loc["repeats", "saturated"] and got.loc["repeats", "saturation_n"] == 4
    assert got.loc["repeats", "last_gain"] == pytest.approx(0.005)
    assert not got.loc["references", "saturated"] and np.isnan(got.loc["references", "saturation_n"])
    assert got.loc["references", "last_gain"] == pytest.approx(0.03)
    assert pd.isna(got.loc["models", "saturated"]) and got.loc["models", "points"] == 1
    # a looser threshold saturates the references curve at n = 2 (gain 0.03 < 0.05)
    assert saturation_verdicts(curves, tol=0.05).set_index("axis").loc["references", "saturation_n"] == 2
