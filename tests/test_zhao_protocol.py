"""``preset = "zhao"`` against Zhao et al.'s released code, and the pieces it switches on.

The expected values are the released code's (github.com/zhaopage/model_interpretability, commit of
the v2.0.0 scripts), cited by file and line; the split rule and the noise are re-typed from that
code as independent references.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.explain.compute import explain_block
from gexplain.pipelines.explain.modes import dropout_mask
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.pipelines.explain.references import draw_reference_sets
from gexplain.pipelines.models.architectures import CNN
from gexplain.pipelines.models.stage import TrainStageParams
from gexplain.pipelines.models.train import noise_transform, zhao_split
from torch import nn


def test_train_preset_is_the_released_code() -> None:
    mlp = TrainStageParams(preset="zhao")
    assert mlp.batch_size == 256  # mlp_v2.0.0.py l.707 (-b)
    assert mlp.dropout == 0.25  # l.710 (-d)
    assert mlp.hidden == 128  # l.711 (-n)
    assert mlp.upsample  # l.712 (-u yes)
    assert mlp.lr_factor == 0.25  # l.713 (-R)
    assert mlp.lr_patience == 5  # l.714 (-p), ReduceLROnPlateau l.893
    assert mlp.early_stopping == 16  # l.942: stop when best_count > 3 * patience
    assert mlp.learning_rate() == 0.0006  # l.716 (-r)
    assert mlp.weight_decay == 0.001  # l.717 (-l), Adam weight_decay l.883
    assert mlp.max_epochs == 100  # l.718 (-e)
    assert mlp.noise_share == pytest.approx(1 - 0.2)  # l.720 (-N 0.2) with l.195-197
    assert mlp.noise_sigma == 1.0  # l.721 (-s)
    assert not mlp.standardize  # prepareDatasets_v2.0.0.py l.498: log2(x + 1), no scaling
    assert mlp.gene_order == "random"  # prepareDatasets l.524 (shuffle=True)
    assert mlp.split == "zhao"  # prepareDatasets l.254-261
    cnn = TrainStageParams(preset="zhao", arch="cnn")
    assert cnn.learning_rate() == 0.001  # cnn_v2.0.0.py l.840
    assert cnn.lr_factor == 0.2  # cnn l.837
    assert cnn.max_epochs == 200  # cnn l.842
    assert cnn.channel_dropout  # cnn l.82: nn.Dropout2d(p=0.25)
    # an explicit value wins over the preset
    assert TrainStageParams(preset="zhao", max_epochs=3, standardize=True).max_epochs == 3


def test_explain_preset_is_the_released_code() -> None:
    p = ExplainParams(preset="zhao")
    assert (p.reference_kind, p.n_references) == ("universal", 64)  # mlp_v2.0.0.py l.725 (-S 64)
    assert (
        p.reference_scope == "repeat" and p.reference_pool == 128
    )  # l.727 + l.324-334; prepareDatasets l.541
    assert p.abs and p.reference_reduce == "median"  # mlp l.648-649
    assert (p.nt_samples, p.nt_stdev) == (50, 1.0)  # the paper's 50 pseudo-samples, N(0, 1)
    assert p.saliency_abs and p.n_steps == 50 and p.ig_method == "gausslegendre"  # Captum defaults
    assert p.mode == "mc_dropout"  # deliberate deviation: docs/methods.md
    assert ExplainParams(preset="zhao", repeats=3).repeats == 3


def test_shipped_configs_parse_and_zhao_uses_the_preset() -> None:
    from importlib.resources import files

    configs = files("gexplain.pipelines") / "configs"
    run = parse_config(str(configs / "zhao.toml"))
    train, explain = (s.params for s in run.stages if s.kind in ("train", "explain"))
    assert train.preset == "zhao" and train.split == "zhao" and not train.standardize
    assert explain.preset == "zhao" and explain.reference_reduce == "median"
    cohort = parse_config(str(configs / "cohort.toml"))
    (explain,) = (s.params for s in cohort.stages if s.kind == "explain")
    assert not explain.abs and explain.reference_reduce is None  # the fast signed-mean variant, said so


@pytest.mark.parametrize("n", [8, 10, 11, 50, 51, 100, 333])
def test_zhao_split_sizes_follow_the_code(n: int) -> None:
    """Per class the code's slicing (prepareDatasets l.254-261) on the shuffled list."""
    items = list(range(n))
    if len(items) > 50:
        train, test, valid = (
            items[: int(n * 0.90)],
            items[int(n * 0.90) : int(n * 0.95)],
            items[int(n * 0.95) :],
        )
    else:
        train, test, valid = items[:-10], items[-10:-5], items[-5:]
    y = np.repeat([0, 1], [n, 60])
    split = zhao_split(y, seed=3)
    assert (y[split.train] == 0).sum() == len(train)
    assert (y[split.test] == 0).sum() == len(test)
    assert (y[split.val] == 0).sum() == len(valid)
    parts = np.concatenate([split.train, split.test, split.val])
    assert np.array_equal(np.sort(parts), np.arange(y.size))  # a partition


