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
but ``k`` random genes (``random_pgu``: the PGU floor), averaged over ``n_random`` draws. Draw ``d``
of a sample is one random order of the genes keyed by ``(seed, sample id, d)``; its first ``k``
genes are the random set of size ``k`` (nested over k, like the top-k sets).

How it is computed: every quantity is a per-sample mean gap, so a block of samples is evaluated on
its own (:func:`perturbation_sample_gaps`, :func:`replacement_sample_gaps`) and the table is the
mean over samples (:func:`gap_table`): the same numbers whatever the blocks. Within a block, every
(sample, k, PGI | PGU | floor draw) pair is one "mask"; the inputs of many masks (x perturbed under
a mask, ``n_perturbations`` rows each) are stacked into large forward passes of at most
``max_values`` input values each, on the models' device (CPU or CUDA). Memory is bounded by
``max_values`` and the block, not by the cohort.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from gexplain.storage.errors import InputError
from torch import nn

Predict = Callable[[torch.Tensor], torch.Tensor]
"""Maps float32 inputs (row, gene) on the models' device to class probabilities (row, class)."""

MAX_VALUES = 1 << 23
"""Input values (row x gene) per forward pass: 32 MiB of float32 (plus the models' activations)."""

_RANDOM_TAG = 0x5EED  # keeps the random-order streams apart from the noise streams (seed, sample id)

COLUMNS = ("pgi", "pgu", "random", "random_pgu")


@dataclass
class AffineFront:
    """A classifier written as ``head(x A^T + c)``: an affine first layer, then the rest.

    Attributes
    ----------
    weight
        ``A``, shape (hidden, gene): the first layer with the input standardisation folded in.
    bias
        ``c``, shape (hidden,).
    head
        Maps first-layer outputs (row, hidden) to logits (row, class) in eval mode.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    head: Callable[[torch.Tensor], torch.Tensor]


def affine_front(model: nn.Module) -> AffineFront | None:
    """The :class:`AffineFront` of a :class:`gexplain.pipelines.models.architectures.MLP`, else None.

    In eval mode the MLP's standardisation, first layer and BatchNorm are one affine map:
    ``bn(fc1((x - mean) / sd)) = A x + c``; the head is ``fc2(relu(.))`` (dropout is the identity
    in eval mode).
    """
    from gexplain.pipelines.models.architectures import MLP

    if not isinstance(model, MLP) or model.training:
        return None
    with torch.no_grad():
        w = model.fc1.weight.detach().clone()
        b = model.fc1.bias.detach().clone()
        std = model.standardize
        if std.mean is not None and std.std is not None:
            w = w / std.std[None, :]
            b = b - w @ std.mean
        bn = model.bn
        if isinstance(bn, nn.BatchNorm1d):
            assert bn.running_mean is not None and bn.running_var is not None
            gain = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                gain = gain * bn.weight
            shift = -bn.running_mean * gain + (bn.bias if bn.bias is not None else 0.0)
            w, b = w * gain[:, None], b * gain + shift
        elif not isinstance(bn, nn.Identity):
            return None

    def head(z: torch.Tensor, m: MLP = model) -> torch.Tensor:
        return m.fc2(m.act(z))

    return AffineFront(weight=w, bias=b, head=head)


class Ensemble:
    """The models' mean softmax (row, gene) -> (row, class), on one device, eval mode, no gradients.

    Parameters
    ----------
    models
        Trained classifiers taking float32 (batch, gene) in the stored layer's units.
    device
        Torch device the models and inputs live on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Attributes
    ----------
    fronts
        The models' :class:`AffineFront` when every model has one (then perturbations of k genes
        cost k columns of the first layer instead of a full forward pass), else None.
    device
        The torch device.
    """

    def __init__(self, models: Sequence[nn.Module], device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.models = [m.to(self.device).eval() for m in models]
        fronts = [affine_front(m) for m in self.models]
        self.fronts = [f for f in fronts if f is not None] if all(fronts) else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Mean class probabilities (row, class) of float32 inputs (row, gene)."""
        with torch.no_grad():
            probs = torch.softmax(self.models[0](x), dim=1)
            for m in self.models[1:]:
                probs = probs + torch.softmax(m(x), dim=1)
            return probs / len(self.models)


def ensemble_predict_proba(models: Sequence[nn.Module], device: str | torch.device = "cpu") -> Ensemble:
    """The :class:`Ensemble` of ``models`` on ``device`` (a :data:`Predict`)."""
    return Ensemble(models, device)


