"""Train one classifier deterministically.

Given the same data, split, parameters and seed, :func:`train_model` returns bit-identical weights
wherever it runs (in the driver, in any Ray worker, next to any number of other workers): it seeds
torch and numpy from the seed alone, fixes torch's intra-op threads (``threads``, default 1),
turns on ``torch.use_deterministic_algorithms`` and draws every epoch's order from its own
generator.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gexplain.pipelines.models.architectures import build_model, gene_order
from gexplain.pipelines.models.data import (
    Split,
    StoreMatrix,
    epoch_order,
    standardization_stats,
    stratified_split,
)
from gexplain.pipelines.models.metrics import classification_metrics
from gexplain.pipelines.models.params import TrainParams
from gexplain.pipelines.models.persist import state_bytes
from torch import nn

log = logging.getLogger(__name__)

BatchTransform = Callable[[np.ndarray], np.ndarray]
"""A per-batch transform of (batch, genes) training inputs (noise augmentation)."""
NOISE_STREAM = 0x401


@dataclass
class TrainResult:
    """What one training run returns (small: weights travel as bytes).

    Attributes
    ----------
    weights
        Serialised state_dict (``gexplain.pipelines.models.persist.state_bytes``).
    seed
        The run's seed.
    hyperparameters
        Architecture constructor arguments.
    params
        Effective training parameters (after jitter).
    metrics
        Test metrics (:func:`classification_metrics`) plus ``epochs``, ``best_val_loss``, ``history``.
    gene_mean
        Training mean per gene (stored layer's units), for ``fill="mean"`` at load time.
    test_pred
        Predicted class per test sample (test order of the split).
    """

    weights: bytes
    seed: int
    hyperparameters: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any]
    gene_mean: list[float]
    test_pred: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def jittered(params: TrainParams, seed: int) -> TrainParams:
    """Return ``params`` with lr, weight decay and dropout scaled by seed-drawn factors in [1/(1+j), 1+j]."""
    if params.jitter == 0:
        return params
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x717]))
    scale = np.exp(rng.uniform(-1, 1, size=3) * math.log1p(params.jitter))
    return params.model_copy(
        update={
            "lr": params.learning_rate() * float(scale[0]),
            "weight_decay": params.weight_decay * float(scale[1]),
            "dropout": float(min(params.dropout * scale[2], 0.9)),
        }
    )


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Fix torch's threads and turn on deterministic algorithms; restore both afterwards."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_bench = torch.backends.cudnn.benchmark
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
        torch.backends.cudnn.benchmark = old_bench


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (batch, classes) and class indices (batch,).

    Written with a one-hot product instead of ``nn.CrossEntropyLoss``, whose CUDA kernel has no
    deterministic mode.
    """
    one_hot = nn.functional.one_hot(target, logits.shape[1]).to(logits.dtype)
    return -(torch.log_softmax(logits, dim=1) * one_hot).sum(dim=1).mean()


def noise_transform(share: float, sigma: float, rng: np.random.Generator) -> BatchTransform:
    """Zhao et al.'s training noise as a per-batch transform (``mlp_v2.0.0.py`` l.193-199).

    Each sample of the batch gets N(0, sigma) noise on every gene with probability ``share``
    (their code draws ``p ~ U(0, 1)`` per sample and adds noise where ``p >= -N``, ``-N 0.2``:
    about 80 %), then the whole batch is made absolute (``np.absolute(data + noise * p)``).

    Parameters
    ----------
    share
        Probability that a sample is noised.
    sigma
        Noise standard deviation, input units (log2(TPM + 1)).
    rng
        The generator of the run (seeded from the replicate's seed).
    """

    def transform(batch: np.ndarray) -> np.ndarray:
        noisy = rng.random(batch.shape[0]) < share
        noise = rng.normal(0.0, sigma, size=batch.shape).astype(batch.dtype)
        return np.abs(batch + noise * noisy[:, None].astype(batch.dtype))

    return transform


def make_split(y: np.ndarray, params: TrainParams, seed: int) -> Split:
    """The train/validation/test split of ``params.split`` (:func:`zhao_split` or stratified fractions)."""
    if params.split == "zhao":
        return zhao_split(y, seed)
    return stratified_split(y, params.test_fraction, params.val_fraction, seed)


def zhao_split(y: np.ndarray, seed: int) -> Split:
    """Zhao et al.'s split (``prepareDatasets_v2.0.0.py`` l.251-261), per class after a shuffle.

    More than 50 samples: the first ``int(0.9 n)`` train, the next ``int(0.95 n) - int(0.9 n)``
    test, the rest validation (early stopping). Otherwise ``n - 10`` train, 5 test, 5 validation
    (Python's slicing: a class of at most 10 samples trains on none of them).

    Parameters
    ----------
    y
        (sample,) int class index per sample.
    seed
        Seed of the per-class shuffles.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A0]))
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        n = rows.size
        if n > 50:
            a, b = int(n * 0.90), int(n * 0.95)
            train, test, val = rows[:a], rows[a:b], rows[b:]
        else:
            train, test, val = rows[:-10], rows[-10:-5], rows[-5:]
        parts["train"].append(train)
        parts["test"].append(test)
        parts["val"].append(val)
    return Split(**{k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()})


def train_steps(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    device: torch.device,
    l1: float = 0.0,
    transform: BatchTransform | None = None,
) -> float:
    """One pass of mini-batch updates over ``order``; returns the mean training loss.

    A final batch of one sample is skipped (BatchNorm needs two). ``l1`` adds
    ``l1 * sum |W|`` of the first layer (``fc1`` of the MLP, ``conv1`` of the CNN) to the loss;
    ``transform`` (e.g. :func:`noise_transform`) changes each (batch, genes) input batch.

    Parameters
    ----------
    x
        (sample, gene) float32, stored layer's units.
    y
        (sample,) int class indices.
    order
        Sample indices in visiting order.
    """
    module.train()
    total, seen = 0.0, 0
    for start in range(0, order.size, batch_size):
        batch = order[start : start + batch_size]
        if batch.size < 2:
            continue
        xb_np = np.ascontiguousarray(x[batch], dtype=np.float32)
        if transform is not None:
            xb_np = transform(xb_np)
        xb = torch.from_numpy(xb_np).to(device)
        yb = torch.from_numpy(np.asarray(y[batch], dtype=np.int64)).to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(module(xb), yb)
        if l1 > 0:
            first = module.fc1 if hasattr(module, "fc1") else module.conv1
            loss = loss + l1 * first.weight.abs().sum()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * batch.size
        seen += batch.size
    return total / max(seen, 1)


@torch.no_grad()
def predict_logits(
    module: nn.Module, x: np.ndarray, rows: np.ndarray, batch: int, device: torch.device
) -> np.ndarray:
    """Logits (len(rows), classes) float32 of ``module`` in eval mode for ``x[rows]``."""
    module.eval()
    out = []
    for start in range(0, rows.size, batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[rows[start : start + batch]], dtype=np.float32)).to(
            device
        )
        out.append(module(xb).float().cpu().numpy())
    n_classes = int(getattr(module, "n_classes", 0))
    return np.concatenate(out) if out else np.zeros((0, n_classes), dtype=np.float32)


def _val_loss(
    module: nn.Module, x: np.ndarray, y: np.ndarray, rows: np.ndarray, batch: int, device: torch.device
) -> float:
    logits = torch.from_numpy(predict_logits(module, x, rows, batch, device))
    return float(cross_entropy(logits, torch.from_numpy(y[rows].astype(np.int64))))


def train_model(
    x: np.ndarray | StoreMatrix,
    y: np.ndarray,
    split: Split,
    classes: np.ndarray,
    params: TrainParams,
    seed: int,
    *,
    gene_positions: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Train one model with early stopping and return its best-validation weights and test metrics.

    Parameters
    ----------
    x
        (sample, gene) float32 in the stored layer's units (may be a read-only view), or a
        :class:`~gexplain.pipelines.models.data.StoreMatrix` read from the store by chunk.
    y
        (sample,) int64 class indices into ``classes``.
    split
        Train / validation / test sample indices.
    classes
        Class names, shape (classes,).
    params
        Hyper-parameters (already jittered, see :func:`jittered`).
    seed
        Seed of initialisation, dropout and epoch orders.
    gene_positions
        (chromosome, start) per gene for ``gene_order="position"``.
    """
    device = resolve_device(params.device)
    with deterministic_torch(params.threads):
        torch.manual_seed(seed)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xE70C]))
        mean, std = standardization_stats(x, split.train)
        hyper: dict[str, Any] = {"dropout": params.dropout}
        if params.arch == "mlp":
            hyper["hidden"] = params.hidden
            hyper["batch_norm"] = params.batch_norm
        else:
            chrom, start = gene_positions if gene_positions is not None else (None, None)
            hyper["grid"] = params.grid
            hyper["channel_dropout"] = params.channel_dropout
            hyper["gene_order"] = gene_order(
                x.shape[1], params.gene_order, seed=seed, chromosome=chrom, start=start
            )
        module = build_model(params.arch, x.shape[1], len(classes), hyper, standardize=False)
        if params.standardize:
            module.standardize.mean = torch.from_numpy(mean)  # type: ignore[union-attr]
            module.standardize.std = torch.from_numpy(std)  # type: ignore[union-attr]
        module.to(device)
        optimizer = torch.optim.Adam(
            module.parameters(), lr=params.learning_rate(), weight_decay=params.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=params.lr_factor, patience=params.lr_patience
        )
        val_rows = split.val if split.val.size else split.train
        best_loss, best_state, best_epoch, history = math.inf, None, 0, []
        noise = (
            noise_transform(
                params.noise_share,
                params.noise_sigma,
                np.random.default_rng(np.random.SeedSequence([int(seed), NOISE_STREAM])),
            )
            if params.noise_share > 0
            else None
        )
        for epoch in range(params.max_epochs):
            order = epoch_order(x, split.train, y, rng, params.upsample)
            train_loss = train_steps(
                module, optimizer, x, y, order, params.batch_size, device, params.l1, noise
            )
            val_loss = _val_loss(module, x, y, val_rows, params.eval_batch, device)
            scheduler.step(val_loss)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            if val_loss < best_loss:
                best_loss, best_epoch = val_loss, epoch
                best_state = copy.deepcopy(module.state_dict())
            elif epoch - best_epoch >= params.early_stopping:
                break
        if best_state is not None:
            module.load_state_dict(best_state)
        test_pred = predict_logits(module, x, split.test, params.eval_batch, device).argmax(axis=1)
        metrics = classification_metrics(y[split.test], test_pred, classes)
        metrics.update(
            {"epochs": len(history), "best_epoch": best_epoch, "best_val_loss": best_loss, "history": history}
        )
        module.cpu()
        hyper_out = {k: v for k, v in hyper.items() if k != "gene_order"}
        if params.arch == "cnn":
            hyper_out["grid"] = module.grid  # type: ignore[union-attr]
        return TrainResult(
            weights=state_bytes(module),
            seed=int(seed),
            hyperparameters=hyper_out,
            params=params.model_dump(),
            metrics=metrics,
            gene_mean=mean.astype(float).tolist(),
            test_pred=test_pred.astype(np.int64),
        )
