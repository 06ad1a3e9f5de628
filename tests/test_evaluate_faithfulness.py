"""OpenXAI's PGI / PGU (Gaussian perturbation) against closed forms on a linear-probability model.

For class probabilities ``p(x) = 1/C + W x`` (rows of ``W`` summing to zero), perturbing the genes
of a set ``S`` by ``eps_g ~ N(0, (sigma s_g)^2)`` changes the predicted class ``c``'s probability by
``w_c[S] . eps[S] ~ N(0, sigma^2 sum_{g in S} w_cg^2 s_g^2)``, whose mean absolute value is
``sqrt(2 / pi) sigma sqrt(sum_{g in S} w_cg^2 s_g^2)``. The area over k is checked against
scipy's trapezoid on OpenXAI's rescaled k axis.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gexplain.pipelines.evaluate.faithfulness import (
    COLUMNS,
    Ensemble,
    area_over_k,
    openxai_k_grid,
    openxai_max_k,
    perturbation_gaps,
    perturbation_sample_gaps,
    prediction_gaps,
    replacement_sample_gaps,
    with_areas,
)
from gexplain.pipelines.models.architectures import MLP
from gexplain.storage.errors import InputError
from scipy.integrate import trapezoid

N_S, N_G, N_C = 40, 12, 3
SIGMA, P = 0.1, 100


def _model(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = np.zeros((N_C, N_G))
    w[0] = rng.normal(0, 0.002, N_G)  # class 0 barely moves: column 0 is a poor stand-in
    w[1] = rng.normal(0, 0.02, N_G)
    w[2] = -(w[0] + w[1])  # probabilities sum to one
    x = rng.normal(0, 1, (N_S, N_G))
    scale = rng.uniform(0.5, 2.0, N_G)
    return w, x, scale


def _predict(w: np.ndarray):
    wt = torch.as_tensor(w.T)

    def predict(x: torch.Tensor) -> torch.Tensor:
        return 1.0 / N_C + x.double() @ wt

    return predict


def _closed_form(w: np.ndarray, cls: np.ndarray, masks: np.ndarray, scale: np.ndarray) -> float:
    """Mean over samples of E|w_c . eps| for the genes in each sample's mask (sample, gene)."""
    var = (w[cls] ** 2 * scale[None, :] ** 2 * masks).sum(axis=1) * SIGMA**2
    return float(np.mean(np.sqrt(2.0 / np.pi * var)))


def test_pgi_pgu_match_the_closed_form_with_the_predicted_class() -> None:
    w, x, scale = _model()
    attr = np.random.default_rng(1).normal(size=(N_S, N_G))
    p = _predict(w)(torch.as_tensor(x)).numpy()
    assert (p > 0).all() and (p < 1).all()
    cls = p.argmax(axis=1)
    assert len(np.unique(cls)) == N_C  # the predicted class varies: column 0 would be wrong
    ks = [1, 2, 3, 6]
    table = perturbation_gaps(
        _predict(w), x, attr, ks, scale=scale, sigma=SIGMA, n_perturbations=P, n_random=0, seed=3
    ).set_index("k")
    order = np.argsort(-np.abs(attr), axis=1)
    for k in ks:
        top = np.zeros((N_S, N_G), dtype=bool)
        top[np.arange(N_S)[:, None], order[:, :k]] = True
        # Monte Carlo over 40 x 100 draws: relative standard error about 1.2 %
        assert table.loc[k, "pgi"] == pytest.approx(_closed_form(w, cls, top, scale), rel=0.06)
        assert table.loc[k, "pgu"] == pytest.approx(_closed_form(w, cls, ~top, scale), rel=0.06)
    # OpenXAI's column 0 would give another number for these three-class samples
    everything = np.ones((N_S, N_G), dtype=bool)
    col0 = _closed_form(w, np.zeros(N_S, dtype=int), everything, scale)
    assert abs(col0 / _closed_form(w, cls, everything, scale) - 1) > 0.1


def test_random_floor_equals_pgi_when_every_gene_weighs_the_same() -> None:
    w = np.zeros((2, N_G))
    w[0], w[1] = 0.01, -0.01
    x = np.random.default_rng(2).normal(0, 1, (N_S, N_G))
    scale = np.ones(N_G)
    attr = np.random.default_rng(4).normal(size=(N_S, N_G))
    table = perturbation_gaps(
        lambda v: 0.5 + v.double() @ torch.as_tensor(w.T),
        x,
        attr,
        [1, 4],
        scale=scale,
        n_perturbations=P,
        n_random=3,
        seed=0,
    ).set_index("k")
    for k in (1, 4):
        expected = np.sqrt(2 / np.pi) * SIGMA * 0.01 * np.sqrt(k)
        for column in ("pgi", "random"):
            assert table.loc[k, column] == pytest.approx(expected, rel=0.06)
        expected_u = np.sqrt(2 / np.pi) * SIGMA * 0.01 * np.sqrt(N_G - k)
        for column in ("pgu", "random_pgu"):
            assert table.loc[k, column] == pytest.approx(expected_u, rel=0.06)


