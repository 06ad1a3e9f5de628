"""Architectures against closed forms: the MLP in numpy, the CNN's grid layout and shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gexplain.pipelines.models.architectures import CNN, MLP, Standardize, build_model, gene_order, grid_size
from gexplain.storage.errors import InputError
from torch import nn


def test_standardize_closed_form_and_identity():
    mean, std = np.array([1.0, 2.0, 3.0]), np.array([0.5, 2.0, 1.0])
    x = torch.tensor([[2.0, 2.0, 0.0]])
    torch.testing.assert_close(Standardize(mean, std)(x), torch.tensor([[2.0, 0.0, -3.0]]))
    assert Standardize()(x) is x and not Standardize().active
    assert "mean" not in Standardize().state_dict()


def test_mlp_eval_forward_equals_numpy():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=7), rng.uniform(0.5, 2, size=7)
    model = MLP(7, 3, hidden=5, dropout=0.4, mean=mean, std=std)
    model.bn.running_mean.copy_(torch.randn(5))
    model.bn.running_var.copy_(torch.rand(5) + 0.5)
    model.eval()
    x = rng.normal(size=(4, 7)).astype(np.float32)
    p = {k: v.double().numpy() for k, v in model.state_dict().items()}
    h = ((x - mean) / std) @ p["fc1.weight"].T + p["fc1.bias"]
    h = (h - p["bn.running_mean"]) / np.sqrt(p["bn.running_var"] + model.bn.eps) * p["bn.weight"] + p[
        "bn.bias"
    ]
    expected = np.maximum(h, 0) @ p["fc2.weight"].T + p["fc2.bias"]
    np.testing.assert_allclose(model(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert isinstance(model.fc1, nn.Linear) and model.fc1.in_features == 7


def test_cnn_paper_shape_and_layers():
    assert grid_size(19_241) == 144  # Zhao et al.: 139 = ceil(sqrt(19,241)), padded to 144
    assert grid_size(64) == 8 and grid_size(65) == 16
    model = CNN(19_241, 82)
    assert (
        model.grid == 144 and isinstance(model.last_conv, nn.Conv2d) and model.last_conv.out_channels == 256
    )
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.out_channels) for c in convs] == [((5, 5), 64), ((5, 5), 128), ((3, 3), 256)]
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 19_241)).shape == (2, 82)


def test_cnn_grid_layout_matches_numpy_reference():
    order = gene_order(10, "random", seed=3)
    model = CNN(10, 2, gene_order=order)
    x = torch.arange(1, 21, dtype=torch.float32).reshape(2, 10)
    grid = model.to_grid(x).numpy()
    assert model.grid == 8  # ceil(sqrt(10)) = 4, rounded up to a multiple of 8
    ref = np.zeros((2, 64))
    ref[:, :10] = x.numpy()[:, order]  # cell c holds gene order[c], the rest zero padding
    np.testing.assert_array_equal(grid.reshape(2, 64), ref)
    np.testing.assert_array_equal(model.grid_to_genes(torch.from_numpy(grid[:, 0])).numpy(), x.numpy())


def test_gene_order_by_position_and_errors():
    chrom = np.array(["2", "1", "1", "X"])
    start = np.array([5.0, 300.0, 10.0, 1.0])
    np.testing.assert_array_equal(gene_order(4, "position", chromosome=chrom, start=start), [2, 1, 0, 3])
    with pytest.raises(InputError, match="position"):
        gene_order(4, "position")
    with pytest.raises(InputError, match="unknown architecture 'rnn'"):
        build_model("rnn", 4, 2)
    with pytest.raises(InputError, match="--grid"):
        CNN(30, 2, grid=5)


def test_deterministic_cross_entropy_equals_torch():
    from gexplain.pipelines.models.train import cross_entropy

    torch.manual_seed(1)
    logits = torch.randn(9, 5, requires_grad=True)
    target = torch.randint(0, 5, (9,))
    ref_logits = logits.detach().clone().requires_grad_(True)
    ours, ref = cross_entropy(logits, target), nn.functional.cross_entropy(ref_logits, target)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad)
