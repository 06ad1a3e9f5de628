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
from gexplain.pipelines.evaluate.faithfulness import (
    area_over_k,
    openxai_k_grid,
    openxai_max_k,
    perturbation_gaps,
    with_areas,
)
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
    def predict(x: np.ndarray) -> np.ndarray:
        return 1.0 / N_C + x @ w.T

    return predict


def _closed_form(w: np.ndarray, cls: np.ndarray, masks: np.ndarray, scale: np.ndarray) -> float:
    """Mean over samples of E|w_c . eps| for the genes in each sample's mask (sample, gene)."""
    var = (w[cls] ** 2 * scale[None, :] ** 2 * masks).sum(axis=1) * SIGMA**2
    return float(np.mean(np.sqrt(2.0 / np.pi * var)))


def test_pgi_pgu_match_the_closed_form_with_the_predicted_class() -> None:
    w, x, scale = _model()
    attr = np.random.default_rng(1).normal(size=(N_S, N_G))
    p = _predict(w)(x)
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
        lambda v: 0.5 + v @ w.T, x, attr, [1, 4], scale=scale, n_perturbations=P, n_random=3, seed=0
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
    b = perturbation_gaps(_predict(w), x[:10], attr[:10], [2], scale=scale, n_random=0, block=3)
    assert a.loc[0, "pgi"] == pytest.approx(b.loc[0, "pgi"], rel=1e-12)
    with pytest.raises(InputError, match="scale"):
        perturbation_gaps(_predict(w), x, attr, [1], scale=np.ones(3))
    with pytest.raises(InputError, match="k=13"):
        perturbation_gaps(_predict(w), x, attr, [13], scale=scale)
