"""The exact MLP fast path against Captum on the equivalent plain torch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import DeepLift, InputXGradient, IntegratedGradients, Saliency
from explain_params import sample_scope_params
from gexplain.pipelines.explain.compute import explain_block
from gexplain.pipelines.explain.fastpath import MLPFastPath, fast_attributions
from gexplain.pipelines.models.architectures import MLP
from torch import nn

GENES, HIDDEN, CLASSES = 40, 16, 3


def make_mlp(seed: int = 0, batch_norm: bool = True) -> tuple[MLP, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(6, GENES, generator=gen) * 5
    model = MLP(
        GENES, CLASSES, hidden=HIDDEN, dropout=0.3, mean=x.mean(0), std=x.std(0) + 0.5, batch_norm=batch_norm
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        if batch_norm:
            model.bn.running_mean.copy_(torch.randn(HIDDEN, generator=gen) * 0.3)
            model.bn.running_var.copy_(torch.rand(HIDDEN, generator=gen) + 0.5)
    model.eval()
    refs = torch.rand(6, GENES, generator=gen) * 5
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    return model, x, refs, targets


class PlainMasked(nn.Module):
    """The same network written out in plain torch with a fixed dropout mask buffer."""

    def __init__(self, mlp: MLP, mask: torch.Tensor) -> None:
        super().__init__()
        self.mlp = mlp
        self.register_buffer("mask", mask)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mlp
        z = m.bn(m.fc1((x - m.standardize.mean) / m.standardize.std))
        return m.fc2(self.relu(z) * self.mask)


def captum_reference(
    name: str, model: nn.Module, x: torch.Tensor, refs: torch.Tensor, targets: torch.Tensor, method: str
) -> torch.Tensor:
    if name == "integrated_gradients":
        return IntegratedGradients(model).attribute(
            x, baselines=refs, target=targets, n_steps=50, method=method
        )
    if name == "saliency":
        return Saliency(model).attribute(x, target=targets, abs=True)
    if name == "input_x_gradient":
        return InputXGradient(model).attribute(x, target=targets)
    return DeepLift(model).attribute(x, baselines=refs, target=targets)


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    scale = float(expected.abs().max())
    np.testing.assert_allclose(actual.detach().numpy(), expected.detach().numpy(), rtol=rel, atol=rel * scale)


@pytest.mark.parametrize("name", ["integrated_gradients", "saliency", "input_x_gradient", "deeplift"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fast_path_equals_captum(name: str, masked: bool, batch_norm: bool) -> None:
    model, x, refs, targets = make_mlp(batch_norm=batch_norm)
    mask = torch.ones(HIDDEN)
    if masked:
        mask = (torch.rand(HIDDEN, generator=torch.Generator().manual_seed(5)) > 0.3).float() / 0.7
    plain = PlainMasked(model, mask).eval()
    expected = captum_reference(name, plain, x, refs, targets, "gausslegendre")
    fast = MLPFastPath(model)
    with torch.no_grad():
        got = fast_attributions(
            fast, name, x, refs, targets, mask.expand(6, HIDDEN), 50, "gausslegendre", True
        )
    assert_close_rel(got, expected)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fast_ig_riemann_equals_captum() -> None:
    model, x, refs, targets = make_mlp(1)
    expected = IntegratedGradients(model).attribute(
        x, baselines=refs, target=targets, n_steps=20, method="riemann_trapezoid"
    )
    with torch.no_grad():
        got = fast_attributions(
            MLPFastPath(model),
            "integrated_gradients",
            x,
            refs,
            targets,
            torch.ones(6, HIDDEN),
            20,
            "riemann_trapezoid",
            True,
        )
    assert_close_rel(got, expected)


def test_completeness_ig_and_deeplift() -> None:
    model, x, refs, targets = make_mlp(2)
    fast = MLPFastPath(model)
    ones = torch.ones(6, HIDDEN)
    with torch.no_grad():
        gap = (model(x) - model(refs)).gather(1, targets[:, None])[:, 0]
        dl = fast_attributions(fast, "deeplift", x, refs, targets, ones, 50, "gausslegendre", True).sum(1)
        ig = fast_attributions(
            fast, "integrated_gradients", x, refs, targets, ones, 200, "riemann_trapezoid", True
        ).sum(1)
    np.testing.assert_allclose(dl.numpy(), gap.numpy(), rtol=1e-4, atol=1e-4 * float(gap.abs().max()))
    # Riemann error of a piecewise-linear path with kinks: O(1/steps) of the gap
    np.testing.assert_allclose(ig.numpy(), gap.numpy(), atol=0.02 * float(gap.abs().max()))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("mode", ["mc_dropout", "deterministic"])
def test_block_fast_path_equals_captum_path(mode: str) -> None:
    """Fast path and the Captum path in explain_block agree with the same dropout masks."""
    model, x, _, targets = make_mlp(3)
    names = ("integrated_gradients", "deeplift", "saliency", "input_x_gradient", "deeplift_shap")
    out = []
    for fast in (True, False):
        spec = sample_scope_params(
            explainers=names, references="normal", n_references=3, mode=mode, n_steps=16, fast_path=fast
        )
        out.append(
            explain_block(
                [model], [4], x.numpy(), targets.numpy(), np.arange(10, 16), range(0, 3), None, spec, 11
            ).finalize()
        )
    for name in names:
        for got, expected in zip(out[0][name][:2], out[1][name][:2], strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))
        np.testing.assert_array_equal(out[0][name][2], out[1][name][2])
