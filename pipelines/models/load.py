"""Load trained replicates from a store, aligned to a (possibly different) gene list.

Alignment rewrites the model itself, so the loaded module is still a plain :class:`MLP` or
:class:`CNN` whose input is the requested gene list, in that order:

* genes the model knows are moved to their new positions (weights, standardisation, grid cells);
* genes the model does not know get zero weight (MLP) or no grid cell (CNN) and so never matter;
* genes the model needs but the new list lacks are an :class:`InputError` unless ``fill`` is
  given: the model then sees the constant ``fill`` (in the stored layer's units; ``"mean"`` = the
  gene's training mean) for them, folded exactly into the first layer's bias (MLP) or the grid's
  constant cells (CNN). The number of filled genes is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from gexplain.pipelines.models.architectures import CNN, MLP, Standardize, build_model
from gexplain.pipelines.models.persist import read_model
from gexplain.storage.checkpoints import list_checkpoints, list_model_sets
from gexplain.storage.errors import InputError
from torch import nn

log = logging.getLogger(__name__)

Fill = float | Literal["mean"] | None


@dataclass
class LoadedModel:
    """One trained replicate, ready for inference on its ``genes`` (in that order).

    Attributes
    ----------
    module
        The model in eval mode on CPU; ``forward`` takes (batch, len(genes)) in ``layer``'s units.
    arch
        ``"mlp"`` or ``"cnn"``.
    genes
        Gene ids of the module's input, in input order.
    classes
        Class names in logit order.
    layer
        Store layer the model reads (e.g. ``"log_expr"``).
    label
        Store label column it predicts (e.g. ``"sample_tissue"``).
    replicate
        Replicate number within its model set.
    seed
        Seed the replicate was trained with.
    metrics
        Held-out metrics recorded at training time.
    model_set
        Name of the model set.
    filled_genes
        Genes the model needed that the requested gene list lacked (fed ``fill``).
    metadata
        The checkpoint's full metadata (hyper-parameters, library versions, test samples, ...).
    """

    module: nn.Module
    arch: str
    genes: np.ndarray
    classes: np.ndarray
    layer: str
    label: str
    replicate: int
    seed: int
    metrics: dict[str, Any]
    model_set: str = "default"
    filled_genes: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))
    metadata: dict[str, Any] = field(default_factory=dict)


def _fill_values(fill: Fill, meta: dict[str, Any], missing: np.ndarray) -> np.ndarray:
    """Fill values (stored layer's units) for the model-gene indices ``missing``."""
    if fill == "mean":
        if "gene_mean" not in meta:
            raise InputError(
                f"model set '{meta.get('model_set')}' replicate {meta.get('replicate')} has no training means; "
                "pass a numeric fill instead of fill='mean'"
            )
        return np.asarray(meta["gene_mean"], dtype=np.float64)[missing]
    return np.full(missing.size, float(fill), dtype=np.float64)  # type: ignore[arg-type]


def _standardized(module: nn.Module, idx: np.ndarray, raw: np.ndarray) -> np.ndarray:
    std_mod: Standardize = module.standardize  # type: ignore[assignment]
    if not std_mod.active:
        return raw
    mean = std_mod.mean.detach().double().numpy()[idx]  # type: ignore[union-attr]
    std = std_mod.std.detach().double().numpy()[idx]  # type: ignore[union-attr]
    return (raw - mean) / std


def _aligned_stats(module: nn.Module, src: np.ndarray, has: np.ndarray, n: int) -> tuple[Any, Any]:
    std_mod: Standardize = module.standardize  # type: ignore[assignment]
    if not std_mod.active:
        return None, None
    mean = np.zeros(n, dtype=np.float32)
    std = np.ones(n, dtype=np.float32)
    mean[has] = std_mod.mean.numpy()[src[has]]  # type: ignore[union-attr]
    std[has] = std_mod.std.numpy()[src[has]]  # type: ignore[union-attr]
    return mean, std


def align_module(
    module: nn.Module, model_genes: np.ndarray, genes: np.ndarray, fill_values: np.ndarray | None
) -> nn.Module:
    """Return an equivalent module whose input is ``genes`` instead of ``model_genes``.

    Parameters
    ----------
    module
        A trained :class:`MLP` or :class:`CNN` on ``model_genes``.
    model_genes
        The module's input genes, shape (G_model,).
    genes
        The new input genes, shape (G,).
    fill_values
        Values (stored layer's units) fed for the model genes absent from ``genes``, in
        ``model_genes`` order of the missing ones; ``None`` when none is missing.
    """
    position = {g: i for i, g in enumerate(genes.tolist())}
    if fill_values is None and any(g not in position for g in model_genes.tolist()):
        raise ValueError("model genes are missing from the new gene list and no fill_values were given")
    model_index = {g: i for i, g in enumerate(model_genes.tolist())}
    src = np.array([model_index.get(g, -1) for g in genes.tolist()], dtype=np.int64)  # new -> model
    has = src >= 0
    missing = np.array([i for i, g in enumerate(model_genes.tolist()) if g not in position], dtype=np.int64)
    missing_std = (
        _standardized(module, missing, fill_values)
        if missing.size and fill_values is not None
        else np.zeros(0)
    )
    mean, std = _aligned_stats(module, src, has, genes.size)
    state = module.state_dict()
    if isinstance(module, MLP):
        new: nn.Module = MLP(
            genes.size,
            module.n_classes,
            hidden=module.hidden,
            dropout=module.dropout_p,
            mean=mean,
            std=std,
            batch_norm=module.batch_norm,
        )
        weight = state["fc1.weight"]
        new_weight = torch.zeros(weight.shape[0], genes.size, dtype=weight.dtype)
        new_weight[:, torch.as_tensor(np.nonzero(has)[0])] = weight[:, torch.as_tensor(src[has])]
        bias = state["fc1.bias"].double()
        if missing.size:
            bias = bias + weight[:, torch.as_tensor(missing)].double() @ torch.as_tensor(missing_std)
        state = {**state, "fc1.weight": new_weight, "fc1.bias": bias.to(weight.dtype)}
    elif isinstance(module, CNN):
        model_to_new = np.full(model_genes.size, -1, dtype=np.int64)
        model_to_new[src[has]] = np.nonzero(has)[0]
        old_cells = module.cell_gene.numpy()
        cells = np.where(old_cells >= 0, model_to_new[np.maximum(old_cells, 0)], -1)
        cell_fill = module.cell_fill.numpy().astype(np.float64).copy()
        if missing.size:
            fill_of = dict(zip(missing.tolist(), missing_std.tolist(), strict=True))
            for c in np.nonzero((old_cells >= 0) & (cells < 0))[0]:
                cell_fill[c] = fill_of[int(old_cells[c])]
        new = CNN(
            genes.size,
            module.n_classes,
            grid=module.grid,
            dropout=module.dropout_p,
            mean=mean,
            std=std,
            cell_gene=cells,
        )
        state = {
            **state,
            "cell_gene": torch.as_tensor(cells, dtype=torch.int64),
            "cell_fill": torch.as_tensor(cell_fill, dtype=torch.float32),
        }
    else:
        raise TypeError(f"cannot align a {type(module).__name__}")
    for key in ("standardize.mean", "standardize.std"):
        state.pop(key, None)
    missing_keys, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("standardize.") for k in missing_keys):
        raise RuntimeError(f"alignment lost parameters: missing={missing_keys} unexpected={unexpected}")
    return new.eval()


