"""Zhao et al.'s aggregation (abs -> median over references per repeat -> mean over repeats), exactly.

The oracle is an explicit loop over (sample, repeat, reference) calling Captum on a plain torch
copy of the MLP with that repeat's dropout mask fixed, then ``np.abs`` and ``np.median`` as in
``mlp_v2.0.0.py`` l.648-649, then the mean over repeats. Models run in float64 so the closed
forms must agree to 1e-9 (relative to the largest value).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import DeepLift, InputXGradient, IntegratedGradients, Saliency
from gexplain.pipelines.explain.compute import explain_block
from gexplain.pipelines.explain.exact import ReduceOptions, _reduce_torch, median_network, reduce_rows
from gexplain.pipelines.explain.modes import dropout_mask
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.explain.references import draw_reference_sets, repeat_reference_index
from gexplain.pipelines.models.architectures import MLP
from torch import nn

GENES, HIDDEN, CLASSES, N = 30, 12, 3, 4
SEED, MODEL_ID = 7, 2


def float64_mlp(batch_norm: bool = True) -> tuple[MLP, np.ndarray, np.ndarray]:
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(N, GENES, generator=gen, dtype=torch.float64) * 4
    model = MLP(
        GENES, CLASSES, hidden=HIDDEN, dropout=0.3, mean=x.mean(0), std=x.std(0) + 0.5, batch_norm=batch_norm
    )
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
        if batch_norm:
            model.bn.running_mean.copy_(torch.randn(HIDDEN, generator=gen, dtype=torch.float64) * 0.3)
            model.bn.running_var.copy_(torch.rand(HIDDEN, generator=gen, dtype=torch.float64) + 0.5)
    model.eval()
    return model, x.numpy(), np.array([0, 1, 2, 1])


class FixedMask(nn.Module):
    """The MLP written out in plain torch with one fixed dropout mask (what Captum differentiates)."""

    def __init__(self, mlp: MLP, mask: np.ndarray) -> None:
        super().__init__()
        self.mlp = mlp
        self.register_buffer("mask", torch.from_numpy(mask).to(torch.float64))
        self.relu = nn.ReLU()  # a module: Captum's DeepLift applies its rescale rule to it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mlp
        z = m.bn(m.fc1((x - m.standardize.mean) / m.standardize.std))
        return m.fc2(self.relu(z) * self.mask)


def captum_one(name: str, model: nn.Module, x: torch.Tensor, ref: torch.Tensor, t: int) -> np.ndarray:
    target = torch.tensor([t])
    if name == "integrated_gradients":
        out = IntegratedGradients(model).attribute(x, baselines=ref, target=target, n_steps=20)
    elif name == "deeplift":
        out = DeepLift(model).attribute(x, baselines=ref, target=target)
    elif name == "saliency":
        out = Saliency(model).attribute(x, target=target, abs=True)
    else:
        out = InputXGradient(model).attribute(x, target=target)
    return out.detach().numpy()[0]


def oracle(
    name: str, model: MLP, x: np.ndarray, targets: np.ndarray, refs_by_repeat: list[np.ndarray], median: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Mean over repeats and its ddof=1 std of the per-repeat reduction of |attr| over references."""
    per_repeat = []
    for k, refs in enumerate(refs_by_repeat):
        rows = []
        for i in range(N):
            mask = dropout_mask(SEED, MODEL_ID, 100 + i, k, 0, (HIDDEN,), 0.3)
            plain = FixedMask(model, mask).eval()
            xi = torch.from_numpy(x[i : i + 1])
            values = [
                captum_one(name, plain, xi, torch.from_numpy(r[None].astype(np.float64)), int(targets[i]))
                for r in refs
            ]
            values = np.abs(np.stack(values))
            rows.append(np.median(values, axis=0) if median else values)
        per_repeat.append(np.stack(rows))
    if median:
        stack = np.stack(per_repeat)  # (K, N, G)
        return stack.mean(0), stack.std(0, ddof=1)
    stack = np.concatenate(per_repeat, axis=1)  # (N, K*R, G)
    return stack.mean(1), stack.std(1, ddof=1)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("name", "scope", "n_refs"),
    [
        ("integrated_gradients", "cohort", 4),  # even R: np.median's mean of the two middle values
        ("integrated_gradients", "repeat", 3),
        ("deeplift", "repeat", 4),
        ("saliency", "cohort", 1),
        ("input_x_gradient", "repeat", 1),
    ],
)
def test_paper_aggregation_equals_captum_loop(name: str, scope: str, n_refs: int) -> None:
    model, x, targets = float64_mlp()
    repeats, pool = 2, 6
    params = ExplainParams(
        explainers=[name],
        references=f"normal:{n_refs}",
        reference_scope=scope,
        reference_pool=pool if scope == "repeat" else 0,
        repeats=repeats,
        abs=True,
        reference_reduce="median",
        n_steps=20,
        ig_method="gausslegendre",
        memory_budget_mb=1,
    )
    sets = draw_reference_sets("normal", params.reference_set_size, None, SEED, CLASSES, GENES)
    if scope == "repeat":
        index = repeat_reference_index(SEED, range(repeats), -1, pool, n_refs)
    else:
        index = np.tile(np.arange(n_refs), (repeats, 1))
    refs_by_repeat = [sets.values[0][index[k]] for k in range(repeats)]
    partial = explain_block(
        [model], [MODEL_ID], x, targets, np.arange(100, 100 + N), range(repeats), None, params, SEED
    )
    got = partial.finalize()[name]
    mean, std = oracle(name, model, x, targets, refs_by_repeat, median=True)
    scale = float(np.abs(mean).max())
    np.testing.assert_allclose(partial.moments[name].mean, mean, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(got[1], std, rtol=1e-5, atol=1e-6 * scale)
    assert (got[2] == repeats).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_abs_mean_over_every_value_equals_captum_loop() -> None:
    """abs without a median: mean and std over every (repeat, reference) value."""
    model, x, targets = float64_mlp(batch_norm=False)
    params = ExplainParams(
        explainers=["integrated_gradients"],
        references="normal:3",
        reference_scope="cohort",
        repeats=2,
        abs=True,
        n_steps=20,
    )
    sets = draw_reference_sets("normal", 3, None, SEED, CLASSES, GENES)
    partial = explain_block(
        [model], [MODEL_ID], x, targets, np.arange(100, 100 + N), range(2), None, params, SEED
    )
    got = partial.finalize()["integrated_gradients"]
    mean, std = oracle("integrated_gradients", model, x, targets, [sets.values[0]] * 2, median=False)
    scale = float(np.abs(mean).max())
    np.testing.assert_allclose(partial.moments["integrated_gradients"].mean, mean, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(got[1], std, rtol=1e-5, atol=1e-6 * scale)
    assert (got[2] == 6).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_exact_path_equals_captum_backend_float64() -> None:
    """The GEMM path and the Captum backend of explain_block agree to 1e-9 (same masks, references)."""
    model, x, targets = float64_mlp()
    out = []
    for backend in ("auto", "captum"):
        params = ExplainParams(
            explainers=["integrated_gradients", "deeplift"],
            references="normal:5",
            reference_scope="repeat",
            reference_pool=8,
            repeats=2,
            abs=True,
            reference_reduce="median",
            n_steps=16,
            backend=backend,
        )
        out.append(explain_block([model], [1], x, targets, np.arange(N), range(2), None, params, 3).moments)
    for name in ("integrated_gradients", "deeplift"):
        scale = float(np.abs(out[1][name].mean).max())
        np.testing.assert_allclose(out[0][name].mean, out[1][name].mean, rtol=0, atol=1e-9 * scale)
        np.testing.assert_allclose(out[0][name].m2, out[1][name].m2, rtol=0, atol=1e-9 * scale**2)


@pytest.mark.parametrize("n_refs", [1, 2, 3, 5, 8, 60, 64])
@pytest.mark.parametrize("median", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reduction_kernels_equal_numpy(n_refs: int, median: bool, dtype: type) -> None:
    """Compiled and torch reductions against np.abs / np.median / np.mean, with ties, in float32
    and float64; genes span more than one compiled gene block."""
    rng = np.random.default_rng(n_refs)
    genes, n, k, pool = 300, 2, 3, max(9, n_refs + 1)
    proj = rng.normal(size=(n, k, n_refs, genes)).astype(dtype)
    if n_refs > 2:
        proj[:, :, 1] = proj[:, :, 0]  # ties
    x = rng.normal(size=(n, genes)).astype(dtype)
    pool_v = rng.normal(size=(pool, genes)).astype(dtype)
    index = np.stack([rng.permutation(pool)[:n_refs] for _ in range(k)])
    values = np.abs(proj * (x[:, None, None, :] - pool_v[index][None])).astype(np.float64)
    expected = np.median(values, 2) if median else values.mean(2)
    options = ReduceOptions("delta", True, median)
    tol = 1e-14 if dtype == np.float64 else 1e-6
    for fn in (reduce_rows, _reduce_torch):
        center, m2 = fn(
            torch.from_numpy(np.ascontiguousarray(proj.reshape(-1, genes).T)),
            torch.from_numpy(x),
            torch.from_numpy(pool_v),
            index,
            options,
        )
        np.testing.assert_allclose(center, expected, rtol=tol, atol=tol)
        if not median:
            dev = ((values - values.mean(2, keepdims=True)) ** 2).sum(2)
            np.testing.assert_allclose(m2, dev, rtol=100 * tol, atol=100 * tol)


@pytest.mark.parametrize("n", [*range(1, 18), 31, 60, 64, 65])
def test_median_network_selects_numpy_median(n: int) -> None:
    """The pruned compare-exchange network leaves np.median's middle values in place, on random
    values with ties (and, for n <= 12, on every 0/1 input: the 0-1 principle)."""
    pairs, lower, upper = median_network(n)
    rng = np.random.default_rng(n)
    trials = [rng.integers(0, 4, size=n).astype(float) for _ in range(200)]
    if n <= 12:
        trials += [np.array([(b >> i) & 1 for i in range(n)], dtype=float) for b in range(2**n)]
    for v in trials:
        w = v.copy()
        for a, b in pairs:
            if w[b] < w[a]:
                w[a], w[b] = w[b], w[a]
        assert (w[lower] + w[upper]) / 2 == np.median(v)


def test_repeat_scope_draws_subsets_of_the_pool() -> None:
    """Scope 'repeat': each repeat takes R distinct pool rows; repeats differ; keys, not order."""
    index = repeat_reference_index(0, range(6), 2, 128, 64)
    assert index.shape == (6, 64)
    assert all(len(set(row)) == 64 and row.max() < 128 for row in index)
    assert len({tuple(sorted(row)) for row in index}) == 6
    np.testing.assert_array_equal(repeat_reference_index(0, range(3, 5), 2, 128, 64), index[3:5])
    with pytest.raises(ValueError, match="reference_pool"):
        ExplainParams(references="universal:64", reference_scope="repeat", reference_pool=32)
    with pytest.raises(ValueError, match="reference_scope"):
        ExplainParams(references="universal:64", reference_pool=128)


@pytest.mark.parametrize(
    "method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"]
)
def test_quadrature_equals_captum(method: str) -> None:
    """The closed forms' integration points and weights are Captum's, bit for bit."""
    from captum.attr._utils.approximation_methods import approximation_parameters
    from gexplain.pipelines.explain.fastpath import _quadrature

    sizes, alphas = approximation_parameters(method)
    for n in (2, 7, 50):
        assert _quadrature(method, n) == (sizes(n), alphas(n))