def test_area_over_k_is_openxais_trapezoid_on_the_rescaled_axis() -> None:
    ks = np.arange(1, 8)
    values = np.sqrt(ks) / 3
    expected = trapezoid(values, (ks - 1) / (ks[-1] - 1))
    assert area_over_k(ks, values, 7) == pytest.approx(expected)
    import pandas as pd

    table = with_areas(pd.DataFrame({"k": ks, "pgi": values, "pgu": values / 2}))
    assert table["pgi_area"].iloc[0] == pytest.approx(expected)
    assert table["pgu_area"].iloc[0] == pytest.approx(expected / 2)
    assert openxai_max_k(20) == 5 and openxai_k_grid(20) == [1, 2, 3, 4, 5]
    grid = openxai_k_grid(2000)
    assert grid[0] == 1 and grid[-1] == 500 and len(grid) == 10


def test_noise_is_keyed_by_sample_id_and_bad_input_is_named() -> None:
    w, x, scale = _model()
    attr = np.abs(w[0])[None, :].repeat(N_S, axis=0)
    a = perturbation_gaps(
        _predict(w), x[:10], attr[:10], [2], scale=scale, n_random=0, sample_ids=np.arange(10)
    )
    b = perturbation_gaps(
        _predict(w), x[:10], attr[:10], [2], scale=scale, n_random=0, max_values=3 * 100 * N_G
    )
    assert a.loc[0, "pgi"] == pytest.approx(b.loc[0, "pgi"], rel=1e-12)
    with pytest.raises(InputError, match="scale"):
        perturbation_gaps(_predict(w), x, attr, [1], scale=np.ones(3))
    with pytest.raises(InputError, match="k=13"):
        perturbation_gaps(_predict(w), x, attr, [13], scale=scale)


# --- OpenXAI's eval_pred_faithfulness, written out from its source as the oracle -----------------
# OpenXAI is not on PyPI (pip: "No matching distribution found for openxai"), so its definition is
# re-implemented here from AI4LIFE-GROUP/OpenXAI ``openxai/metrics.py``: ``eval_pred_faithfulness``
# loops over k and calls ``_single_idx_pred_faith(i, input, explanation, k, invert, ...)`` per
# sample, which builds the top-k mask of |explanation| (``utils.generate_mask``), inverts it for
# PGU, draws ``n_samples`` perturbations of the masked features (``NormalPerturbation``: Gaussian
# noise) and returns ``mean(|model(x_perturbed) - model(x)|[:, c])``. gexplain's documented
# differences are kept in the oracle: ``c`` is the predicted class (OpenXAI: column 0), the noise is
# ``default_rng([seed, i]).normal(...) * sigma * scale_g`` (OpenXAI: ``torch.manual_seed(i)``), and
# the floors use the random gene order ``argsort(default_rng([seed, i, 0x5EED, d]).random(G))``.


def _oracle(model, x, attr, ks, scale, sigma, n_pert, n_random, seed, ids):
    """Per-sample, per-k loop of OpenXAI's definition; returns {(column, k): mean over samples}."""
    out: dict[tuple[str, int], list[float]] = {}
    for i in range(x.shape[0]):
        xi = torch.as_tensor(x[i : i + 1], dtype=torch.float32)
        with torch.no_grad():
            y = model(xi).double()[0]
        c = int(y.argmax())
        noise = np.random.default_rng([seed, int(ids[i])]).normal(size=(n_pert, x.shape[1])) * sigma * scale
        orders = {"pgi": np.argsort(-np.abs(attr[i]), kind="stable")}
        for d in range(n_random):
            u = np.random.default_rng([seed, int(ids[i]), 0x5EED, d]).random(x.shape[1])
            orders[f"random{d}"] = np.argsort(u, kind="stable")
        for k in ks:
            for name, order in orders.items():
                mask = np.zeros(x.shape[1], dtype=bool)
                mask[order[:k]] = True
                for invert in (False, True):
                    m = ~mask if invert else mask
                    xp = torch.as_tensor(x[i][None, :] + noise * m[None, :], dtype=torch.float32)
                    with torch.no_grad():
                        yp = model(xp).double()
                    gap = float(torch.mean(torch.abs(yp - y[None, :])[:, c]))
                    col = (
                        ("pgu" if invert else "pgi")
                        if name == "pgi"
                        else ("random_pgu" if invert else "random")
                    )
                    out.setdefault((col, k), []).append(gap)
    return {key: float(np.mean(v)) for key, v in out.items()}


def _mlps(n_g: int, n_c: int, n: int, seed: int) -> list[MLP]:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    models = []
    for _ in range(n):
        m = MLP(n_g, n_c, hidden=16, mean=rng.normal(size=n_g), std=rng.uniform(0.5, 2, n_g))
        with torch.no_grad():
            m.fc1.weight.copy_(torch.randn(m.fc1.weight.shape, generator=gen) * 0.5)
            m.bn.running_mean.copy_(torch.randn(16, generator=gen) * 0.1)
            m.bn.running_var.uniform_(0.5, 2.0, generator=gen)
            m.bn.weight.uniform_(0.5, 1.5, generator=gen)
        models.append(m.eval())
    return models


