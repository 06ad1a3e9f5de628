"""The repeat collapse and the shared-reference contraction against explicit Captum computations.

Every collapsed number must equal the explicit per-mask, per-reference Captum loop on the same
draws (dropout masks keyed as the engine keys them, the same cohort references): float64 to 1e-9,
float32 to 1e-4 relative. ``expected`` mode must equal Captum with dropout off, and the analytic
repeat variance must match a Monte-Carlo variance over 2,000 masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import DeepLift, GuidedBackprop, InputXGradient, IntegratedGradients, Saliency
from gexplain.pipelines.explain.collapse import model_arch, probe_linear
from gexplain.pipelines.explain.compute import explain_block
from gexplain.pipelines.explain.modes import dropout_mask
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.explain.references import compute_reference_stats, draw_reference_sets
from gexplain.pipelines.explain.registry import EXPLAINERS
from gexplain.pipelines.models.architectures import CNN, MLP
from torch import nn

GENES, HIDDEN, CLASSES, P = 40, 16, 3, 0.3
SEED, MODEL_ID = 11, 4


def make_mlp(
    dtype: torch.dtype, batch_norm: bool = True, standardize: bool = True
) -> tuple[MLP, np.ndarray, np.ndarray]:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(7, GENES, generator=gen, dtype=torch.float64) * 5
    model = MLP(
        GENES,
        CLASSES,
        hidden=HIDDEN,
        dropout=P,
        mean=x.mean(0) if standardize else None,
        std=x.std(0) + 0.5 if standardize else None,
        batch_norm=batch_norm,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        if batch_norm:
            model.bn.running_mean.copy_(torch.randn(HIDDEN, generator=gen) * 0.3)
            model.bn.running_var.copy_(torch.rand(HIDDEN, generator=gen) + 0.5)
    model = model.to(dtype).eval()
    targets = np.array([0, 1, 2, 0, 1, 2, 0])
    return model, x.numpy(), targets


class Masked(nn.Module):
    """The MLP written out in plain torch with a fixed dropout mask (the independent reference)."""

    def __init__(self, mlp: MLP, mask: torch.Tensor | None) -> None:
        super().__init__()
        self.mlp = mlp
        self.mask = mask
        self.relu = nn.ReLU()  # a module, so that Captum's DeepLift applies its rescale rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mlp
        s = m.standardize
        h = x if getattr(s, "mean", None) is None else (x - s.mean) / s.std
        z = self.relu(m.bn(m.fc1(h)))
        return m.fc2(z if self.mask is None else z * self.mask)


def captum(name: str, model: nn.Module, x: torch.Tensor, ref: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if name == "integrated_gradients":
        return IntegratedGradients(model).attribute(x, baselines=ref, target=t, n_steps=20)
    if name in ("deeplift", "deeplift_shap"):
        return DeepLift(model).attribute(x, baselines=ref, target=t)
    if name == "saliency":
        return Saliency(model).attribute(x, target=t, abs=False)
    if name == "guided_backprop":
        return GuidedBackprop(model).attribute(x, target=t)
    return InputXGradient(model).attribute(x, target=t)


def explicit_mean(
    name: str, mlp: MLP, x: np.ndarray, targets: np.ndarray, refs: np.ndarray, repeats: range | None
) -> np.ndarray:
    """Mean over repeats (explicit masks; None = dropout off) and references, one Captum call each."""
    dtype = next(mlp.parameters()).dtype
    xt = torch.from_numpy(x).to(dtype)
    t = torch.from_numpy(targets)
    out = []
    for i in range(len(x)):
        masks = (
            [None]
            if repeats is None
            else [
                torch.from_numpy(dropout_mask(SEED, MODEL_ID, i, k, 0, (HIDDEN,), P)).to(dtype)
                for k in repeats
            ]
        )
        vals = []
        for m in masks:
            plain = Masked(mlp, m).eval()
            for r in refs:
                ref = torch.from_numpy(r).to(dtype)[None]
                vals.append(captum(name, plain, xt[i : i + 1], ref, t[i : i + 1]).detach().numpy()[0])
        out.append(np.mean(vals, axis=0))
    return np.stack(out)


def assert_rel(actual: np.ndarray, expected: np.ndarray, rel: float) -> None:
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * scale)


LINEAR = [
    "integrated_gradients",
    "deeplift",
    "deeplift_shap",
    "input_x_gradient",
    "saliency",
    "guided_backprop",
]
REFERENCE_FREE = ("saliency", "input_x_gradient", "guided_backprop")


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize(
    ("dtype", "rel"), [(torch.float64, 1e-9), (torch.float32, 1e-4)], ids=["float64", "float32"]
)
@pytest.mark.parametrize(("batch_norm", "standardize"), [(True, True), (False, True), (True, False)])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_collapsed_mc_dropout_equals_explicit_captum(
    name: str, dtype: torch.dtype, rel: float, batch_norm: bool, standardize: bool
) -> None:
    mlp, x, targets = make_mlp(dtype, batch_norm, standardize)
    stats = compute_reference_stats(x, targets)
    params = ExplainParams(
        explainers=[name],
        references="universal:3",
        repeats=4,
        n_steps=20,
        saliency_abs=False,
        repeat_std=False,
    )
    sets = draw_reference_sets("universal", 3, stats, SEED, CLASSES, GENES)
    part = explain_block(
        [mlp], [MODEL_ID], x, targets, np.arange(len(x)), range(0, 4), stats, params, SEED, ref_sets=sets
    )
    refs = (
        sets.values[0].astype(np.float64)
        if name not in ("saliency", "input_x_gradient")
        else np.zeros((1, GENES))
    )
    expected = explicit_mean(name, mlp, x, targets, refs, range(0, 4))
    assert_rel(part.moments[name].mean, expected, rel)  # float64 accumulator, before the float32 output cast
    assert (part.moments[name].count == 4 * (3 if name not in REFERENCE_FREE else 1)).all()


@pytest.mark.parametrize("backend", ["auto", "captum"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_collapse_equals_explicit_repeats_and_specific_references(backend: str) -> None:
    """Collapsed vs repeat_mode='explicit' on the same draws, with per-class (specific) references."""
    mlp, x, targets = make_mlp(torch.float64)
    stats = compute_reference_stats(x, targets)
    common = dict(
        explainers=["integrated_gradients", "deeplift"], references="specific:2", repeats=3, n_steps=10
    )
    fast = ExplainParams(**common, backend=backend, repeat_std=False)
    slow = ExplainParams(**common, repeat_mode="explicit", backend="captum")
    a = explain_block([mlp], [MODEL_ID], x, targets, np.arange(7), range(0, 3), stats, fast, SEED).moments
    b = explain_block([mlp], [MODEL_ID], x, targets, np.arange(7), range(0, 3), stats, slow, SEED).moments
    for name in common["explainers"]:
        assert_rel(a[name].mean, b[name].mean, 1e-9)
        np.testing.assert_array_equal(a[name].count, b[name].count)


@pytest.mark.parametrize("name", ["integrated_gradients", "deeplift"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_expected_mode_equals_captum_dropout_off(name: str) -> None:
    mlp, x, targets = make_mlp(torch.float64)
    stats = compute_reference_stats(x, targets)
    params = ExplainParams(explainers=[name], references="universal:2", mode="expected", n_steps=20)
    sets = draw_reference_sets("universal", 2, stats, SEED, CLASSES, GENES)
    part = explain_block(
        [mlp], [MODEL_ID], x, targets, np.arange(7), range(0, 5), stats, params, SEED, ref_sets=sets
    )
    expected = explicit_mean(name, mlp, x, targets, sets.values[0].astype(np.float64), None)
    assert_rel(part.moments[name].mean, expected, 1e-9)
    assert name in part.repeat_std()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_analytic_repeat_variance_matches_monte_carlo() -> None:
    """p/(1-p) sum_h L_h^2 vs the sample variance over 2,000 explicit masks (Captum, float64)."""
    mlp, x, targets = make_mlp(torch.float64)
    x, targets = x[:2], targets[:2]
    stats = compute_reference_stats(x, targets, medians=False)
    params = ExplainParams(explainers=["deeplift"], references="universal_range:2", mode="expected")
    sets = draw_reference_sets("universal_range", 2, stats, SEED, CLASSES, GENES)
    part = explain_block(
        [mlp], [0], x, targets, np.arange(2), range(0, 1), stats, params, SEED, ref_sets=sets
    )
    analytic = part.repeat_std()["deeplift"].astype(np.float64) ** 2
    # Monte Carlo: DeepLift is linear in the mask, so per-unit Captum attributions (unit basis masks)
    # give every one of the 2,000 repeats exactly; the draws are independent Bernoulli masks
    refs = torch.from_numpy(sets.values[0].astype(np.float64))
    xt = torch.from_numpy(x)
    units = []
    for h in range(HIDDEN):
        e = torch.zeros(HIDDEN, dtype=torch.float64)
        e[h] = 1.0
        plain = Masked(mlp, e).eval()
        per_ref = [
            DeepLift(plain).attribute(xt, baselines=r[None].expand_as(xt), target=torch.from_numpy(targets))
            for r in refs
        ]
        units.append(torch.stack(per_ref).mean(0).detach().numpy())
    units_arr = np.stack(units)  # (hidden, samples, genes)
    rng = np.random.default_rng(0)
    masks = (rng.random((2000, HIDDEN)) >= P) / (1 - P)
    draws = np.einsum("kh,hsg->ksg", masks, units_arr)
    mc = draws.var(axis=0, ddof=1)
    # the sample variance of 2,000 draws has relative standard error about sqrt(2/1999) * sqrt(kurtosis factor)
    ok = np.abs(mc - analytic) <= 6 * np.sqrt(2 / 1999) * analytic + 1e-12
    assert ok.mean() > 0.99
    np.testing.assert_allclose(
        draws.mean(0), part.finalize()["deeplift"][0], rtol=0, atol=0.1 * np.abs(units_arr.sum(0)).max()
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_empirical_repeat_std_equals_explicit_repeats() -> None:
    """mc_dropout repeat_std: the std across the K repeats of the reference-mean attribution."""
    mlp, x, targets = make_mlp(torch.float64)
    stats = compute_reference_stats(x, targets)
    params = ExplainParams(
        explainers=["integrated_gradients"], references="universal:2", repeats=5, n_steps=20
    )
    sets = draw_reference_sets("universal", 2, stats, SEED, CLASSES, GENES)
    part = explain_block(
        [mlp], [MODEL_ID], x, targets, np.arange(7), range(0, 5), stats, params, SEED, ref_sets=sets
    )
    refs = sets.values[0].astype(np.float64)
    per_repeat = np.stack(
        [explicit_mean("integrated_gradients", mlp, x, targets, refs, range(k, k + 1)) for k in range(5)]
    )
    assert_rel(part.repeat_std()["integrated_gradients"].astype(np.float64), per_repeat.std(0, ddof=1), 1e-6)
    assert_rel(part.moments["integrated_gradients"].mean, per_repeat.mean(0), 1e-9)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cnn_repeats_are_not_collapsed_and_probe_detects_it() -> None:
    """Zhao's CNN has dropout before the head's ReLU: the mean mask is not the mean of repeats."""
    torch.manual_seed(0)
    cnn = CNN(64, 3, grid=8, dropout=0.5).double().eval()
    x = torch.rand(3, 64, dtype=torch.float64) * 3
    with torch.no_grad():  # put the head's ReLU near its kink, as in a trained model
        feats = cnn.gap(
            cnn.act3(
                cnn.bn3(
                    cnn.pool3(
                        cnn.conv3(
                            cnn.act2(
                                cnn.bn2(
                                    cnn.pool2(
                                        cnn.conv2(
                                            cnn.act1(
                                                cnn.bn1(cnn.pool1(cnn.conv1(cnn.to_grid(cnn.standardize(x)))))
                                            )
                                        )
                                    )
                                )
                            )
                        )
                    )
                )
            )
        )
        cnn.bn_head.running_mean.copy_(feats.reshape(len(x), -1).mean(0))
        cnn.bn_head.running_var.copy_(feats.reshape(len(x), -1).var(0) + 1e-6)
    params = ExplainParams(explainers=["integrated_gradients"], references="zero", repeats=2)
    assert model_arch(cnn, [EXPLAINERS["integrated_gradients"]], x, params) is None

    class Undeclared(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.inner(v)

    assert not probe_linear(Undeclared(cnn), EXPLAINERS["integrated_gradients"], x, params)
    mlp, xm, _ = make_mlp(torch.float64)
    assert probe_linear(Undeclared(mlp), EXPLAINERS["integrated_gradients"], torch.from_numpy(xm), params)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_median_of_repeat_mean_collapses_exactly() -> None:
    """reference_reduce='median_of_repeat_mean': collapsed (MLP closed forms, mean mask) equals the
    explicit Captum loop over repeats, and the hand-made median over references of the repeat means."""
    mlp, x, targets = make_mlp(torch.float64)
    stats = compute_reference_stats(x, targets)
    common = dict(
        explainers=["deeplift"], references="universal:3", repeats=3, reference_reduce="median_of_repeat_mean"
    )
    sets = draw_reference_sets("universal", 3, stats, SEED, CLASSES, GENES)
    fast = ExplainParams(**common)
    slow = ExplainParams(**common, repeat_mode="explicit", backend="captum")
    a = explain_block(
        [mlp], [MODEL_ID], x, targets, np.arange(7), range(0, 3), stats, fast, SEED, ref_sets=sets
    )
    b = explain_block(
        [mlp], [MODEL_ID], x, targets, np.arange(7), range(0, 3), stats, slow, SEED, ref_sets=sets
    )
    assert_rel(a.moments["deeplift"].mean, b.moments["deeplift"].mean, 1e-9)
    per_ref = np.stack(
        [
            explicit_mean(
                "deeplift", mlp, x, targets, sets.values[0][r : r + 1].astype(np.float64), range(0, 3)
            )
            for r in range(3)
        ]
    )
    assert_rel(a.moments["deeplift"].mean, np.median(per_ref, axis=0), 1e-9)
