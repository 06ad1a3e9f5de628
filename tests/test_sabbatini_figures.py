"""Sabbatini & Manganaro (2023) Figures 2 and 3, reproduced with gexplain's own stages.

Figure 2: DESeq2 (gexplain's implementation, checked against pydeseq2 in test_deseq2_reference.py)
calls the significant pair of dataset A at padj < 0.05 and nothing in B or C (2,000 points each,
as the paper), nor in the supplementary D (negative-binomial counts, 10 significant variables). Figure 3: kernel SHAP and LIME, run by the explain engine on the paper's fixed
decision rules (:mod:`gexplain.pipelines.models.rules`) with 20 random background points
(``references="samples"``, ``n_references=20``), rank the pair first in all three datasets, by
the mean and by the median of the local |importances| over samples (the paper's two summaries).
The explain part runs on fewer points (the same datasets' layout, 30 or 20 points) to keep the
suite fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gexplain.cluster.runtime import Runtime
from gexplain.pipelines.de.deseq2.driver import run_deseq2
from gexplain.pipelines.explain.engine import run_explain
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.models.data import read_training_data
from gexplain.pipelines.models.rules import save_rule_set
from gexplain.pipelines.simulate.sabbatini import simulate_sabbatini
from gexplain.storage.store import open_store, read_result

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
RULE = {"A": "rule_linear", "B": "rule_circle", "C": "rule_circle"}


@pytest.mark.parametrize("dataset", ["A", "B", "C", "D"])
def test_figure_2_deseq2_finds_the_pair_in_a_and_nothing_in_b_c_or_d(tmp_path: Path, dataset: str) -> None:
    url = simulate_sabbatini(str(tmp_path / f"{dataset}.zarr"), dataset=dataset, seed=0, n_per_group=1000)
    ds = open_store(url)
    (result,) = run_deseq2(ds, "~ group", [("group", "group_1", "group_0")]).values()
    called = np.nan_to_num(result["padj"].values, nan=1.0) < 0.05
    truth = ds["truth_informative"].values
    if dataset == "A":
        np.testing.assert_array_equal(called, truth)
        assert (result["padj"].values[truth] < 1e-3).all()  # the paper: p < 0.001
    else:
        assert not called.any()


@pytest.mark.parametrize("dataset", ["A", "B", "C"])
def test_figure_3_shap_and_lime_on_the_decision_rules_rank_the_pair_first(
    ray_runtime: Runtime, tmp_path: Path, dataset: str
) -> None:
    n = 10 if dataset == "C" else 15
    url = simulate_sabbatini(str(tmp_path / f"{dataset}.zarr"), dataset=dataset, seed=0, n_per_group=n)
    ds = open_store(url)
    save_rule_set(url, "default", RULE[dataset], read_training_data(ds, "group", "log_expr"))
    spec = ExplainParams(
        explainers=["kernel_shap", "lime"],
        references="samples:20",
        mode="deterministic",
        kernel_samples=64,
        repeats=1,
        actors=1,
    )
    run_explain(url, spec, name="paper", seed=0)
    result = read_result(url, "explain/paper")
    pair = set(np.flatnonzero(ds["truth_informative"].values).tolist())
    for explainer in ("kernel_shap", "lime"):
        local = np.abs(np.asarray(result[f"attr_{explainer}"].values, dtype=np.float64))
        for summary in (np.mean, np.median):
            importance = summary(local, axis=0)
            assert set(np.argsort(-importance)[:2].tolist()) == pair, (explainer, summary.__name__)