def _orders(scores: np.ndarray, *, largest: bool) -> np.ndarray:
    """Genes of each row ordered by |score| (descending for ``largest``), ties by gene index, NaN last.

    The first k are the genes :func:`gexplain.pipelines.evaluate.reproducibility.top_k_indices` picks
    (top-k for ``largest``, bottom-k otherwise).
    """
    a = np.abs(np.asarray(scores, dtype=np.float64))
    key = np.where(np.isnan(a), np.inf, -a if largest else a)
    return np.argsort(key, axis=1, kind="stable")


def random_orders(seed: int, sample_ids: np.ndarray, n_random: int, n_genes: int) -> np.ndarray:
    """Random gene orders, (sample, draw, gene); draw ``d`` of sample ``i`` is keyed by
    ``(seed, i, d)``, so a sample gets the same floors whatever block or subset it is in.

    Parameters
    ----------
    seed
        Seed of the evaluation.
    sample_ids
        Integer id of each sample (its position in the store), shape (sample,).
    n_random
        Draws per sample.
    n_genes
        Number of genes.
    """
    out = np.empty((len(sample_ids), n_random, n_genes), dtype=np.int64)
    for i, sid in enumerate(np.asarray(sample_ids, dtype=np.int64)):
        for d in range(n_random):
            u = np.random.default_rng([seed, int(sid), _RANDOM_TAG, d]).random(n_genes)
            out[i, d] = np.argsort(u, kind="stable")
    return out


def mask_layout(ks: Sequence[int], n_random: int) -> list[tuple[str, int, int]]:
    """(column, k, draw) of each mask: PGI for every k, PGU for every k, then the floors
    ``random`` and ``random_pgu`` for every (k, draw); draw is -1 for PGI and PGU."""
    out = [("pgi", int(k), -1) for k in ks] + [("pgu", int(k), -1) for k in ks]
    for column in ("random", "random_pgu"):
        out += [(column, int(k), d) for k in ks for d in range(n_random)]
    return out


def _check(x: np.ndarray, attr: np.ndarray, ks: Sequence[int]) -> None:
    if x.shape != attr.shape or x.ndim != 2:
        raise InputError(
            f"inputs {x.shape} and attributions {attr.shape} must be the same (sample, gene) shape"
        )
    for k in ks:
        if not 1 <= k <= x.shape[1]:
            raise InputError(f"faithfulness k={k} must be between 1 and the number of genes ({x.shape[1]})")


def _masks(orders: torch.Tensor, ks: Sequence[int], complement_pgu: bool) -> torch.Tensor:
    """(sample, mask, gene) bool masks in :func:`mask_layout` order from gene orders
    (sample, order, gene): order 0 ranks the PGI genes, order 1 the PGU genes unless
    ``complement_pgu`` (then PGU is the complement of PGI), the rest are the floor draws."""
    ranks = torch.empty_like(orders)
    ranks.scatter_(2, orders, torch.arange(orders.shape[2], device=orders.device).expand_as(orders))
    k = torch.as_tensor(np.asarray(ks, dtype=np.int64), device=orders.device)
    cut = ranks[:, :, None, :] < k[None, None, :, None]  # (s, order, k, g)
    pgi = cut[:, 0]
    pgu = ~pgi if complement_pgu else cut[:, 1]
    r = cut[:, 1 if complement_pgu else 2 :]  # (s, draw, k, g)
    r = r.transpose(1, 2).reshape(r.shape[0], -1, r.shape[-1])  # (s, k x draw, g), k-major
    return torch.cat([pgi, pgu, r, ~r], dim=1)


def _dense_probs(
    predict: Predict, xb: torch.Tensor, delta: torch.Tensor, masks: torch.Tensor, chunk: int
) -> torch.Tensor:
    """Probabilities (sample, mask, row, class) of ``x + delta * mask`` by full forward passes,
    ``chunk`` (sample, mask) pairs per pass; ``delta`` (sample, row, gene)."""
    n_s, n_m, n_g = masks.shape
    out = []
    flat = torch.arange(n_s * n_m, device=xb.device)
    for start in range(0, flat.numel(), chunk):
        idx = flat[start : start + chunk]
        s, m = idx // n_m, idx % n_m
        xp = xb[s][:, None, :] + delta[s] * masks[s, m][:, None, :]
        out.append(predict(xp.reshape(-1, n_g)).double().reshape(idx.numel(), delta.shape[1], -1))
    return torch.cat(out).reshape(n_s, n_m, delta.shape[1], -1)


