"""Faithfulness of attributions: prediction gap on important / unimportant genes (PGI / PGU).

Following OpenXAI (Agarwal et al. 2022): for each sample, the k genes with the largest absolute
attribution (PGI) or the k with the smallest (PGU) are replaced by a reference value, and the
absolute change in the model's predicted probability of the sample's target class is averaged
over samples. A faithful explanation has a large PGI and a small PGU; replacing k random genes
gives the floor a PGI must beat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from pipelines.evaluate.reproducibility import top_k_indices
from storage.errors import InputError

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
        One row per k: ``k``, ``pgi``, ``pgu``, ``random`` (mean over draws) and ``random_sd``
        (standard deviation of the per-draw means); all probabilities in [0, 1].
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
        rand = []
        for d in range(n_random):
            rng = np.random.default_rng([seed, k, d])
            genes = np.argsort(rng.random((n_s, n_g)), axis=1)[:, :k]
            rand.append(_gap(predict, x, genes, reference, targets, p0).mean())
        rows.append(
            {
                "k": int(k),
                "pgi": float(_gap(predict, x, top, reference, targets, p0).mean()),
                "pgu": float(_gap(predict, x, bottom, reference, targets, p0).mean()),
                "random": float(np.mean(rand)) if rand else np.nan,
                "random_sd": float(np.std(rand)) if rand else np.nan,
            }
        )
    return pd.DataFrame(rows)


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
