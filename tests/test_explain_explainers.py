"""Each explainer against Captum, SHAP or a closed form, and determinism of the draws."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import (
    DeepLift,
    DeepLiftShap,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Saliency,
)
from explain_params import sample_scope_params
from gexplain.pipelines.explain.compute import compute_reference_stats, explain_block
from gexplain.pipelines.explain.gradcampp import gradcampp_weights
from gexplain.pipelines.explain.references import draw_references
from gexplain.pipelines.models.architectures import CNN, MLP
from gexplain.storage.errors import InputError
from torch import nn

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GENES, CLASSES = 30, 3


def cohort(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.log2(rng.gamma(1.0, 20.0, size=(n, GENES)) + 1).astype(np.float32), np.arange(n) % CLASSES


def mlp(x: np.ndarray, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    model = MLP(GENES, CLASSES, hidden=12, dropout=0.4, mean=x.mean(0), std=x.std(0) + 0.1)
    with torch.no_grad():
        model.bn.running_mean.normal_(0, 0.3)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.fill_(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def captum_direct(
    name: str, model: nn.Module, x: torch.Tensor, ref: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    if name == "integrated_gradients":
        return IntegratedGradients(model).attribute(x, baselines=ref, target=t, n_steps=20)
    if name == "deeplift":
        return DeepLift(model).attribute(x, baselines=ref, target=t)
    if name == "saliency":
        return Saliency(model).attribute(x, target=t)
    if name == "input_x_gradient":
        return InputXGradient(model).attribute(x, target=t)
    return GuidedBackprop(model).attribute(x, target=t)


@pytest.mark.parametrize("fast_path", [True, False])
def test_block_equals_direct_captum_calls(fast_path: bool) -> None:
    """Mean/std over repeats x references equal numpy over direct Captum calls per reference."""
    x, labels = cohort()
    model = mlp(x)
    stats = compute_reference_stats(x, labels)
    names = ("integrated_gradients", "deeplift", "saliency", "input_x_gradient", "guided_backprop")
    spec = sample_scope_params(
        explainers=names,
        references="specific",
        n_references=2,
        mode="deterministic",
        n_steps=20,
        fast_path=fast_path,
    )
    idx = np.arange(20, 28)
    got = explain_block([model], [0], x, labels, idx, range(0, 2), stats, spec, 5).finalize()
    xt, tt = torch.from_numpy(x), torch.from_numpy(labels)
    for name in names:
        per_ref = name in ("integrated_gradients", "deeplift")
        stack = []
        for r in range(2):
            refs = draw_references("specific_range", 2, stats, idx, r, labels, 5, GENES)
            for k in range(2 if per_ref else 1):
                stack.append(
                    captum_direct(name, model, xt, torch.from_numpy(refs[:, k]), tt).detach().numpy()
                )
        stack_np = np.stack(stack, 1)
        mean, std, count = got[name]
        scale = np.abs(stack_np).max()
        np.testing.assert_allclose(mean, stack_np.mean(1), rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(std, stack_np.std(1, ddof=1), rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_array_equal(count, stack_np.shape[1])


def test_deeplift_shap_equals_captum() -> None:
    x, labels = cohort()
    model = mlp(x, 1)
    stats = compute_reference_stats(x, labels)
    spec = sample_scope_params(
        explainers=("deeplift_shap",), references="universal", n_references=4, mode="deterministic"
    )
    got = explain_block([model], [0], x, labels, np.arange(8), range(3, 4), stats, spec, 2).finalize()[
        "deeplift_shap"
    ]
    refs = draw_references("universal_range", 4, stats, np.arange(8), 3, labels, 2, GENES)
    for i in range(8):
        expected = DeepLiftShap(model).attribute(
            torch.from_numpy(x[i : i + 1]), baselines=torch.from_numpy(refs[i]), target=int(labels[i])
        )
        np.testing.assert_allclose(got[0][i], expected[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    assert (got[2] == 1).all()


def test_gradient_shap_and_smoothgrad_linear_closed_form() -> None:
    """On a linear model GradientSHAP is w_t (x - mean reference); SmoothGrad of |gradient| is |w_t|."""
    x, labels = cohort()
    w = torch.randn(CLASSES, GENES, generator=torch.Generator().manual_seed(3))
    model = Linear(w)
    stats = compute_reference_stats(x, labels)
    spec = sample_scope_params(
        explainers=("gradient_shap", "smoothgrad_saliency"),
        references="universal",
        n_references=3,
        mode="deterministic",
        nt_samples=3,
    )
    got = explain_block([model], [0], x, labels, np.arange(8), range(0, 1), stats, spec, 4).finalize()
    refs = draw_references("universal_range", 3, stats, np.arange(8), 0, labels, 4, GENES)
    wt = w.numpy()[labels]
    np.testing.assert_allclose(got["gradient_shap"][0], wt * (x - refs.mean(1)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["smoothgrad_saliency"][0], np.abs(wt), rtol=1e-5)


@pytest.mark.parametrize("name", ["kernel_shap", "lime"])
def test_kernel_methods_linear_closed_form(name: str) -> None:
    """SHAP / LIME (least squares) of a linear model from reference x' is w_t (x - x')."""
    x, labels = cohort(3)
    w = torch.randn(CLASSES, GENES, generator=torch.Generator().manual_seed(4))
    model = Linear(w)
    spec = sample_scope_params(
        explainers=(name,), references="normal", n_references=1, mode="deterministic", kernel_samples=300
    )
    got = explain_block([model], [0], x, labels, np.arange(3), range(0, 1), None, spec, 4).finalize()[name][0]
    refs = draw_references("normal", 1, None, np.arange(3), 0, labels, 4, GENES)[:, 0]
    expected = w.numpy()[labels] * (x - refs)
    # exact up to the float32 weighted least-squares solve
    np.testing.assert_allclose(got, expected, atol=2e-3 * np.abs(expected).max())
    if name == "kernel_shap":
        torch.manual_seed(0)
        direct = KernelShap(model).attribute(
            torch.from_numpy(x[:1]),
            baselines=torch.from_numpy(refs[:1]),
            target=int(labels[0]),
            n_samples=300,
        )
        np.testing.assert_allclose(got[0], direct[0].numpy(), atol=2e-3 * np.abs(expected).max())


def test_shap_deep_additivity() -> None:
    x, labels = cohort(4)
    model = mlp(x, 2)
    stats = compute_reference_stats(x, labels)
    spec = sample_scope_params(
        explainers=("shap_deep",), references="universal", n_references=5, mode="deterministic"
    )
    got = explain_block([model], [0], x, labels, np.arange(4), range(0, 1), stats, spec, 6).finalize()
    refs = torch.from_numpy(draw_references("universal_range", 5, stats, np.arange(4), 0, labels, 6, GENES))
    with torch.no_grad():
        fx = model(torch.from_numpy(x)).gather(1, torch.from_numpy(labels)[:, None])[:, 0].numpy()
        fr = np.array([model(refs[i])[:, labels[i]].mean().item() for i in range(4)])
    np.testing.assert_allclose(got["shap_deep"][0].sum(1), fx - fr, rtol=1e-3, atol=1e-4)


def test_shap_gradient_linear_closed_form() -> None:
    """Expected gradients of a linear model: w_t (x - E[reference]), E over the row's references.

    SHAP draws ``nsamples`` references (with replacement), so the estimate is w_t (x - mean of the
    drawn references); the tolerance is 5 standard errors of that mean per gene.
    """
    x, labels = cohort(4)
    w = torch.randn(CLASSES, GENES, generator=torch.Generator().manual_seed(7))
    model = Linear(w)
    stats = compute_reference_stats(x, labels)
    nsamples = 2000
    spec = sample_scope_params(
        explainers=("shap_gradient",),
        references="universal",
        n_references=5,
        mode="deterministic",
        shap_nsamples=nsamples,
    )
    got = explain_block([model], [0], x, labels, np.arange(4), range(0, 1), stats, spec, 6).finalize()[
        "shap_gradient"
    ][0]
    refs = draw_references("universal_range", 5, stats, np.arange(4), 0, labels, 6, GENES)
    wt = w.numpy()[labels]
    expected = wt * (x - refs.mean(1))
    tol = 5 * np.abs(wt) * refs.std(1) / np.sqrt(nsamples) + 1e-5
    assert (np.abs(got - expected) <= tol).all()


def small_cnn() -> CNN:
    torch.manual_seed(0)
    model = CNN(64, CLASSES, dropout=0.3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


class GridBody(nn.Module):
    """The CNN taking its grid directly (as Captum's GuidedGradCam expects images)."""

    def __init__(self, cnn: CNN) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        c = self.cnn
        h = c.act1(c.bn1(c.pool1(c.conv1(grid))))
        h = c.act2(c.bn2(c.pool2(c.conv2(h))))
        h = c.act3(c.bn3(c.pool3(c.conv3(h))))
        return c.fc(c.act_head(c.bn_head(c.gap(c.dropout(h)).flatten(1))))


def test_guided_gradcam_equals_captum() -> None:
    cnn = small_cnn()
    x = torch.rand(3, 64, generator=torch.Generator().manual_seed(1)) * 4
    t = np.array([0, 1, 2])
    spec = sample_scope_params(explainers=("guided_gradcam",), mode="deterministic")
    got = explain_block([cnn], [0], x.numpy(), t, np.arange(3), range(0, 1), None, spec, 0).finalize()[
        "guided_gradcam"
    ][0]
    body = GridBody(cnn)
    expected = GuidedGradCam(body, cnn.conv3).attribute(
        x.reshape(3, 1, 8, 8), target=torch.from_numpy(t), interpolate_mode="bilinear"
    )
    np.testing.assert_allclose(got, expected.reshape(3, 64).detach().numpy(), rtol=1e-5, atol=1e-7)


def gradcampp_reference(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Grad-CAM++ weights (K,) of one sample by explicit loops (float64); alpha = 0 where g or the
    denominator is 0."""
    k_, h_, w_ = a.shape
    out = np.zeros(k_)
    for k in range(k_):
        total = a[k].sum()
        for i in range(h_):
            for j in range(w_):
                gij = g[k, i, j]
                denom = 2 * gij**2 + total * gij**3
                if gij == 0 or denom == 0:
                    continue
                out[k] += gij**2 / denom * max(gij, 0.0)
    return out


def test_gradcampp_weights_equal_direct_loop() -> None:
    gen = torch.Generator().manual_seed(2)
    acts = torch.relu(torch.randn(3, 4, 2, 3, generator=gen))
    grads = torch.randn(3, 4, 2, 3, generator=gen)
    grads[0, 1] = 0.0
    # a zero denominator: sum A = 2 and g = -1 give 2 g^2 + g^3 sum A = 0
    acts[1, 2] = torch.tensor([[0.5, 0.5, 0.25], [0.25, 0.5, 0.0]])
    grads[1, 2, 0, 0] = -1.0
    got = gradcampp_weights(acts, grads).numpy()
    assert np.isfinite(got).all()
    a, g = acts.double().numpy(), grads.double().numpy()
    for b in range(3):
        np.testing.assert_allclose(got[b], gradcampp_reference(a[b], g[b]), rtol=1e-5, atol=1e-7)


def test_guided_gradcam_pp_equals_per_sample_loop() -> None:
    """Rectified act3 maps -> loop weights -> ReLU(sum_k w_k A_k) -> bilinear to the grid -> genes,
    times Captum's GuidedBackprop, one sample at a time."""
    torch.manual_seed(5)
    cnn = CNN(300, CLASSES, grid=24, dropout=0.3)  # act3 is 3 x 3: a non-trivial up-sampling
    with torch.no_grad():
        for m in cnn.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    cnn.eval()
    x = torch.rand(3, 300, generator=torch.Generator().manual_seed(6)) * 4
    t = np.array([2, 0, 1])
    spec = sample_scope_params(explainers=("guided_gradcam_pp",), mode="deterministic")
    got = explain_block([cnn], [0], x.numpy(), t, np.arange(3), range(0, 1), None, spec, 0).finalize()[
        "guided_gradcam_pp"
    ][0]
    cell_gene = cnn.cell_gene.numpy()
    for i in range(3):
        xi = x[i : i + 1]
        h = cnn.to_grid(cnn.standardize(xi))
        h = cnn.act1(cnn.bn1(cnn.pool1(cnn.conv1(h))))
        h = cnn.act2(cnn.bn2(cnn.pool2(cnn.conv2(h))))
        a3 = cnn.act3(cnn.bn3(cnn.pool3(cnn.conv3(h))))
        logits = cnn.fc(cnn.act_head(cnn.bn_head(cnn.gap(a3))))
        (g3,) = torch.autograd.grad(logits[0, int(t[i])], a3)
        a = a3[0].detach().double().numpy()
        assert a.shape[1:] == (3, 3) and (a >= 0).all()
        w = gradcampp_reference(a, g3[0].double().numpy())
        cam = np.maximum((w[:, None, None] * a).sum(0), 0.0)
        up = torch.nn.functional.interpolate(
            torch.from_numpy(cam)[None, None], size=(24, 24), mode="bilinear"
        )[0, 0].numpy()
        genes = np.zeros(300)
        used = cell_gene >= 0
        genes[cell_gene[used]] = up.reshape(-1)[used]
        gbp = GuidedBackprop(cnn).attribute(xi, target=int(t[i]))[0].detach().double().numpy()
        expected = genes * gbp
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(got[i], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_guided_gradcam_pp_runs_on_cnn_and_rejects_mlp() -> None:
    cnn = small_cnn()
    x = np.random.default_rng(0).random((2, 64)).astype(np.float32)
    spec = sample_scope_params(explainers=("guided_gradcam_pp",), mode="mc_dropout")
    mean = explain_block(
        [cnn], [0], x, np.array([0, 1]), np.arange(2), range(0, 2), None, spec, 0
    ).finalize()["guided_gradcam_pp"][0]
    assert mean.shape == (2, 64) and np.isfinite(mean).all() and np.abs(mean).max() > 0
    with pytest.raises(InputError, match="CNN"):
        explain_block(
            [mlp(cohort()[0])], [0], cohort()[0], np.zeros(8, int), np.arange(8), range(0, 1), None, spec, 0
        )


@pytest.mark.parametrize("fast_path", [True, False])
def test_mc_dropout_independent_of_blocks_and_order(fast_path: bool) -> None:
    x, labels = cohort(6)
    model = mlp(x, 3)
    stats = compute_reference_stats(x, labels)
    spec = sample_scope_params(
        explainers=("integrated_gradients", "saliency"),
        references="universal",
        n_references=2,
        n_steps=8,
        fast_path=fast_path,
    )
    idx = np.arange(100, 106)
    whole = explain_block([model], [7], x, labels, idx, range(0, 3), stats, spec, 1).finalize()
    order = np.array([5, 2, 3])
    part = explain_block(
        [model], [7], x[order], labels[order], idx[order], range(0, 3), stats, spec, 1
    ).finalize()
    for name in whole:
        np.testing.assert_allclose(part[name][0], whole[name][0][order], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(part[name][1], whole[name][1][order], rtol=1e-5, atol=1e-8)
    # repeats split into parts and merged (as an actor merges a block's parts) equal one part
    a = explain_block([model], [7], x, labels, idx, range(0, 1), stats, spec, 1)
    b = explain_block([model], [7], x, labels, idx, range(1, 3), stats, spec, 1)
    merged = a.merge(b).finalize()
    np.testing.assert_allclose(merged["saliency"][0], whole["saliency"][0], rtol=1e-6)
    # dropout is really on: repeats differ
    assert (whole["saliency"][1] > 0).any()


def test_paper_mode_equals_captum_on_train_copy_and_leaves_model_untouched() -> None:
    """Paper mode = Captum on a train-mode copy (BatchNorm on the batch's statistics), same batch."""
    x, labels = cohort(6)
    torch.manual_seed(4)
    model = MLP(GENES, CLASSES, hidden=12, dropout=0.0, mean=x.mean(0), std=x.std(0) + 0.1)
    with torch.no_grad():
        model.bn.running_mean.normal_(0, 0.3)
        model.bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = sample_scope_params(
        explainers=("integrated_gradients", "saliency"),
        references="zero",
        n_references=1,
        mode="paper",
        n_steps=4,
    )
    got = explain_block([model], [0], x, labels, np.arange(6), range(0, 1), None, spec, 0).finalize()
    twin = copy.deepcopy(model).train()
    xt, tt = torch.from_numpy(x), torch.from_numpy(labels)
    ig = IntegratedGradients(twin).attribute(xt, baselines=torch.zeros_like(xt), target=tt, n_steps=4)
    sal = Saliency(twin).attribute(xt, target=tt)
    np.testing.assert_allclose(got["integrated_gradients"][0], ig.detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["saliency"][0], sal.numpy(), rtol=1e-4, atol=1e-6)
    # train-mode BatchNorm really differs from eval mode here
    eval_sal = Saliency(model).attribute(xt, target=tt).numpy()
    assert not np.allclose(eval_sal, sal.numpy(), rtol=1e-2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not model.training


def test_unknown_explainer_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown explainer .occlusion."):
        sample_scope_params(explainers=("occlusion",))