def _build(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> nn.Module:
    module = build_model(
        meta["arch"],
        len(meta["genes"]),
        len(meta["classes"]),
        meta.get("hyperparameters", {}),
        standardize=bool(meta.get("standardize", False)),
    )
    module.load_state_dict(state)
    return module.eval()


def load_models(
    store_url: str, model_set: str = "default", genes: np.ndarray | list[str] | None = None, fill: Fill = None
) -> list[LoadedModel]:
    """Load every replicate of a model set stored with a store.

    Parameters
    ----------
    store_url
        The store the models were saved with (path or fsspec URL).
    model_set
        Name of the model set (``gexplain train --model-set``).
    genes
        Gene ids the loaded modules should take as input, in this order (e.g. another store's
        ``gene`` coordinate); ``None`` keeps each model's own gene list.
    fill
        Value fed for genes a model needs that ``genes`` lacks: a number in the stored layer's units,
        or ``"mean"`` for each gene's training mean. ``None`` makes missing genes an error.

    Returns
    -------
    list[LoadedModel]
        One per replicate, ordered by replicate number.

    Raises
    ------
    InputError
        When the model set does not exist, or genes are missing and no ``fill`` was given.
    """
    replicates = list_checkpoints(store_url, model_set)
    if not replicates:
        known = list_model_sets(store_url)
        raise InputError(
            f"no model set '{model_set}' in {store_url}; stored model sets: {', '.join(known) or 'none'} "
            "(train one with `gexplain train STORE --model-set NAME`)"
        )
    target = None if genes is None else np.asarray(genes).astype(str)
    out = []
    for replicate in replicates:
        state, meta = read_model(store_url, model_set, replicate)
        module = _build(state, meta)
        model_genes = np.asarray(meta["genes"]).astype(str)
        filled = np.array([], dtype=str)
        if target is not None and not np.array_equal(target, model_genes):
            lacking = np.setdiff1d(model_genes, target)
            if lacking.size and fill is None:
                raise InputError(
                    f"model set '{model_set}' replicate {replicate} needs {lacking.size} genes the given gene list "
                    f"lacks (e.g. {', '.join(lacking[:5])}); pass fill=<value> or fill='mean' "
                    "to feed a constant for them, or use a store with those genes"
                )
            fill_values = None
            if lacking.size:
                order = np.isin(model_genes, lacking)
                fill_values = _fill_values(fill, meta, np.nonzero(order)[0])
                filled = model_genes[order]
                log.warning(
                    "model set '%s' replicate %d: %d of %d genes missing, fed fill=%s",
                    model_set,
                    replicate,
                    lacking.size,
                    model_genes.size,
                    fill,
                )
            module = align_module(module, model_genes, target, fill_values)
            model_genes = target
        out.append(
            LoadedModel(
                module=module,
                arch=meta["arch"],
                genes=model_genes,
                classes=np.asarray(meta["classes"]).astype(str),
                layer=meta["layer"],
                label=meta["label"],
                replicate=int(meta["replicate"]),
                seed=int(meta["seed"]),
                metrics=meta.get("metrics", {}),
                model_set=model_set,
                filled_genes=filled,
                metadata=meta,
            )
        )
    return out