def test_noise_transform_is_the_codes_law() -> None:
    """About 80 % of samples get N(0, 1) on every gene, then the batch is made absolute (l.193-199)."""
    rng = np.random.default_rng(0)
    batch = np.zeros((4000, 50), dtype=np.float32)
    batch[:, :25] = 3.0
    out = noise_transform(0.8, 1.0, rng)(batch)
    noised = (out != batch).any(axis=1)
    assert abs(noised.mean() - 0.8) < 4 * np.sqrt(0.8 * 0.2 / 4000)
    assert (out >= 0).all()
    # noised zeros are |N(0, 1)|: mean sqrt(2 / pi), variance 1 - 2 / pi
    folded = out[noised, 25:].ravel()
    se = np.sqrt((1 - 2 / np.pi) / folded.size)
    assert abs(folded.mean() - np.sqrt(2 / np.pi)) < 5 * se
    # noised 3s are |3 + N(0, 1)|: mean 3 (the fold at 0 is 3 sigma away)
    assert abs(out[noised, :25].mean() - 3.0) < 0.01
    np.testing.assert_array_equal(out[~noised], batch[~noised])


class ChannelMasked(nn.Module):
    """The CNN with its Dropout2d replaced by one fixed per-channel mask (what Captum differentiates)."""

    def __init__(self, cnn: CNN, mask: np.ndarray) -> None:
        super().__init__()
        self.cnn = copy.deepcopy(cnn)
        self.cnn.dropout = _Scale(torch.from_numpy(mask).to(torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(x)


class _Scale(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cnn_dropout2d_paper_aggregation_equals_captum_loop() -> None:
    """CNN with nn.Dropout2d: explicit per-channel masks, |IG| -> median over references -> mean."""
    torch.manual_seed(0)
    n_genes, n, repeats, n_refs, seed, model_id = 20, 2, 2, 3, 5, 1
    cnn = CNN(n_genes, 2, grid=8, channel_dropout=True).double().eval()
    assert isinstance(cnn.dropout, nn.Dropout2d)
    x = np.random.default_rng(1).random((n, n_genes)) * 3
    targets = np.array([0, 1])
    params = ExplainParams(
        explainers=["integrated_gradients"],
        references=f"normal:{n_refs}",
        repeats=repeats,
        abs=True,
        reference_reduce="median",
        n_steps=8,
    )
    partial = explain_block([cnn], [model_id], x, targets, np.arange(n), range(repeats), None, params, seed)
    refs = draw_reference_sets("normal", n_refs, None, seed, 2, n_genes).values[0]
    per_repeat = []
    for k in range(repeats):
        rows = []
        for i in range(n):
            mask = dropout_mask(seed, model_id, i, k, 0, (256, 1, 1), cnn.dropout_p)
            plain = ChannelMasked(cnn, mask).eval()
            values = [
                IntegratedGradients(plain)
                .attribute(
                    torch.from_numpy(x[i : i + 1]),
                    baselines=torch.from_numpy(r[None].astype(np.float64)),
                    target=int(targets[i]),
                    n_steps=8,
                )
                .detach()
                .numpy()[0]
                for r in refs
            ]
            rows.append(np.median(np.abs(values), axis=0))
        per_repeat.append(np.stack(rows))
    expected = np.mean(per_repeat, axis=0)
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(
        partial.moments["integrated_gradients"].mean, expected, rtol=0, atol=1e-9 * scale
    )
