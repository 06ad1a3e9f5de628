"""Training data: layer and label selection, validation, stratified splits, up-sampling, statistics.

The training matrix is read from the store in sample blocks (one stored chunk row at a time) into
one float32 array in memory: at the paper's shape (27,417 samples x 19,241 genes) that is
2.1 GB, which fits a training node's memory; Ray then shares it with every replicate through the
object store (one copy per node, zero-copy reads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.labels import UnlabelledPolicy, labelled_samples, resolve_label
from gexplain.storage.errors import InputError
from gexplain.storage.schema import GENE, SAMPLE, layer_names
from gexplain.storage.store import layer_chunks, open_store

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """An in-memory training matrix with integer labels.

    Attributes
    ----------
    x
        float32 (sample, gene) values of ``layer`` in its stored units.
    y
        int64 (sample,) class index into ``classes``.
    classes
        Class names, sorted; index = logit position.
    genes
        Gene ids (gene,), in store order.
    samples
        Sample ids (sample,).
    layer
        Store layer read (e.g. ``"log_expr"``).
    label
        Store label column (e.g. ``"sample_tissue"``).
    """

    x: np.ndarray
    y: np.ndarray
    classes: np.ndarray
    genes: np.ndarray
    samples: np.ndarray
    layer: str
    label: str


@dataclass(frozen=True)
class Split:
    """Sample indices of the train, validation (early stopping) and test parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def encode_labels(
    values: np.ndarray, label: str, policy: UnlabelledPolicy = "exclude"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode a label column; samples with an empty or missing label are left out.

    Parameters
    ----------
    values
        Label per sample, shape (sample,).
    label
        Column name, for messages.
    policy
        What to do with unlabelled samples (see :func:`gexplain.pipelines.labels.labelled_samples`).

    Returns
    -------
    tuple
        (keep: bool (sample,), y: int64 (kept,), classes: str (classes,) sorted).

    Raises
    ------
    InputError
        One class only, or a class with fewer than 2 samples (named).
    """
    keep = labelled_samples(values, label, policy)
    text = pd.Series(np.asarray(values), dtype=object).astype(str).str.strip()
    classes, y = np.unique(text[keep].to_numpy().astype(str), return_inverse=True)
    if classes.size < 2:
        raise InputError(
            f"label column '{label}' has {classes.size} class(es) ({', '.join(classes) or 'no labelled samples'}); "
            "a classifier needs at least 2 - choose another --label"
        )
    counts = np.bincount(y, minlength=classes.size)
    small = classes[counts < 2]
    if small.size:
        raise InputError(
            f"label column '{label}': classes with fewer than 2 samples: {', '.join(small)}; "
            "remove or merge them (e.g. relabel them in the sample sheet) before training"
        )
    return keep, y.astype(np.int64), classes


def _check_finite(block: np.ndarray, samples: np.ndarray, genes: np.ndarray, layer: str) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(
            f"layer '{layer}' holds {int(bad.sum())} NaN/infinite values in samples {samples[0]}..{samples[-1]}, "
            f"first at sample '{samples[i]}', gene '{genes[j]}'; re-run `gexplain normalize`, drop those "
            "samples/genes, or choose another --layer"
        )


def read_training_data(
    source: str | xr.Dataset,
    label: str | None,
    layer: str = "log_expr",
    *,
    sample_block: int | None = None,
    unlabelled: UnlabelledPolicy = "exclude",
) -> TrainingData:
    """Read a layer and a label column from a store into memory, block by block.

    Parameters
    ----------
    source
        Store path/URL or an opened Dataset (dims ``sample``, ``gene``).
    label
        Label column, e.g. ``"sample_tissue"`` (``"tissue"`` also works); None = the store's
        ``label_column`` (:func:`gexplain.pipelines.labels.resolve_label`).
    layer
        (sample, gene) layer to train on.
    sample_block
        Samples per read; default = the stored sample chunk.
    unlabelled
        Samples without a label: ``exclude`` (default) or ``error`` (:mod:`gexplain.pipelines.labels`).

    Raises
    ------
    InputError
        Unknown label or layer, bad classes (see :func:`encode_labels`), NaN/inf in the layer.
    """
    ds = open_store(source) if isinstance(source, str) else source
    name = resolve_label(ds, label)
    if layer not in ds.data_vars or ds[layer].dims != (SAMPLE, GENE):
        raise InputError(
            f"layer '{layer}' is not in the store; option --layer must be one of: {', '.join(layer_names(ds))}"
        )
    keep, y, classes = encode_labels(ds[name].values, name, unlabelled)
    samples_all = ds[SAMPLE].values.astype(str)
    genes = ds[GENE].values.astype(str)
    rows = np.nonzero(keep)[0]
    block = int(sample_block or layer_chunks(ds)[SAMPLE])
    x = np.empty((rows.size, genes.size), dtype=np.float32)
    filled = 0
    for start in range(0, samples_all.size, block):
        stop = min(start + block, samples_all.size)
        wanted = rows[(rows >= start) & (rows < stop)]
        if wanted.size == 0:
            continue
        values = np.asarray(ds[layer].isel({SAMPLE: slice(start, stop)}).values, dtype=np.float32)
        part = values[wanted - start]
        _check_finite(part, samples_all[wanted], genes, layer)
        x[filled : filled + wanted.size] = part
        filled += wanted.size
    return TrainingData(
        x=x, y=y, classes=classes, genes=genes, samples=samples_all[rows], layer=layer, label=name
    )


def _class_rngs(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B117]))


def stratified_split(
    y: np.ndarray, test_fraction: float = 0.1, val_fraction: float = 0.1, seed: int = 0
) -> Split:
    """Split each class into test, validation and train parts.

    Per class of n samples: ``round(n * test_fraction)`` test samples, then
    ``round(n_rest * val_fraction)`` validation samples of the rest, always leaving at least one
    training sample.

    Parameters
    ----------
    y
        int class index per sample, shape (sample,).
    test_fraction, val_fraction
        Fractions in [0, 1).
    seed
        Seed of the shuffle; the split depends only on it and ``y``.
    """
    rng = _class_rngs(seed)
    train, val, test = [], [], []
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        n_test = min(int(round(idx.size * test_fraction)), idx.size - 1)
        rest = idx[n_test:]
        n_val = min(int(round(rest.size * val_fraction)), rest.size - 1)
        test.append(idx[:n_test])
        val.append(rest[:n_val])
        train.append(rest[n_val:])
    return Split(*(np.sort(np.concatenate(p)).astype(np.int64) for p in (train, val, test)))


def stratified_folds(y: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """Return k disjoint test-index arrays covering all samples, each class dealt round-robin.

    Raises
    ------
    InputError
        When k < 2 or k exceeds the smallest class (each fold needs every class once).
    """
    counts = np.bincount(y)
    if k < 2 or k > counts[counts > 0].min():
        raise InputError(
            f"--cv {k} needs 2 <= k <= the smallest class size ({counts[counts > 0].min()}); choose a smaller k"
        )
    rng = _class_rngs(seed)
    fold_of = np.empty(y.size, dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        fold_of[idx] = (np.arange(idx.size) + offset) % k
        offset += idx.size
    return [np.nonzero(fold_of == f)[0] for f in range(k)]


def upsampled_epoch(
    train: np.ndarray, y: np.ndarray, rng: np.random.Generator, upsample: bool = True
) -> np.ndarray:
    """Return one epoch's shuffled sample order, minority classes up-sampled to the largest class.

    Every training sample appears at least once; each smaller class is topped up with draws with
    replacement from itself.

    Parameters
    ----------
    train
        Training sample indices.
    y
        Class index per sample (all samples).
    rng
        The epoch's generator.
    upsample
        False: just shuffle ``train``.
    """
    if not upsample:
        return rng.permutation(train)
    labels = y[train]
    largest = np.bincount(labels).max()
    parts = []
    for c in np.unique(labels):
        members = train[labels == c]
        parts.append(members)
        if members.size < largest:
            parts.append(rng.choice(members, size=largest - members.size, replace=True))
    return rng.permutation(np.concatenate(parts))


def standardization_stats(
    x: np.ndarray, rows: np.ndarray, block: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation over ``rows`` of ``x``, accumulated in float64 by blocks.

    Parameters
    ----------
    x
        (sample, gene) matrix.
    rows
        Sample indices to use (the training part).
    block
        Rows per accumulation step (bounds the float64 temporary).

    Returns
    -------
    tuple
        (mean, std) float32 (gene,); a zero spread is replaced by 1 so the gene passes through centred.
    """
    count = 0
    mean = np.zeros(x.shape[1])
    m2 = np.zeros(x.shape[1])
    for start in range(0, rows.size, block):  # Chan et al.'s pairwise update, stable in float64
        part = x[rows[start : start + block]].astype(np.float64)
        n_b = part.shape[0]
        mean_b = part.mean(axis=0)
        delta = mean_b - mean
        m2 += np.square(part - mean_b).sum(axis=0) + np.square(delta) * count * n_b / (count + n_b)
        mean += delta * n_b / (count + n_b)
        count += n_b
    var = m2 / max(count, 1)
    std = np.sqrt(var)
    std[std <= 1e-8 * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)
