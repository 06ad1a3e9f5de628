"""Faithfulness of attributions: prediction gap on important / unimportant genes (PGI / PGU).

Two variants, named in ``EvaluateParams.faithfulness``:

``openxai`` (default; OpenXAI, Agarwal et al. 2022, ``openxai/metrics.py`` ``eval_pred_faithfulness``)
    For each sample, the top-k genes by absolute attribution (PGI) or all the *other* genes (PGU)
    are perturbed with Gaussian noise of standard deviation ``sigma`` = 0.1 in standardised units
    (0.1 x the gene's standard deviation over the evaluated samples), ``n_perturbations`` = 100
    times; the score is the mean over perturbations and samples of ``|p_c(x') - p_c(x)|``. The
    area over k (OpenXAI's ``AUC=True``) is the trapezoid area of the curve over k = 1 .. max_k
    rescaled to [0, 1], max_k = 25 % of the genes. Differences from OpenXAI: ``c`` is the sample's
    *predicted* class (OpenXAI reads output column 0, right only for binary models); the noise
    of sample ``i`` comes from a generator keyed by ``(seed, i)`` (OpenXAI: ``torch.manual_seed(i)``),
    the same draws for every k (common random numbers); the area is computed on the k grid given
    (every k from 1 to max_k is OpenXAI's exact area, a coarser grid a trapezoid approximation).
``replace`` (gexplain's earlier definition)
    The top-k (PGI) or bottom-k (PGU) genes are replaced by a reference value (cohort mean or 0),
    and ``|p_t(x') - p_t(x)|`` of the sample's target class ``t`` is averaged over samples.

Floors, for both: the same operation on ``k`` random genes (``random``: the PGI floor) and on all
but ``k`` random genes (``random_pgu``: the PGU floor), averaged over ``n_random`` draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from gexplain.pipelines.evaluate.reproducibility import top_k_indices
from gexplain.storage.errors import InputError
from torch import nn

PredictProba = Callable[[np.ndarray], np.ndarray]


def ensemble_predict_proba(models: Sequence[nn.Module], batch_size: int = 512) -> PredictProba:
    """Return a function mapping inputs (sample, gene) to the models' mean softmax (sample, class).

    Models run in eval mode (no dropout, BatchNorm on running statistics) without gradients.

    Parameters
    ----------
    models
        Trained classifiers taking float32 (batch, gene) in the stored layer's units.
    batch_size
        Samples per forward pass.
    """
    mods = list(models)
    for m in mods:
        m.eval()

    def predict(x: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                xb = torch.as_tensor(np.asarray(x[start : start + batch_size], dtype=np.float32))
                probs = torch.stack([torch.softmax(m(xb), dim=1) for m in mods]).mean(dim=0)
                out.append(probs.numpy().astype(np.float64))
        return np.concatenate(out, axis=0)

    return predict


def _random_sets(seed: int, k: int, d: int, n_s: int, n_g: int) -> np.ndarray:
    """k random genes per sample, (sample, k), drawn with ``(seed, k, d)``."""
    rng = np.random.default_rng([seed, k, d])
    return np.argsort(rng.random((n_s, n_g)), axis=1)[:, :k]


def _complement(genes: np.ndarray, n_g: int) -> np.ndarray:
    """Boolean (sample, gene) mask of the genes *not* in each row of ``genes``."""
    mask = np.ones((genes.shape[0], n_g), dtype=bool)
    mask[np.arange(genes.shape[0])[:, None], genes] = False
    return mask


def _gap(
    predict: PredictProba,
    x: np.ndarray,
    genes: np.ndarray,
    reference: np.ndarray,
    targets: np.ndarray,
    p0: np.ndarray,
) -> np.ndarray:
    """|p_target(x) - p_target(x with ``genes`` replaced by ``reference``)| per sample."""
    xm = x.copy()
    rows = np.arange(x.shape[0])[:, None]
    xm[rows, genes] = reference[genes]
    p = predict(xm)[np.arange(x.shape[0]), targets]
    return np.abs(p0 - p)


def prediction_gaps(
    predict: PredictProba,
    x: np.ndarray,
    attr: np.ndarray,
    targets: np.ndarray,
    ks: Sequence[int],
    reference: np.ndarray,
    *,
    n_random: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """PGI, PGU and the random-gene floor over a grid of k.

    Parameters
    ----------
    predict
        Maps (sample, gene) inputs to class probabilities (sample, class).
    x
        Inputs, shape (sample, gene), in the model's input units.
    attr
        Attributions for the target class, shape (sample, gene).
    targets
        Target class index of each sample, shape (sample,).
    ks
        Numbers of genes replaced, each in [1, genes].
    reference
        Replacement value of each gene, shape (gene,) (e.g. the cohort mean, or zeros).
    n_random
        Random gene sets per k (drawn with ``seed``, ``k`` and the draw index).
    seed
        Seed of the random sets.

    Returns
    -------
    pandas.DataFrame
        One row per k: ``k``, ``pgi``, ``pgu``, ``random`` (mean over draws), ``random_sd``
        (standard deviation of the per-draw means), ``random_pgu`` (all but k random genes
        replaced) and ``variant`` = ``"replace"``; all probabilities in [0, 1].
    """
    x = np.asarray(x, dtype=np.float64)
    attr = np.asarray(attr, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.float64)
    if x.shape != attr.shape or x.ndim != 2:
        raise InputError(
            f"inputs {x.shape} and attributions {attr.shape} must be the same (sample, gene) shape"
        )
    if reference.shape != (x.shape[1],):
        raise InputError(
            f"reference must have one value per gene ({x.shape[1]}), got shape {reference.shape}"
        )
    n_s, n_g = x.shape
    p0 = predict(x)[np.arange(n_s), targets]
    rows = []
    for k in ks:
        if not 1 <= k <= n_g:
            raise InputError(f"faithfulness k={k} must be between 1 and the number of genes ({n_g})")
        top = top_k_indices(attr, k, absolute=True, largest=True)
        bottom = top_k_indices(attr, k, absolute=True, largest=False)
        rand, rand_u = [], []
        for d in range(n_random):
            genes = _random_sets(seed, k, d, n_s, n_g)
            rand.append(_gap(predict, x, genes, reference, targets, p0).mean())
            xm = np.where(_complement(genes, n_g), reference[None, :], x)
            rand_u.append(np.abs(p0 - predict(xm)[np.arange(n_s), targets]).mean())
        rows.append(
            {
                "k": int(k),
                "pgi": float(_gap(predict, x, top, reference, targets, p0).mean()),
                "pgu": float(_gap(predict, x, bottom, reference, targets, p0).mean()),
                "random": float(np.mean(rand)) if rand else np.nan,
                "random_sd": float(np.std(rand)) if rand else np.nan,
                "random_pgu": float(np.mean(rand_u)) if rand_u else np.nan,
            }
        )
    return pd.DataFrame(rows).assign(variant="replace")


def openxai_max_k(n_genes: int, fraction: float = 0.25) -> int:
    """OpenXAI's largest k for an area over k: ``fraction`` of the genes, at least 1."""
    return max(1, int(fraction * n_genes))


