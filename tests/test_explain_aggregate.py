"""Streamed aggregation against numpy on the full stack of repeats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import DeepLift
from explain_params import sample_scope_params
from gexplain.pipelines.explain.aggregate import Moments, reduce_references
from gexplain.pipelines.explain.compute import BlockPartial, compute_reference_stats, explain_block
from gexplain.pipelines.explain.references import draw_references
from gexplain.pipelines.models.architectures import MLP


def test_streamed_moments_equal_numpy() -> None:
    rng = np.random.default_rng(0)
    stack = rng.normal(100.0, 0.01, size=(4, 23, 6))  # (samples, values, genes), large mean: no cancellation
    mom = Moments.empty(4, 6)
    start = 0
    for k in (1, 5, 2, 7, 8):
        mom.add(stack[:, start : start + k])
        start += k
    mean, std, count = mom.finalize()
    np.testing.assert_allclose(mean, stack.mean(1), rtol=1e-6)
    np.testing.assert_allclose(std, stack.std(1, ddof=1), rtol=1e-5)
    np.testing.assert_array_equal(count, 23)


def test_rows_and_partials_merge() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, 10, 4))
    a, b = Moments.empty(3, 4), Moments.empty(3, 4)
    a.add(values[[0, 2], :4], rows=np.array([0, 2]))
    a.add(values[[1], :6], rows=np.array([1]))
    b.add(values[[0, 2], 4:], rows=np.array([0, 2]))
    b.add(values[[1], 6:], rows=np.array([1]))
    pa = BlockPartial({"e": a}, keys=[(0, 0, 4)])
    pb = BlockPartial({"e": b}, keys=[(1, 0, 4)])
    one = pa.merge(pb).finalize()["e"]
    np.testing.assert_allclose(one[0], values.mean(1), rtol=1e-6)
    np.testing.assert_allclose(one[1], values.std(1, ddof=1), rtol=1e-5)


def test_empty_and_single_counts() -> None:
    mom = Moments.empty(2, 3)
    mom.add(np.ones((1, 1, 3)), rows=np.array([1]))
    mean, std, count = mom.finalize()
    assert np.isnan(mean[0]).all() and count.tolist() == [0, 1]
    np.testing.assert_array_equal(mean[1], 1.0)
    np.testing.assert_array_equal(std, 0.0)


def test_reduce_references_median() -> None:
    # (samples=2, references, genes=2): odd count -> middle value, even count -> mean of the middle two
    odd = np.array([[[3.0, -1.0], [1.0, 5.0], [2.0, 0.0]], [[-4.0, 7.0], [9.0, 7.5], [0.5, 6.0]]])
    got = reduce_references(odd, "median")
    assert got.shape == (2, 1, 2)
    np.testing.assert_array_equal(got[:, 0], [[2.0, 0.0], [0.5, 7.0]])
    even = np.array([[[4.0], [1.0], [10.0], [2.0]]])
    np.testing.assert_array_equal(reduce_references(even, "median")[:, 0], [[3.0]])
    assert reduce_references(odd, None) is odd
    with pytest.raises(ValueError, match="unknown reference reduction"):
        reduce_references(odd, "mean")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_block_abs_median_and_per_model_equal_numpy_over_captum() -> None:
    """abs + median over references + per-model means, against direct Captum DeepLift calls."""
    rng = np.random.default_rng(3)
    x = rng.gamma(2.0, 2.0, size=(4, 10)).astype(np.float32)
    labels = np.array([0, 1, 0, 1])
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = MLP(10, 2, hidden=8, mean=x.mean(0), std=x.std(0) + 0.1).eval()
        models.append(m)
    stats = compute_reference_stats(x, labels)
    spec = sample_scope_params(
        explainers=("deeplift",),
        references="universal",
        n_references=3,
        mode="deterministic",
        abs=True,
        reference_reduce="median",
        per_model=True,
    )
    part = explain_block(models, [3, 1], x, labels, np.arange(4), range(0, 2), stats, spec, 8)
    per_model = {}
    for model, mid in zip(models, [3, 1], strict=True):
        vals = []
        for r in range(2):
            refs = draw_references("universal_range", 3, stats, np.arange(4), r, labels, 8, 10)
            dl = [
                DeepLift(model)
                .attribute(
                    torch.from_numpy(x),
                    baselines=torch.from_numpy(refs[:, k]),
                    target=torch.from_numpy(labels),
                )
                .detach()
                .numpy()
                for k in range(3)
            ]
            vals.append(np.median(np.abs(np.stack(dl, 1)), axis=1))
        per_model[mid] = np.stack(vals, 1)
    stack = np.concatenate([per_model[1], per_model[3]], axis=1)
    mean, std, count = part.finalize()["deeplift"]
    np.testing.assert_allclose(mean, stack.mean(1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(std, stack.std(1, ddof=1), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(count, 4)
    for mid, m in part.model_means()["deeplift"].items():
        np.testing.assert_allclose(m, per_model[mid].mean(1), rtol=1e-5, atol=1e-7)
