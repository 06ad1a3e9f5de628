"""Mann-Whitney U and Welch's t-test per gene block against scipy; BH against scipy; presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
import xarray as xr
from gexplain.pipelines.de.contrasts import pairwise
from gexplain.pipelines.de.mannwhitney import mannwhitney_block, run_mannwhitney
from gexplain.pipelines.de.multitest import benjamini_hochberg
from gexplain.pipelines.de.presets import get_preset, with_calls
from gexplain.pipelines.de.welch import run_welch, welch_block
from gexplain.storage.errors import InputError
from gexplain.storage.store import create_store, open_store


def _blocks(rng: np.random.Generator) -> list[np.ndarray]:
    """Count-like (many ties), continuous, coarse-rounded and degenerate columns."""
    counts = rng.negative_binomial(2, 0.3, size=(37, 60)).astype(np.float64)
    counts[:, 0] = 4.0  # all tied
    counts[:, 1] = 0.0
    counts[:5, 2] = 1000.0  # perfect separation
    continuous = rng.normal(size=(23, 40))
    continuous[3, 5] = np.nan  # propagates, as scipy's default nan_policy
    rounded = np.round(rng.normal(size=(50, 40)), 1)
    return [counts, continuous, rounded]


@pytest.mark.parametrize("n_test", [2, 5, 11])
def test_mannwhitney_block_equals_scipy_asymptotic(n_test: int) -> None:
    for x in _blocks(np.random.default_rng(n_test)):
        got = mannwhitney_block(x, n_test)
        ref = st.mannwhitneyu(x[:n_test], x[n_test:], method="asymptotic", axis=0)
        np.testing.assert_array_equal(got[0], ref.statistic)
        np.testing.assert_allclose(got[1], ref.pvalue, rtol=1e-12, atol=0)
        np.testing.assert_allclose(got[2], x[:n_test].mean(0), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:Precision loss")
def test_welch_block_equals_scipy() -> None:
    rng = np.random.default_rng(3)
    y = np.log2(rng.negative_binomial(3, 0.1, size=(30, 80)) + 1.0)
    y[:, 0] = 2.0
    for n_test in (2, 9, 15):
        got = welch_block(y, n_test)
        ref = st.ttest_ind(y[:n_test], y[n_test:], equal_var=False, axis=0)
        np.testing.assert_allclose(got[0], ref.statistic, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(got[1], ref.pvalue, rtol=1e-12, equal_nan=True)
        se = np.sqrt(y[:n_test].var(0, ddof=1) / n_test + y[n_test:].var(0, ddof=1) / (30 - n_test))
        np.testing.assert_allclose(got[2], se, rtol=1e-12)


def test_benjamini_hochberg_equals_scipy() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(size=200) ** 3
    p[[3, 50, 51]] = p[7]  # ties
    p_nan = p.copy()
    p_nan[[10, 20]] = np.nan
    np.testing.assert_allclose(benjamini_hochberg(p), st.false_discovery_control(p, method="bh"), rtol=1e-14)
    got = benjamini_hochberg(p_nan)
    keep = ~np.isnan(p_nan)
    assert np.isnan(got[~keep]).all()
    np.testing.assert_allclose(got[keep], st.false_discovery_control(p_nan[keep], method="bh"), rtol=1e-14)


def test_benjamini_hochberg_keeps_the_former_numbers() -> None:
    """The scipy-based BH gives the numbers of the hand-written step-up it replaced (kept here as
    the reference: p_(i) m / i, cumulative minimum from the top, capped at 1, NaN left out), and
    R's p.adjust(c(0.01, 0.04, 0.03, NA, 0.2), "BH") = 0.04, 0.0533.., 0.0533.., NA, 0.2."""

    def former(p: np.ndarray) -> np.ndarray:
        out = np.full(p.shape, np.nan)
        tested = np.flatnonzero(~np.isnan(p))
        order = np.argsort(p[tested], kind="stable")
        ranked = p[tested][order] * tested.size / np.arange(1, tested.size + 1)
        out[tested[order]] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
        return out

    rng = np.random.default_rng(9)
    p = rng.uniform(size=500) ** 4
    p[[1, 2, 3]] = p[0]
    p[rng.integers(0, 500, 20)] = np.nan
    np.testing.assert_allclose(benjamini_hochberg(p), former(p), rtol=1e-14, equal_nan=True)
    r = benjamini_hochberg(np.array([0.01, 0.04, 0.03, np.nan, 0.2]))
    np.testing.assert_allclose(r, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, np.nan, 0.2], rtol=1e-14, equal_nan=True)


