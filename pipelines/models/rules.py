"""Sabbatini & Manganaro's fixed decision rules as model kinds that ``explain`` can run on.

The paper explains two fixed rules on the plane of the two significant variables, not trained
networks (Sabbatini & Manganaro 2023, "Machine Learning models"):

``rule_linear`` (dataset A)
    A straight boundary perpendicular to the line through the two groups' centres of mass. We put
    it through the midpoint of the two centres (the paper does not say where; ours). Signed
    distance ``d = n . (x_pair - m)``, ``n`` the unit vector from the first class's centre to the
    second's, ``m`` the midpoint; ``d > 0`` is the second class.
``rule_circle`` (datasets B, C)
    A circle centred on the inner group's centre of mass (paper). The inner group is the one with
    the smaller spread (trace of its covariance) unless named; the radius is the one that
    classifies the data best (ours; the paper does not give it). ``d = r - |x_pair - c|``;
    ``d > 0`` (inside) is the inner class.

Each rule is an :class:`torch.nn.Module` over the *whole* gene vector (it reads its two genes by
index), returning class scores (batch, 2): by default the hard labels, one-hot (the paper's
models "provide labels"); with ``sharpness`` ``s``, logits ``+s d / 2`` for the class of the
``d > 0`` side and ``-s d / 2`` for the other. Gradient explainers see zero
gradients on hard labels; kernel SHAP and LIME (perturbation methods) work on both. A rule is
stored as a one-replicate model set in the ordinary checkpoint format (its parameters are both
``hyperparameters`` and buffers), so :func:`gexplain.pipelines.models.load.load_models` and the explain
stage load it like a trained network.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gexplain.pipelines.models.data import TrainingData
from gexplain.pipelines.models.persist import save_model, state_bytes
from gexplain.storage.checkpoints import delete_model_set, list_checkpoints
from gexplain.storage.errors import InputError
from gexplain.storage.store import open_store
from torch import nn

RULE_KINDS = ("rule_linear", "rule_circle")


class _Rule(nn.Module):
    """Common part: the two gene indices, the decision score -> class scores."""

    pair: torch.Tensor

    def __init__(
        self, n_genes: int, n_classes: int, *, pair: Sequence[int], positive: int, sharpness: float | None
    ) -> None:
        super().__init__()
        if n_classes != 2:
            raise InputError(f"decision rules separate two classes; the label has {n_classes}")
        if len(pair) != 2 or not all(0 <= int(g) < n_genes for g in pair):
            raise InputError(f"a decision rule needs two gene indices in [0, {n_genes}); got {list(pair)}")
        if positive not in (0, 1):
            raise InputError(f"positive class index must be 0 or 1, got {positive}")
        self.register_buffer("pair", torch.as_tensor(np.asarray(pair, dtype=np.int64)))
        self.positive = int(positive)
        self.sharpness = None if sharpness is None else float(sharpness)

    def score(self, xy: torch.Tensor) -> torch.Tensor:
        """Signed distance to the boundary (batch,), positive on the ``positive`` class's side."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (batch, 2) of inputs (batch, genes) in the stored layer's units."""
        d = self.score(x[:, self.pair])
        if self.sharpness is None:
            hi = (d > 0).to(x.dtype)
            pos, neg = hi, 1.0 - hi
        else:
            pos, neg = 0.5 * self.sharpness * d, -0.5 * self.sharpness * d
        cols = (neg, pos) if self.positive == 1 else (pos, neg)
        return torch.stack(cols, dim=1)


class LinearRule(_Rule):
    """Straight boundary ``n . (x_pair - m) = 0`` (see the module docstring)."""

    normal: torch.Tensor
    midpoint: torch.Tensor

    def __init__(
        self,
        n_genes: int,
        n_classes: int,
        *,
        pair: Sequence[int],
        normal: Sequence[float],
        midpoint: Sequence[float],
        positive: int = 1,
        sharpness: float | None = None,
    ) -> None:
        super().__init__(n_genes, n_classes, pair=pair, positive=positive, sharpness=sharpness)
        self.register_buffer("normal", torch.as_tensor(np.asarray(normal, dtype=np.float32)))
        self.register_buffer("midpoint", torch.as_tensor(np.asarray(midpoint, dtype=np.float32)))

    def score(self, xy: torch.Tensor) -> torch.Tensor:
        """``n . (xy - m)``, shape (batch,)."""
        return (xy - self.midpoint.to(xy.dtype)) @ self.normal.to(xy.dtype)


class CircleRule(_Rule):
    """Circular boundary ``|x_pair - c| = r`` (see the module docstring)."""

    centre: torch.Tensor
    radius: torch.Tensor

    def __init__(
        self,
        n_genes: int,
        n_classes: int,
        *,
        pair: Sequence[int],
        centre: Sequence[float],
        radius: float,
        positive: int = 1,
        sharpness: float | None = None,
    ) -> None:
        super().__init__(n_genes, n_classes, pair=pair, positive=positive, sharpness=sharpness)
        if not radius > 0:
            raise InputError(f"circle radius must be positive, got {radius}")
        self.register_buffer("centre", torch.as_tensor(np.asarray(centre, dtype=np.float32)))
        self.register_buffer("radius", torch.tensor(float(radius), dtype=torch.float32))

    def score(self, xy: torch.Tensor) -> torch.Tensor:
        """``r - |xy - c|``, shape (batch,)."""
        return self.radius.to(xy.dtype) - torch.linalg.vector_norm(xy - self.centre.to(xy.dtype), dim=1)


RULES: dict[str, type[nn.Module]] = {"rule_linear": LinearRule, "rule_circle": CircleRule}


def _best_radius(distance: np.ndarray, inside: np.ndarray) -> float:
    """Radius maximising accuracy of ``distance < r`` for ``inside`` (midpoint between neighbours)."""
    order = np.argsort(distance, kind="stable")
    d, ins = distance[order], inside[order]
    # correct(r between d[i-1] and d[i]) = inside among the first i + outside among the rest
    correct = np.concatenate([[0], np.cumsum(ins)]) + np.concatenate([np.cumsum((~ins)[::-1])[::-1], [0]])
    i = int(np.argmax(correct))
    if i == 0:
        return float(d[0] / 2) if d[0] > 0 else 1e-6
    if i == d.size:
        return float(d[-1] * 1.01 + 1e-6)
    return float((d[i - 1] + d[i]) / 2)


def fit_rule(kind: str, xy: np.ndarray, y: np.ndarray, *, inner: int | None = None) -> dict[str, Any]:
    """Place a rule on two variables of a two-class dataset.

    Parameters
    ----------
    kind
        ``"rule_linear"`` or ``"rule_circle"``.
    xy
        (sample, 2) values of the two variables.
    y
        (sample,) class index 0 or 1.
    inner
        ``rule_circle``: the inner class; ``None`` = the class with the smaller spread.

    Returns
    -------
    dict
        The rule's constructor arguments (``normal``/``midpoint`` or ``centre``/``radius``,
        ``positive``), JSON-ready.
    """
    xy = np.asarray(xy, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if xy.ndim != 2 or xy.shape[1] != 2 or y.shape != (xy.shape[0],):
        raise InputError(f"a rule is placed on (sample, 2) values with one class per sample; got {xy.shape}")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise InputError("a decision rule needs samples of both classes")
    centres = np.stack([xy[y == c].mean(axis=0) for c in (0, 1)])
    if kind == "rule_linear":
        direction = centres[1] - centres[0]
        norm = float(np.linalg.norm(direction))
        if norm == 0:
            raise InputError("the two classes have the same centre of mass: no linear rule separates them")
        return {
            "normal": (direction / norm).tolist(),
            "midpoint": centres.mean(axis=0).tolist(),
            "positive": 1,
        }
    if kind == "rule_circle":
        if inner is None:
            spread = [float(np.trace(np.cov(xy[y == c].T))) for c in (0, 1)]
            inner = int(np.argmin(spread))
        centre = centres[inner]
        distance = np.linalg.norm(xy - centre, axis=1)
        return {
            "centre": centre.tolist(),
            "radius": _best_radius(distance, y == inner),
            "positive": int(inner),
        }
    raise InputError(f"unknown rule kind '{kind}'; use one of {', '.join(RULE_KINDS)}")


def _rule_genes(store_url: str, data: TrainingData, genes: Sequence[str] | None) -> list[str]:
    if genes is None:
        ds = open_store(store_url)
        if "truth_informative" not in ds:
            raise InputError(
                "a decision rule needs its two genes: pass rule_genes = [GENE_A, GENE_B] "
                "(the store has no truth_informative column to take them from)"
            )
        genes = ds["gene"].values[ds["truth_informative"].values.astype(bool)].astype(str).tolist()
        if len(genes) != 2:
            raise InputError(
                f"the store marks {len(genes)} informative genes; a decision rule takes exactly two: "
                "pass rule_genes = [GENE_A, GENE_B]"
            )
    genes = [str(g) for g in genes]
    unknown = [g for g in genes if g not in set(data.genes.astype(str).tolist())]
    if len(genes) != 2 or unknown:
        raise InputError(
            f"rule_genes = {genes}: give exactly two genes of the store"
            + (f" ({', '.join(unknown)} not found)" if unknown else "")
        )
    return genes


def save_rule_set(
    store_url: str,
    model_set: str,
    kind: str,
    data: TrainingData,
    *,
    genes: Sequence[str] | None = None,
    sharpness: float | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Place a rule on ``data`` and store it as model set ``model_set`` (one replicate).

    Parameters
    ----------
    store_url
        Store to save the model set with.
    model_set
        Model set name.
    kind
        ``"rule_linear"`` or ``"rule_circle"``.
    data
        The labelled samples (two classes) and the layer the rule reads.
    genes
        The two genes of the rule; ``None`` = the store's two ``truth_informative`` genes.
    sharpness
        ``None`` for hard labels, else logits ``+-sharpness * d / 2``.
    overwrite
        Replace an existing model set.

    Returns
    -------
    dict
        ``model_set``, ``checkpoints``, ``rule`` (its parameters), ``accuracy`` on ``data``.
    """
    if kind not in RULES:
        raise InputError(f"unknown rule kind '{kind}'; use one of {', '.join(RULE_KINDS)}")
    if data.classes.size != 2:
        raise InputError(f"decision rules separate two classes; label '{data.label}' has {data.classes.size}")
    pair_genes = _rule_genes(store_url, data, genes)
    index = {g: i for i, g in enumerate(data.genes.astype(str).tolist())}
    pair = [index[g] for g in pair_genes]
    params = {"pair": pair, **fit_rule(kind, data.x[:, pair], data.y), "sharpness": sharpness}
    module = RULES[kind](data.genes.size, 2, **params).eval()
    with torch.no_grad():
        predicted = module(torch.as_tensor(data.x, dtype=torch.float32)).argmax(dim=1).numpy()
    accuracy = float((predicted == data.y).mean())
    if list_checkpoints(store_url, model_set):
        if not overwrite:
            raise InputError(
                f"model set '{model_set}' already exists in {store_url}; choose another model_set or pass overwrite"
            )
        delete_model_set(store_url, model_set)
    metadata = {
        "arch": kind,
        "hyperparameters": params,
        "params": {"arch": kind, "rule_genes": pair_genes, "sharpness": sharpness},
        "genes": data.genes.astype(str).tolist(),
        "classes": data.classes.astype(str).tolist(),
        "layer": data.layer,
        "label": data.label,
        "standardize": False,
        "seed": 0,
        "run_seed": 0,
        "metrics": {"accuracy": accuracy},
        "test_samples": [],
        "n_train": int(data.y.size),
        "n_val": 0,
        "n_test": 0,
        "store": store_url,
        "source": "Sabbatini & Manganaro (2023): fixed decision rule placed on the data",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    url = save_model(store_url, model_set, 0, state_bytes(module), metadata)
    return {"model_set": model_set, "checkpoints": [url], "rule": params, "accuracy": accuracy}
