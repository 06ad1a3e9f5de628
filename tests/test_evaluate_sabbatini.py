"""Sabbatini & Manganaro's outcome reproduced through the evaluate stage.

On circles (B, C) the group depends on genes only through a radius, so differential expression
(gexplain's Welch and Mann-Whitney tests) calls no informative gene at padj < 0.05, while a small
MLP explained with integrated gradients (Captum) ranks the informative genes at the top; on clouds
(A) both succeed. DE results and attributions are written into the store and scored by
:func:`pipelines.evaluate.run.evaluate_store`, whose metrics are checked independently in
test_evaluate_metrics.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from captum.attr import IntegratedGradients
from torch import nn

from pipelines.de.contrasts import pairwise
from pipelines.de.mannwhitney import run_mannwhitney
from pipelines.de.welch import run_welch
from pipelines.evaluate.run import EvaluateOptions, evaluate_store
from pipelines.simulate.sabbatini import simulate_sabbatini
from storage.store import open_store, write_result

N_PER_GROUP = 500


def _integrated_gradients(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Train an L1-regularised MLP (genes -> 32 -> 2) on 80 % of the samples; IG of every sample.

    Returns (sample, gene) attributions of each sample's own group, baseline = the gene means.
    """
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y)
    n_train = int(0.8 * y.size)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(400):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt[:n_train]), yt[:n_train])
        (loss + 1e-2 * model[0].weight.abs().sum()).backward()
        opt.step()
    with torch.no_grad():
        held_out = (model(xt[n_train:]).argmax(1) == yt[n_train:]).float().mean().item()
    assert held_out > 0.9, f"the MLP did not learn the groups (held-out accuracy {held_out:.2f})"
    ig = IntegratedGradients(model)
    attr = ig.attribute(xt, baselines=torch.zeros_like(xt), target=yt, n_steps=32)
    return attr.detach().numpy().astype(np.float32)


def _evaluate(tmp_path: Path, dataset: str) -> pd.DataFrame:
    torch.set_num_threads(1)
    url = simulate_sabbatini(
        str(tmp_path / f"{dataset}.zarr"), dataset=dataset, seed=0, n_per_group=N_PER_GROUP
    )
    ds = open_store(url)
    contrast = pairwise(ds, "group", "group_1", "group_0")
    write_result(url, f"de/welch/{contrast.name}", run_welch(ds, contrast, layer="log_expr", parallel=1))
    write_result(
        url, f"de/mannwhitney/{contrast.name}", run_mannwhitney(ds, contrast, layer="log_expr", parallel=1)
    )
    x = np.asarray(ds["log_expr"].values, dtype=np.float32)
    y = (np.asarray(ds["sample_group"].values).astype(str) == "group_1").astype(np.int64)
    attr = _integrated_gradients(x, y)
    write_result(
        url,
        "explain/ig",
        xr.Dataset(
            {"attr_integrated_gradients": (("sample", "gene"), attr)},
            coords={"sample": ds["sample"].values, "gene": ds["gene"].values},
        ),
    )
    out = evaluate_store(url, EvaluateOptions(k=2))
    gt = out.tables["ground_truth"]
    return gt[gt["subset"] == "all"].set_index("source")


def _de_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["kind"] == "de"]


def test_clouds_a_both_succeed(tmp_path: Path) -> None:
    t = _evaluate(tmp_path, "A")
    de = _de_rows(t)
    assert len(de) == 2
    assert (de["n_called_true"] == 2).all()  # both linear genes significant for Welch and Mann-Whitney
    assert (de["precision_at_k"] == 1.0).all()
    assert t.loc["ig:integrated_gradients", "precision_at_k"] == 1.0  # top-2 genes = the informative pair


@pytest.mark.parametrize("dataset", ["B", "C"])
def test_circles_de_fails_attribution_succeeds(tmp_path: Path, dataset: str) -> None:
    t = _evaluate(tmp_path, dataset)
    de = _de_rows(t)
    assert len(de) == 2
    assert (de["n_called_true"] == 0).all()  # DE finds no informative gene at padj < 0.05
    ig = t.loc["ig:integrated_gradients"]
    if dataset == "B":  # 10 genes: the circle pair is the top 2
        assert ig["precision_at_k"] == 1.0
        assert ig["auroc"] == 1.0
    else:  # 1,000 genes, 198 near-copies of the circle genes (corr up to 0.99): top 1 %
        assert ig["auroc"] > 0.99
        assert (de["auroc"] < 0.8).all()
