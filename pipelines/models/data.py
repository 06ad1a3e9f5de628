"""Training data: layer and label selection, validation, stratified splits, up-sampling, statistics.

Two ways to hold the (sample, gene) training matrix:

* :func:`open_training_data` (the ``train`` stage) keeps it in the store: a :class:`StoreMatrix`
  is a small picklable handle (store URL, layer, the kept samples' store positions) that each
  training task uses to read its own minibatches, one stored sample chunk at a time, into a
  bounded chunk cache (``buffer_mb``). The driver never holds the matrix and nothing large
  travels through Ray's object store. Each epoch's order (:func:`epoch_order`) is today's
  up-sampled shuffle, regrouped so that it visits the chunks in a seeded random order, a window of
  chunks at a time, shuffled within the window: every chunk is read once per epoch for training.
  Validation and test rows are read in store order, chunk by chunk.
* :func:`read_training_data` reads it into one float32 array (notebooks, decision rules, small
  stores): 2.1 GB at the paper's shape (27,417 samples x 19,241 genes).

Both give the same numbers when the window spans every chunk; the order depends only on the
seed, never on the process or the number of workers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.labels import UnlabelledPolicy, labelled_samples, resolve_label
from gexplain.storage.errors import InputError
from gexplain.storage.schema import GENE, SAMPLE, layer_names
from gexplain.storage.store import layer_chunks, open_store

log = logging.getLogger(__name__)


MiB = 2**20


class StoreMatrix:
    """A (sample, gene) store layer restricted to some samples, read by stored sample chunks.

    Indexing with an integer array (``m[rows]``) returns float32 (len(rows), gene), read through
    a cache of at most ``cache_chunks`` stored chunks (least recently used first out). Pickling
    keeps the handle only (URL, layer, positions), never the cache or the opened store, so a Ray
    task receives a few hundred kB whatever the cohort.

    Parameters
    ----------
    url
        Store path or URL.
    layer
        (sample, gene) layer, e.g. ``"log_expr"``.
    positions
        int64 (sample,) store positions of the rows, increasing (the training samples).
    samples, genes
        Ids along the rows (sample,) and columns (gene,), for messages.
    chunk_rows
        Stored sample chunk of the layer.
    buffer_mb
        Memory for cached chunks (MiB). Half of it is the shuffle window of :func:`epoch_order`
        (``window_chunks``), the other half lets a minibatch span two windows without rereads.

    Attributes
    ----------
    chunk_reads
        Chunks read from the store by this process (for tests and benchmarks).
    peak_cached
        Most chunks held at once.
    """

    def __init__(
        self,
        url: str,
        layer: str,
        positions: np.ndarray,
        samples: np.ndarray,
        genes: np.ndarray,
        chunk_rows: int,
        buffer_mb: float,
    ) -> None:
        self.url = url
        self.layer = layer
        self.positions = np.asarray(positions, dtype=np.int64)
        self.samples = np.asarray(samples)
        self.genes = np.asarray(genes)
        self.chunk_rows = int(chunk_rows)
        self.buffer_mb = float(buffer_mb)
        chunk_mb = self.chunk_rows * self.genes.size * 4 / MiB
        self.window_chunks = max(1, int(self.buffer_mb / 2 // max(chunk_mb, 1e-9)))
        self.cache_chunks = 2 * self.window_chunks
        self.chunk_of_row = self.positions // self.chunk_rows
        self._reset()

    def _reset(self) -> None:
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._array: Any = None
        self.chunk_reads = 0
        self.peak_cached = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_cache", "_array", "chunk_reads", "peak_cached"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, genes)."""
        return (int(self.positions.size), int(self.genes.size))

    @property
    def ndim(self) -> int:
        """Always 2."""
        return 2

    def _chunk(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows (indices into this matrix) of stored chunk ``c`` and their float32 values."""
        hit = self._cache.get(c)
        if hit is not None:
            self._cache.move_to_end(c)
            return hit
        if self._array is None:
            self._array = open_store(self.url)[self.layer]
        members = np.nonzero(self.chunk_of_row == c)[0]
        start = c * self.chunk_rows
        stop = min(start + self.chunk_rows, int(self._array.sizes[SAMPLE]))
        with dask.config.set(scheduler="synchronous"):  # one chunk row at a time, no thread pool
            values = np.asarray(self._array.isel({SAMPLE: slice(start, stop)}).values, dtype=np.float32)
        block = np.ascontiguousarray(values[self.positions[members] - start])
        del values
        _check_finite(block, self.samples[members], self.genes, self.layer)
        self.chunk_reads += 1
        while len(self._cache) >= self.cache_chunks:
            self._cache.popitem(last=False)
        self._cache[c] = (members, block)
        self.peak_cached = max(self.peak_cached, len(self._cache))
        return members, block

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.genes.size), dtype=np.float32)
        chunks = self.chunk_of_row[rows]
        for c in dict.fromkeys(chunks.tolist()):  # chunks in first-use order
            where = np.nonzero(chunks == c)[0]
            members, block = self._chunk(int(c))
            out[where] = block[np.searchsorted(members, rows[where])]
        return out


def epoch_order(
    x: np.ndarray | StoreMatrix,
    train: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    upsample: bool = True,
) -> np.ndarray:
    """One epoch's sample order: :func:`upsampled_epoch`, regrouped by stored chunk for a store.

    For a :class:`StoreMatrix` whose training rows span more chunks than its window, the chunks
    are put in a random order (drawn from ``rng`` after the epoch's shuffle) and cut into windows
    of ``window_chunks``; the order visits the windows one after another and, within a window,
    keeps the shuffled order of the up-sampled epoch (a stable sort by window), so it is uniform
    within the window and every sample keeps its up-sampled count. In-memory data, and a window
    that spans every chunk, give :func:`upsampled_epoch`'s order unchanged (no extra draw).

    Parameters
    ----------
    x
        The training matrix (array or :class:`StoreMatrix`).
    train, y, rng, upsample
        As in :func:`upsampled_epoch`.

    Returns
    -------
    numpy.ndarray
        int64 row indices into ``x``, in visiting order.
    """
    order = upsampled_epoch(train, y, rng, upsample)
    if not isinstance(x, StoreMatrix):
        return order
    chunk = x.chunk_of_row[order]
    present = np.unique(chunk)
    if present.size <= x.window_chunks:
        return order
    rank = np.empty(int(present.max()) + 1, dtype=np.int64)
    rank[present[rng.permutation(present.size)]] = np.arange(present.size)
    window = rank[chunk] // x.window_chunks
    return order[np.argsort(window, kind="stable")]


@dataclass
class TrainingData:
    """A training matrix (in memory, or read from the store by chunk) with integer labels.

    Attributes
    ----------
    x
        (sample, gene) values of ``layer`` in its stored units: a float32 array
        (:func:`read_training_data`) or a :class:`StoreMatrix` (:func:`open_training_data`).
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

    x: np.ndarray | StoreMatrix
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


def _select(
    ds: xr.Dataset, label: str | None, layer: str, unlabelled: UnlabelledPolicy
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check ``layer`` and the label; return (label name, kept store positions, y, classes, samples, genes)."""
    name = resolve_label(ds, label)
    if layer not in ds.data_vars or ds[layer].dims != (SAMPLE, GENE):
        raise InputError(
            f"layer '{layer}' is not in the store; option --layer must be one of: {', '.join(layer_names(ds))}"
        )
    keep, y, classes = encode_labels(ds[name].values, name, unlabelled)
    samples_all = ds[SAMPLE].values.astype(str)
    genes = ds[GENE].values.astype(str)
    return name, np.nonzero(keep)[0].astype(np.int64), y, classes, samples_all, genes


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
    name, rows, y, classes, samples_all, genes = _select(ds, label, layer, unlabelled)
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


def open_training_data(
    store_url: str,
    label: str | None,
    layer: str = "log_expr",
    *,
    buffer_mb: float = 1024.0,
    unlabelled: UnlabelledPolicy = "exclude",
) -> TrainingData:
    """Select a layer and a label column for training without reading the matrix.

    Only labels and ids are read here; ``x`` is a :class:`StoreMatrix` that training tasks read by
    chunk. NaN or infinite values are found when their chunk is first read (an :class:`InputError`
    naming the sample and gene, as :func:`read_training_data` gives).

    Parameters
    ----------
    store_url
        Store path or URL (tasks open it themselves).
    label, layer, unlabelled
        As in :func:`read_training_data`.
    buffer_mb
        Chunk cache per reader (MiB): see :class:`StoreMatrix`.

    Raises
    ------
    InputError
        Unknown label or layer, bad classes (see :func:`encode_labels`).
    """
    ds = open_store(store_url)
    name, rows, y, classes, samples_all, genes = _select(ds, label, layer, unlabelled)
    matrix = StoreMatrix(
        store_url,
        layer,
        rows,
        samples_all[rows],
        genes,
        chunk_rows=layer_chunks(ds)[SAMPLE],
        buffer_mb=buffer_mb,
    )
    return TrainingData(
        x=matrix, y=y, classes=classes, genes=genes, samples=samples_all[rows], layer=layer, label=name
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
    x: np.ndarray | StoreMatrix, rows: np.ndarray, block_mb: float = 64.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation over ``rows`` of ``x``, accumulated in float64 by blocks.

    Parameters
    ----------
    x
        (sample, gene) matrix (array or :class:`StoreMatrix`).
    rows
        Sample indices to use (the training part).
    block_mb
        Size of the float64 block of rows taken per step (MiB), the pass's only temporary beside
        the float32 rows it is cast from (half its size). It bounds this pass by the block, not by
        the cohort: rows per step = ``block_mb`` / (8 bytes x genes), at least one.

    Returns
    -------
    tuple
        (mean, std) float32 (gene,); a zero spread is replaced by 1 so the gene passes through centred.
    """
    block = max(1, int(block_mb * MiB) // (8 * max(int(x.shape[1]), 1)))
    count = 0
    mean = np.zeros(x.shape[1])
    m2 = np.zeros(x.shape[1])
    for start in range(0, rows.size, block):  # Chan et al.'s pairwise update, stable in float64
        part = x[rows[start : start + block]].astype(np.float64)
        n_b = part.shape[0]
        mean_b = part.mean(axis=0)
        delta = mean_b - mean
        part -= mean_b  # in place: no second (block, gene) float64 temporary
        np.square(part, out=part)
        m2 += part.sum(axis=0) + np.square(delta) * count * n_b / (count + n_b)
        mean += delta * n_b / (count + n_b)
        count += n_b
    var = m2 / max(count, 1)
    std = np.sqrt(var)
    std[std <= 1e-8 * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)