def _store(tmp_path: Path, values: np.ndarray, groups: np.ndarray, layer: str) -> str:
    url = str(tmp_path / f"{layer}.zarr")
    n_samples, n_genes = values.shape
    writer = create_store(
        url,
        sample_ids=np.array([f"s{i}" for i in range(n_samples)]),
        gene_ids=np.array([f"g{i}" for i in range(n_genes)]),
        coords={
            "sample_group": ("sample", groups),
            "gene_symbol": ("gene", np.array([f"SYM{i}" for i in range(n_genes)])),
        },
        layers={layer: values.dtype},
        chunks={"sample": 16, "gene": 8},
    )
    writer.write_block({}, {layer: values})
    return writer.commit()


def _cohort(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = np.array(["a"] * 13 + ["b"] * 20 + ["c"] * 7, dtype=object)
    rng.shuffle(groups)
    mu = rng.gamma(2.0, 20.0, size=50)
    fold = np.where(np.arange(50) < 10, 4.0, 1.0)
    mean = np.where((groups == "a")[:, None], mu * fold, mu)
    counts = rng.negative_binomial(5, 5 / (5 + mean)).astype(np.int64)
    return counts, groups


def test_run_mannwhitney_on_store_blocks_equals_scipy_whole(tmp_path: Path) -> None:
    counts, groups = _cohort()
    url = _store(tmp_path, counts, groups, "counts")
    ds = open_store(url)
    contrast = pairwise(ds, "group", "a", "b")
    res = run_mannwhitney(ds, contrast, layer="counts", gene_block=7, parallel=2)
    a, b = counts[groups == "a"].astype(float), counts[groups == "b"].astype(float)
    ref = st.mannwhitneyu(a, b, method="asymptotic", axis=0)
    np.testing.assert_array_equal(res["stat"].values, ref.statistic)
    np.testing.assert_allclose(res["pvalue"].values, ref.pvalue, rtol=1e-12, atol=0)
    np.testing.assert_allclose(res["padj"].values, st.false_discovery_control(ref.pvalue), rtol=1e-12)
    frame = pd.DataFrame(counts).groupby(groups).mean()
    np.testing.assert_allclose(
        res["log2FoldChange"].values, np.log2(frame.loc["a"] / frame.loc["b"]), rtol=1e-12
    )
    np.testing.assert_allclose(
        res["baseMean"].values, counts[(groups == "a") | (groups == "b")].mean(0), rtol=1e-12
    )
    assert np.isnan(res["lfcSE"].values).all()
    assert list(res["gene_symbol"].values[:2]) == ["SYM0", "SYM1"]
    assert res.attrs["contrast"] == ["group", "a", "b"]
    # the planted up-regulated genes are the significant ones
    assert set(np.flatnonzero(res["padj"].values < 0.05)) <= set(range(10))


def test_run_mannwhitney_on_lazy_cpm_equals_scipy(tmp_path: Path) -> None:
    counts, groups = _cohort(1)
    url = _store(tmp_path, counts, groups, "counts")
    ds = open_store(url)
    res = run_mannwhitney(ds, pairwise(ds, "group", "b", "c"), layer="cpm", gene_block=16)
    cpm = counts / counts.sum(1, keepdims=True) * 1e6
    ref = st.mannwhitneyu(cpm[groups == "b"], cpm[groups == "c"], method="asymptotic", axis=0)
    np.testing.assert_allclose(res["pvalue"].values, ref.pvalue, rtol=1e-12, atol=0)


def test_run_welch_on_log_expr_equals_scipy(tmp_path: Path) -> None:
    counts, groups = _cohort(2)
    log_expr = np.log2(counts / counts.sum(1, keepdims=True) * 1e6 + 1).astype(np.float32)
    url = _store(tmp_path, log_expr, groups, "log_expr")
    ds = open_store(url)
    res = run_welch(ds, pairwise(ds, "group", "a", "c"), gene_block=5, parallel=3)
    y = log_expr.astype(np.float64)
    ref = st.ttest_ind(y[groups == "a"], y[groups == "c"], equal_var=False, axis=0)
    np.testing.assert_allclose(res["stat"].values, ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(res["pvalue"].values, ref.pvalue, rtol=1e-10)
    np.testing.assert_allclose(res["padj"].values, st.false_discovery_control(ref.pvalue), rtol=1e-10)
    diff = y[groups == "a"].mean(0) - y[groups == "c"].mean(0)
    np.testing.assert_allclose(res["log2FoldChange"].values, diff, rtol=1e-10)


def test_zhao_preset_rule() -> None:
    rule = get_preset("zhao")
    result = xr.Dataset(
        {
            "padj": ("gene", [0.0005, 0.0005, 0.0005, 0.002, np.nan]),
            "log2FoldChange": ("gene", [np.log2(3.0), -np.log2(3.5), np.log2(2.9), 5.0, 5.0]),
        }
    )
    np.testing.assert_array_equal(with_calls(result, rule)["call"].values, [True, True, False, False, False])
    with pytest.raises(InputError, match="zhao"):
        get_preset("nope")
