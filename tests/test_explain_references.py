"""Reference draws against scipy.stats.truncnorm and numpy statistics."""

from __future__ import annotations

import numpy as np
import pytest
from gexplain.pipelines.explain.references import (
    compute_reference_stats,
    draw_references,
    parse_references,
    truncated_normal,
)
from gexplain.storage.errors import InputError
from scipy import stats


@pytest.mark.parametrize(
    ("mean", "std", "low", "high"),
    [(0.0, 1.0, 0.0, 1.0), (5.0, 2.0, 1.0, 12.0), (0.5, 0.3, 2.0, 4.0), (3.0, 1.0, -10.0, -1.0)],
)
def test_truncated_normal_moments_match_scipy(mean: float, std: float, low: float, high: float) -> None:
    rng = np.random.default_rng(1)
    draws = truncated_normal(
        rng, np.array([mean]), np.array([std]), np.array([low]), np.array([high]), 40000
    )[:, 0]
    assert draws.min() >= low and draws.max() <= high
    ref = stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
    se = ref.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - ref.mean()) < 5 * se
    assert abs(draws.var() - ref.var()) < 0.05 * ref.var()
    assert stats.kstest(draws, ref.cdf).pvalue > 1e-3


def test_reference_stats_match_numpy() -> None:
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, 3.0, size=(50, 7)).astype(np.float32)
    labels = rng.integers(0, 3, size=50)
    st = compute_reference_stats(x, labels, chunk=8)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(st.mean, x64.mean(0), rtol=1e-10)
    np.testing.assert_allclose(st.std, x64.std(0), rtol=1e-8)
    np.testing.assert_allclose(st.low, x64.min(0))
    np.testing.assert_allclose(st.high, x64.max(0))
    for c in range(3):
        np.testing.assert_allclose(st.class_mean[c], x64[labels == c].mean(0), rtol=1e-10)
        np.testing.assert_allclose(st.class_std[c], x64[labels == c].std(0), rtol=1e-8)
        np.testing.assert_allclose(st.class_high[c], x64[labels == c].max(0))


@pytest.mark.parametrize("kind", ["normal", "universal", "specific", "samples"])
def test_draws_are_keyed_by_sample_and_repeat(kind: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 3.0, size=(30, 5)).astype(np.float32)
    labels = np.repeat([0, 1, 2], 10)
    st = compute_reference_stats(x, labels)
    idx = np.array([4, 17, 25])
    whole = draw_references(kind, 6, st, idx, 2, labels[idx], 9, 5)
    parts = [draw_references(kind, 6, st, idx[i : i + 1], 2, labels[idx[i : i + 1]], 9, 5) for i in (2, 0, 1)]
    np.testing.assert_array_equal(whole, np.concatenate([parts[1], parts[2], parts[0]]))
    assert not np.array_equal(whole, draw_references(kind, 6, st, idx, 3, labels[idx], 9, 5))
    if kind == "normal":
        assert whole.min() >= 0 and whole.max() <= 1
    if kind == "universal":
        assert np.all(whole >= st.low.astype(np.float32)) and np.all(whole <= st.high.astype(np.float32))
    if kind == "specific":
        for i, s in enumerate(idx):
            c = labels[s]
            assert np.all(whole[i] >= st.class_low[c].astype(np.float32) - 1e-6)
            assert np.all(whole[i] <= st.class_high[c].astype(np.float32) + 1e-6)
    if kind == "samples":
        pool = {row.tobytes() for row in st.pool}
        assert all(r.tobytes() in pool for r in whole.reshape(-1, 5))


def test_zero_references_and_parse() -> None:
    assert not draw_references("zero", 2, None, np.array([0]), 0, None, 0, 4).any()
    assert parse_references("universal:60") == ("universal", 60)
    assert parse_references("zero") == ("zero", 1)
    with pytest.raises(InputError, match="universal:60"):
        parse_references("universal:x")
    with pytest.raises(InputError, match="unknown kind"):
        parse_references("gaussian:3")


def test_zhao_code_references_moments_and_bounds() -> None:
    """``universal``/``specific`` as Zhao et al.'s code draws them: |N(mu, s)| truncated to mu +- s,
    s = sigma + 0.01, mu/sigma over per-class medians (universal) or the class's samples (specific).
    Checked against scipy's truncated normal (closed-form mean and variance) and the bounds."""
    from gexplain.pipelines.explain.references import draw_reference_sets
    from scipy.stats import truncnorm

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 30)
    x = rng.gamma(3.0, 1.0, size=(120, 3)) + labels[:, None] * 2.0
    st = compute_reference_stats(x, labels, chunk=7)
    medians = np.stack([np.median(x[labels == c], axis=0) for c in range(4)])
    np.testing.assert_allclose(st.median_mean, medians.mean(0))
    np.testing.assert_allclose(st.median_std, medians.std(0))
    n = 4000
    for kind, mu, sigma in (
        ("universal", medians.mean(0), medians.std(0)),
        ("specific", x[labels == 2].mean(0), x[labels == 2].std(0)),
    ):
        sets = draw_reference_sets(kind, n, st, 5, 4, 3)
        drawn = sets.values[2 if kind == "specific" else 0].astype(np.float64)
        s = sigma + 0.01
        assert (drawn >= np.abs(mu - s) - 1e-4).all() or (mu - s < 0).any()
        assert (np.abs(drawn) <= np.abs(mu) + s + 1e-4).all()
        law = truncnorm(-1, 1, loc=mu, scale=s)  # all mu - s > 0 here, so abs() changes nothing
        assert (mu - s > 0).all()
        se = np.sqrt(law.var() / n)
        assert (np.abs(drawn.mean(0) - law.mean()) < 5 * se).all()
        np.testing.assert_allclose(drawn.var(0), law.var(), rtol=0.1)
        assert drawn.min() >= (mu - s).min() - 1e-4
    # every sample and repeat shares the set: it depends only on (seed, reference, class)
    again = draw_reference_sets("specific", 5, st, 5, 4, 3)
    np.testing.assert_array_equal(again.values, draw_reference_sets("specific", 5, st, 5, 4, 3).values)
    np.testing.assert_array_equal(again.values[:, :3], draw_reference_sets("specific", 3, st, 5, 4, 3).values)