def _front_probs(
    fronts: list[AffineFront],
    xb: torch.Tensor,
    delta: torch.Tensor,
    orders: torch.Tensor,
    ks: Sequence[int],
    complement_pgu: bool,
) -> torch.Tensor:
    """As :func:`_dense_probs` for models with an affine front, exactly (up to rounding).

    The first layer of ``x + delta * mask`` is ``z0 + sum_{g in mask} delta_g a_g``; the masks are
    the first k genes of an order (nested over k), so the sums over k are cumulative sums over
    segments of the order, costing ``max(ks)`` columns per order instead of the genes x masks of
    full passes; a complement is the full sum minus that.
    """
    n_s, n_o, _ = orders.shape
    n_p = delta.shape[1]
    kmax = int(max(ks))
    bounds = [0, *(int(k) for k in ks)]
    idx = orders[:, :, :kmax]  # (s, o, kmax)
    d = torch.gather(delta[:, None].expand(-1, n_o, -1, -1), 3, idx[:, :, None, :].expand(-1, -1, n_p, -1))
    n_k = len(bounds) - 1
    n_m = 2 * n_k + 2 * (n_o - (1 if complement_pgu else 2)) * n_k
    total = None
    for f in fronts:
        wt = f.weight.T  # (g, h)
        n_h = wt.shape[1]
        ag = wt[idx]  # (s, o, kmax, h)
        segments = [
            d[..., lo:hi] @ ag[:, :, lo:hi, :] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        zk = torch.stack(segments, dim=2).cumsum(
            dim=2
        )  # (s, o, k, p, h): first-layer change of the first k genes of each order
        z0 = (xb @ wt + f.bias)[:, None, None, :]  # (s, 1, 1, h)
        full = (delta @ wt)[:, None]  # (s, 1, p, h)
        r = zk[:, 1 if complement_pgu else 2 :].transpose(1, 2).reshape(n_s, -1, n_p, n_h)  # k-major
        z = torch.empty((n_s, n_m, n_p, n_h), dtype=wt.dtype, device=wt.device)
        nr = r.shape[1]
        torch.add(z0, zk[:, 0], out=z[:, :n_k])
        if complement_pgu:
            torch.sub(full, zk[:, 0], out=z[:, n_k : 2 * n_k])
            z[:, n_k : 2 * n_k] += z0
        else:
            torch.add(z0, zk[:, 1], out=z[:, n_k : 2 * n_k])
        torch.add(z0, r, out=z[:, 2 * n_k : 2 * n_k + nr])
        torch.sub(full, r, out=z[:, 2 * n_k + nr :])
        z[:, 2 * n_k + nr :] += z0
        probs = torch.softmax(f.head(z.reshape(-1, n_h)), dim=1).double()
        total = probs if total is None else total + probs
    assert total is not None
    return (total / len(fronts)).reshape(n_s, -1, n_p, total.shape[-1])


def _block_gaps(
    predict: Predict,
    xb: torch.Tensor,
    delta: torch.Tensor,
    orders: torch.Tensor,
    ks: Sequence[int],
    cls: torch.Tensor | None,
    complement_pgu: bool,
    max_values: int,
) -> np.ndarray:
    """Mean over rows of |p_c(x + delta * mask) - p_c(x)| for every mask of a block: (sample, mask).

    ``cls`` is the class followed per sample (None: the predicted class).
    """
    with torch.no_grad():
        p = predict(xb).double()
        cls = p.argmax(dim=1) if cls is None else cls
        p0 = p.gather(1, cls[:, None])[:, 0]
        fronts = getattr(predict, "fronts", None)
        if fronts:
            probs = _front_probs(fronts, xb, delta, orders, ks, complement_pgu)
        else:
            masks = _masks(orders, ks, complement_pgu)
            chunk = max(1, max_values // (delta.shape[1] * delta.shape[2]))
            probs = _dense_probs(predict, xb, delta, masks, chunk)
        n_m, n_p = probs.shape[1], probs.shape[2]
        pc = probs.gather(3, cls[:, None, None, None].expand(-1, n_m, n_p, 1))[..., 0]
        return (pc - p0[:, None, None]).abs().mean(dim=2).cpu().numpy()


def _block_size(n_values_per_sample: int, max_values: int) -> int:
    return max(1, max_values // max(1, n_values_per_sample))


def _device(predict: Predict, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return getattr(predict, "device", torch.device("cpu"))


def perturbation_sample_gaps(
    predict: Predict,
    x: np.ndarray,
    attr: np.ndarray,
    ks: Sequence[int],
    *,
    scale: np.ndarray,
    sample_ids: np.ndarray,
    sigma: float = 0.1,
    n_perturbations: int = 100,
    n_random: int = 5,
    seed: int = 0,
    device: str | torch.device | None = None,
    max_values: int = MAX_VALUES,
) -> np.ndarray:
    """OpenXAI PGI / PGU / floor gaps of each sample of a block, every mask of :func:`mask_layout`.

    Parameters
    ----------
    predict
        Maps float32 (row, gene) on ``device`` to class probabilities (row, class); an
        :class:`Ensemble` of MLPs takes the affine-front path.
    x
        Inputs, shape (sample, gene), in the model's input units.
    attr
        Attributions, shape (sample, gene); genes are ranked by ``|attr|``.
    ks
        Numbers of top genes, each in [1, genes].
    scale
        Standard deviation of each gene, shape (gene,), in input units: the noise on gene ``g`` is
        ``N(0, (sigma scale_g)^2)``.
    sample_ids
        Integer id of each sample (its store position): keys its noise ``(seed, id)`` and its floor
        draws ``(seed, id, d)``.
    sigma
        Noise standard deviation in standardised units (OpenXAI: 0.1).
    n_perturbations
        Perturbations per sample (OpenXAI: 100).
    n_random
        Random gene orders per sample for the floors.
    seed
        Seed of the noise and of the random orders.
    device
        Device of the inputs (default: the ensemble's, else CPU).
    max_values
        Input values per forward pass (and per block of noise).

    Returns
    -------
    numpy.ndarray
        float64 (sample, mask): mean over perturbations of ``|p_c(x') - p_c(x)|``, ``c`` the
        predicted class; masks ordered as :func:`mask_layout`.
    """
    x = np.asarray(x, dtype=np.float64)
    attr = np.asarray(attr, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    _check(x, attr, ks)
    n_s, n_g = x.shape
    if scale.shape != (n_g,):
        raise InputError(f"scale must have one value per gene ({n_g}), got shape {scale.shape}")
    if not sigma > 0 or n_perturbations < 1:
        raise InputError(f"sigma (= {sigma}) must be > 0 and n_perturbations (= {n_perturbations}) >= 1")
    ids = np.asarray(sample_ids, dtype=np.int64)
    dev = _device(predict, device)
    n_masks = len(mask_layout(ks, n_random))
    out = np.empty((n_s, n_masks), dtype=np.float64)
    block = _block_size(n_perturbations * max(n_g, n_masks * 256), max_values)
    for start in range(0, n_s, block):
        rows = np.arange(start, min(start + block, n_s))
        noise = np.stack(
            [np.random.default_rng([seed, int(ids[i])]).normal(size=(n_perturbations, n_g)) for i in rows]
        ) * (sigma * scale)
        orders = np.concatenate(
            [_orders(attr[rows], largest=True)[:, None], random_orders(seed, ids[rows], n_random, n_g)],
            axis=1,
        )
        out[rows] = _block_gaps(
            predict,
            torch.as_tensor(x[rows], dtype=torch.float32, device=dev),
            torch.as_tensor(noise, dtype=torch.float32, device=dev),
            torch.as_tensor(orders, device=dev),
            ks,
            None,
            True,
            max_values,
        )
    return out


def replacement_sample_gaps(
    predict: Predict,
    x: np.ndarray,
    attr: np.ndarray,
    targets: np.ndarray,
    ks: Sequence[int],
    reference: np.ndarray,
    *,
    sample_ids: np.ndarray,
    n_random: int = 5,
    seed: int = 0,
    device: str | torch.device | None = None,
    max_values: int = MAX_VALUES,
) -> np.ndarray:
    """``replace`` PGI (top-k replaced), PGU (bottom-k replaced) and floor gaps of each sample.

    Parameters
    ----------
    predict
        Maps float32 (row, gene) on ``device`` to class probabilities (row, class).
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
    sample_ids
        Integer id of each sample (its store position): keys its floor draws ``(seed, id, d)``.
    n_random
        Random gene orders per sample for the floors.
    seed
        Seed of the random orders.
    device
        Device of the inputs (default: the ensemble's, else CPU).
    max_values
        Input values per forward pass.

    Returns
    -------
    numpy.ndarray
        float64 (sample, mask): ``|p_t(x') - p_t(x)|``; masks ordered as :func:`mask_layout`.
    """
    x = np.asarray(x, dtype=np.float64)
    attr = np.asarray(attr, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    _check(x, attr, ks)
    n_s, n_g = x.shape
    if reference.shape != (n_g,):
        raise InputError(f"reference must have one value per gene ({n_g}), got shape {reference.shape}")
    ids = np.asarray(sample_ids, dtype=np.int64)
    dev = _device(predict, device)
    targets = np.asarray(targets, dtype=np.int64)
    n_masks = len(mask_layout(ks, n_random))
    out = np.empty((n_s, n_masks), dtype=np.float64)
    block = _block_size(max(n_g, n_masks * 256) * (n_random + 2), max_values)
    for start in range(0, n_s, block):
        rows = np.arange(start, min(start + block, n_s))
        orders = np.concatenate(
            [
                _orders(attr[rows], largest=True)[:, None],
                _orders(attr[rows], largest=False)[:, None],
                random_orders(seed, ids[rows], n_random, n_g),
            ],
            axis=1,
        )
        out[rows] = _block_gaps(
            predict,
            torch.as_tensor(x[rows], dtype=torch.float32, device=dev),
            torch.as_tensor((reference[None, :] - x[rows])[:, None, :], dtype=torch.float32, device=dev),
            torch.as_tensor(orders, device=dev),
            ks,
            torch.as_tensor(targets[rows], device=dev),
            False,
            max_values,
        )
    return out


def gap_table(gaps: np.ndarray, ks: Sequence[int], n_random: int, variant: str) -> pd.DataFrame:
    """The PGI / PGU / floor curves over k from per-sample gaps (means over samples).

    Parameters
    ----------
    gaps
        float64 (sample, mask) from :func:`perturbation_sample_gaps` or
        :func:`replacement_sample_gaps` (blocks concatenated in any order).
    ks
        The k grid the gaps were computed on.
    n_random
        Floor draws per sample.
    variant
        ``"openxai"`` or ``"replace"``.

    Returns
    -------
    pandas.DataFrame
        One row per k: ``k``, ``pgi``, ``pgu``, ``random`` (mean over draws), ``random_sd``
        (standard deviation of the per-draw means), ``random_pgu`` and ``variant``; mean |change in
        the followed class's probability|, in [0, 1].
    """
    mean = np.asarray(gaps, dtype=np.float64).mean(axis=0)
    col = {key: i for i, key in enumerate(mask_layout(ks, n_random))}
    out = []
    for k in ks:
        k = int(k)
        draws = np.array([mean[col[("random", k, d)]] for d in range(n_random)])
        draws_u = np.array([mean[col[("random_pgu", k, d)]] for d in range(n_random)])
        out.append(
            {
                "k": k,
                "pgi": float(mean[col[("pgi", k, -1)]]),
                "pgu": float(mean[col[("pgu", k, -1)]]),
                "random": float(draws.mean()) if n_random else np.nan,
                "random_sd": float(draws.std()) if n_random else np.nan,
                "random_pgu": float(draws_u.mean()) if n_random else np.nan,
            }
        )
    return pd.DataFrame(out).assign(variant=variant)


def perturbation_gaps(
    predict: Predict,
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
    device: str | torch.device | None = None,
    max_values: int = MAX_VALUES,
) -> pd.DataFrame:
    """OpenXAI's PGI and PGU (Gaussian perturbation) and the random-gene floors over a grid of k.

    :func:`perturbation_sample_gaps` on all samples, then :func:`gap_table`; ``sample_ids``
    defaults to the rows. Parameters as there.
    """
    ids = np.arange(np.shape(x)[0]) if sample_ids is None else sample_ids
    gaps = perturbation_sample_gaps(
        predict, x, attr, ks, scale=scale, sample_ids=ids, sigma=sigma, n_perturbations=n_perturbations,
        n_random=n_random, seed=seed, device=device, max_values=max_values,
    )  # fmt: skip
    return gap_table(gaps, ks, n_random, "openxai")


def prediction_gaps(
    predict: Predict,
    x: np.ndarray,
    attr: np.ndarray,
    targets: np.ndarray,
    ks: Sequence[int],
    reference: np.ndarray,
    *,
    n_random: int = 5,
    seed: int = 0,
    sample_ids: np.ndarray | None = None,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """The ``replace`` PGI, PGU and random floors over a grid of k.

    :func:`replacement_sample_gaps` on all samples, then :func:`gap_table`; ``sample_ids``
    defaults to the rows. Parameters as there.
    """
    ids = np.arange(np.shape(x)[0]) if sample_ids is None else sample_ids
    gaps = replacement_sample_gaps(
        predict, x, attr, targets, ks, reference, sample_ids=ids, n_random=n_random, seed=seed, device=device
    )
    return gap_table(gaps, ks, n_random, "replace")


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