def area_over_k(ks: Sequence[int], values: Sequence[float], max_k: int) -> float:
    """Trapezoid area of ``values`` over k rescaled to [0, 1] as OpenXAI: ``(k - 1) / (max_k - 1)``.

    Parameters
    ----------
    ks
        Increasing k, from 1 to ``max_k`` (all of them: OpenXAI's exact area).
    values
        The curve at each k.
    max_k
        The last k (OpenXAI: 25 % of the genes); a single-k curve (max_k = 1) returns its value.
    """
    k = np.asarray(ks, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if max_k <= 1 or k.size == 1:
        return float(v[0])
    t = (k - 1.0) / (max_k - 1.0)
    return float(np.sum((t[1:] - t[:-1]) * (v[1:] + v[:-1]) / 2.0))


def perturbation_gaps(
    predict: PredictProba,
    x: np.ndarray,
    attr: np.ndarray,
    ks: Sequence[int],
    *,
    scale: np.ndarray,
    sigma: float = 0.1,
    n_perturbations: int = 100,
    n_random: int = 5,
    seed: int = 0,
    sample_ids: np.ndarray | None = None,
    block: int = 8,
) -> pd.DataFrame:
    """OpenXAI's PGI and PGU (Gaussian perturbation) and the random-gene floors over a grid of k.

    Parameters
    ----------
    predict
        Maps (sample, gene) inputs to class probabilities (sample, class).
    x
        Inputs, shape (sample, gene), in the model's input units.
    attr
        Attributions of each sample, shape (sample, gene); genes are ranked by ``|attr|``.
    ks
        Numbers of top genes, each in [1, genes].
    scale
        Standard deviation of each gene, shape (gene,), in input units: the noise on gene ``g`` is
        ``N(0, (sigma scale_g)^2)`` (``sigma`` in standardised units).
    sigma
        Noise standard deviation in standardised units (OpenXAI: 0.1).
    n_perturbations
        Perturbations per sample (OpenXAI: 100).
    n_random
        Random gene sets per k for the floors.
    seed
        Seed of the noise (keyed by ``(seed, sample id)``) and of the random sets.
    sample_ids
        Integer id of each sample for its noise key (default its row); the same sample gets the
        same noise whatever subset it is evaluated in.
    block
        Samples per forward batch (``block * n_perturbations`` rows).

    Returns
    -------
    pandas.DataFrame
        One row per k: ``k``, ``pgi``, ``pgu``, ``random`` (k random genes perturbed),
        ``random_sd``, ``random_pgu`` (all but k random genes perturbed) and ``variant`` =
        ``"openxai"``; mean |change in the predicted class's probability|, in [0, 1].
    """
    x = np.asarray(x, dtype=np.float64)
    attr = np.asarray(attr, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if x.shape != attr.shape or x.ndim != 2:
        raise InputError(
            f"inputs {x.shape} and attributions {attr.shape} must be the same (sample, gene) shape"
        )
    n_s, n_g = x.shape
    if scale.shape != (n_g,):
        raise InputError(f"scale must have one value per gene ({n_g}), got shape {scale.shape}")
    if not sigma > 0 or n_perturbations < 1:
        raise InputError(f"sigma (= {sigma}) must be > 0 and n_perturbations (= {n_perturbations}) >= 1")
    for k in ks:
        if not 1 <= k <= n_g:
            raise InputError(f"faithfulness k={k} must be between 1 and the number of genes ({n_g})")
    ids = np.arange(n_s) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
    probs = predict(x)
    cls = probs.argmax(axis=1)
    p0 = probs[np.arange(n_s), cls]
    order = np.argsort(-np.abs(attr), axis=1, kind="stable")
    sums = {(k, c): 0.0 for k in ks for c in ("pgi", "pgu")}
    rand = {(k, d, c): 0.0 for k in ks for d in range(n_random) for c in ("random", "random_pgu")}
    for start in range(0, n_s, block):
        rows = np.arange(start, min(start + block, n_s))
        noise = np.stack(
            [np.random.default_rng([seed, int(ids[i])]).normal(size=(n_perturbations, n_g)) for i in rows]
        ) * (sigma * scale)  # (b, P, G)

        def gap(mask: np.ndarray, rows: np.ndarray = rows, noise: np.ndarray = noise) -> float:
            """Sum over the block's samples of the mean |delta p| when genes in mask (b, G) move."""
            xp = x[rows][:, None, :] + noise * mask[:, None, :]
            p = predict(xp.reshape(-1, n_g))[:, :].reshape(rows.size, n_perturbations, -1)
            pc = np.take_along_axis(p, cls[rows][:, None, None], axis=2)[..., 0]
            return float(np.abs(pc - p0[rows][:, None]).mean(axis=1).sum())

        for k in ks:
            top = np.zeros((rows.size, n_g), dtype=bool)
            top[np.arange(rows.size)[:, None], order[rows, :k]] = True
            sums[(k, "pgi")] += gap(top)
            sums[(k, "pgu")] += gap(~top)
            for d in range(n_random):
                genes = _random_sets(seed, k, d, n_s, n_g)[rows]
                chosen = ~_complement(genes, n_g)
                rand[(k, d, "random")] += gap(chosen)
                rand[(k, d, "random_pgu")] += gap(~chosen)
    out = []
    for k in ks:
        draws = np.array([rand[(k, d, "random")] / n_s for d in range(n_random)])
        draws_u = np.array([rand[(k, d, "random_pgu")] / n_s for d in range(n_random)])
        out.append(
            {
                "k": int(k),
                "pgi": sums[(k, "pgi")] / n_s,
                "pgu": sums[(k, "pgu")] / n_s,
                "random": float(draws.mean()) if n_random else np.nan,
                "random_sd": float(draws.std()) if n_random else np.nan,
                "random_pgu": float(draws_u.mean()) if n_random else np.nan,
            }
        )
    return pd.DataFrame(out).assign(variant="openxai")


def with_areas(
    table: pd.DataFrame, columns: Sequence[str] = ("pgi", "pgu", "random", "random_pgu")
) -> pd.DataFrame:
    """Add ``<column>_area``: the area over k of each curve (:func:`area_over_k`, max_k = the
    table's last k), when its k grid starts at 1; NaN otherwise.

    Parameters
    ----------
    table
        One row per k (from :func:`perturbation_gaps` or :func:`prediction_gaps`).
    columns
        Curves to integrate.
    """
    t = table.sort_values("k").reset_index(drop=True)
    ks = t["k"].to_numpy()
    out = t.copy()
    for c in columns:
        ok = ks.size > 0 and ks[0] == 1 and c in t
        out[f"{c}_area"] = area_over_k(ks, t[c].to_numpy(), int(ks[-1])) if ok else np.nan
    return out


def openxai_k_grid(n_genes: int, fraction: float = 0.25, max_points: int = 10) -> list[int]:
    """k from 1 to 25 % of the genes: every k when there are at most ``max_points``, else an evenly
    spaced grid of ``max_points`` (the area over it approximates OpenXAI's every-k area).

    Parameters
    ----------
    n_genes
        Number of genes.
    fraction
        Largest k as a fraction of the genes.
    max_points
        Most k evaluated.
    """
    top = openxai_max_k(n_genes, fraction)
    if top <= max_points:
        return list(range(1, top + 1))
    return sorted({int(round(v)) for v in np.linspace(1, top, max_points)})


def default_k_grid(n_genes: int) -> list[int]:
    """k = 1, 2, 5, 10, 20, 50, ... up to half the genes.

    Parameters
    ----------
    n_genes
        Number of genes.
    """
    grid, base = [], 1
    while True:
        for m in (1, 2, 5):
            k = m * base
            if k > max(1, n_genes // 2):
                return grid
            grid.append(k)
        base *= 10