@pytest.mark.parametrize("path", ["affine_front", "full_forward"])
def test_batched_gaps_equal_openxais_per_sample_loop(path: str) -> None:
    n_s, n_g, n_c, n_pert, n_random, seed = 6, 20, 3, 15, 2, 5
    rng = np.random.default_rng(8)
    models = _mlps(n_g, n_c, 2, 0)
    ens = Ensemble(models)
    assert ens.fronts is not None and len(ens.fronts) == 2
    predict = ens if path == "affine_front" else (lambda v: ens(v))  # a plain callable: full passes
    x = rng.normal(size=(n_s, n_g)) * 2
    attr = rng.normal(size=(n_s, n_g))
    scale = rng.uniform(0.5, 2.0, n_g)
    ids = np.array([3, 17, 4, 90, 5, 6])
    ks = [1, 2, 5, 7]
    table = perturbation_gaps(
        predict, x, attr, ks, scale=scale, sigma=0.3, n_perturbations=n_pert, n_random=n_random,
        seed=seed, sample_ids=ids, max_values=4 * n_pert * n_g,
    ).set_index("k")  # fmt: skip
    expected = _oracle(ens, x, attr, ks, scale, 0.3, n_pert, n_random, seed, ids)
    for k in ks:
        assert table.loc[k, "pgi"] == pytest.approx(expected[("pgi", k)], rel=2e-5, abs=1e-9)
        assert table.loc[k, "pgu"] == pytest.approx(expected[("pgu", k)], rel=2e-5, abs=1e-9)
        assert table.loc[k, "random"] == pytest.approx(expected[("random", k)], rel=2e-5, abs=1e-9)
        assert table.loc[k, "random_pgu"] == pytest.approx(expected[("random_pgu", k)], rel=2e-5, abs=1e-9)
    assert (table["pgi"] > 0).all()


def test_gaps_of_a_sample_do_not_depend_on_its_block_or_companions() -> None:
    n_g = 15
    models = _mlps(n_g, 2, 1, 1)
    rng = np.random.default_rng(2)
    x, attr, scale = rng.normal(size=(8, n_g)), rng.normal(size=(8, n_g)), np.ones(n_g)
    ids = np.arange(100, 108)
    kw = dict(scale=scale, n_perturbations=10, n_random=2, seed=1)
    whole = perturbation_sample_gaps(Ensemble(models), x, attr, [1, 4], sample_ids=ids, **kw)
    parts = [
        perturbation_sample_gaps(Ensemble(models), x[s], attr[s], [1, 4], sample_ids=ids[s], **kw)
        for s in (slice(0, 3), slice(3, 8))
    ]
    # float32 forward passes of other batch shapes round differently: equal to ~1e-7 of a probability
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=2e-7)
    targets = np.array([0, 1] * 4)
    ref = x.mean(axis=0)
    rep = replacement_sample_gaps(Ensemble(models), x, attr, targets, [1, 4], ref, sample_ids=ids, n_random=2)
    rep2 = replacement_sample_gaps(
        Ensemble(models), x[::-1], attr[::-1], targets[::-1], [1, 4], ref, sample_ids=ids[::-1], n_random=2
    )
    np.testing.assert_allclose(rep2[::-1], rep, rtol=0, atol=2e-7)


def test_replace_variant_equal_on_affine_front_and_full_forward_and_by_hand() -> None:
    n_g = 12
    models = _mlps(n_g, 3, 2, 3)
    rng = np.random.default_rng(5)
    x, attr = rng.normal(size=(5, n_g)), rng.normal(size=(5, n_g))
    targets, ref = np.array([0, 1, 2, 1, 0]), rng.normal(size=n_g)
    ens = Ensemble(models)
    fast = prediction_gaps(ens, x, attr, targets, [1, 3, 6], ref, n_random=2, seed=0)
    slow = prediction_gaps(lambda v: ens(v), x, attr, targets, [1, 3, 6], ref, n_random=2, seed=0)
    np.testing.assert_allclose(fast[list(COLUMNS)], slow[list(COLUMNS)], rtol=2e-5, atol=1e-9)
    for _, row in fast.iterrows():
        k = int(row["k"])
        gaps = []
        for i in range(5):
            xm = x[i].copy()
            bottom = np.argsort(np.abs(attr[i]), kind="stable")[:k]
            xm[bottom] = ref[bottom]
            with torch.no_grad():
                p = ens(torch.as_tensor(np.stack([x[i], xm]), dtype=torch.float32)).double()
            gaps.append(abs(float(p[0, targets[i]] - p[1, targets[i]])))
        assert row["pgu"] == pytest.approx(np.mean(gaps), rel=2e-5, abs=1e-9)
