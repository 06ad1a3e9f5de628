"""Evaluation tasks: pure functions of (store, small key) that a Dask worker runs.

Each task opens the store (and the explain run, DE result or model set it needs) itself, reads
exactly one block and returns a small partial result: per-sample values of a sample block,
per-class counts of a sample block, per-gene sums of a sample block, class statistics of a gene
block. The driver (:mod:`gexplain.pipelines.evaluate.run`) only plans the keys and combines the
partials in key order, so the tables are the same whatever the workers, their number or the
order they finish in.

Arguments are small: the store URL, names, block positions (a ``slice`` when contiguous, else at
most one block of integer positions), gene-level vectors at most. A worker process caches what it
opened for one evaluation (:class:`Where` ``token``): the store, the results and the loaded model
ensembles, so it does not reopen them for every block; a new evaluation (a new token) drops them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.evaluate.biology import TopGeneCounts, class_expression_stats, hidden_to_de
from gexplain.pipelines.evaluate.inputs import ATTR, positions
from gexplain.pipelines.evaluate.reproducibility import per_sample_spearman, top_k_overlap
from gexplain.storage.schema import GENE, SAMPLE
from gexplain.storage.store import open_store, read_result

Rows = slice | np.ndarray
"""Positions along ``sample`` (or ``gene``): a slice when contiguous, else int64 positions."""

T = TypeVar("T")

_CACHE: OrderedDict[str, dict[tuple[Any, ...], Any]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_KEEP_EVALUATIONS = 2  # evaluations whose opened inputs a process keeps


@dataclass(frozen=True)
class Where:
    """Which store a task reads, and which evaluation it belongs to.

    Attributes
    ----------
    store_url
        The store (path or fsspec URL).
    token
        Id of one evaluation: a worker's cache of opened inputs is keyed by it, so a later
        evaluation (after the store changed) never sees stale ones.
    """

    store_url: str
    token: str


def compact(pos: np.ndarray) -> Rows:
    """``pos`` as a slice when it is consecutive ascending positions, else as int64 positions."""
    p = np.asarray(pos, dtype=np.int64)
    if p.size and np.array_equal(p, np.arange(p[0], p[0] + p.size)):
        return slice(int(p[0]), int(p[0]) + int(p.size))
    return p


def cached(where: Where, key: tuple[Any, ...], make: Callable[[], T]) -> T:
    """``make()``, computed once per process and evaluation for ``key``."""
    with _CACHE_LOCK:
        entries = _CACHE.setdefault(where.token, {})
        _CACHE.move_to_end(where.token)
        while len(_CACHE) > _KEEP_EVALUATIONS:
            _CACHE.popitem(last=False)
        if key in entries:
            return entries[key]  # type: ignore[no-any-return]
    value = make()
    with _CACHE_LOCK:
        return _CACHE.get(where.token, {}).setdefault(key, value)  # type: ignore[no-any-return]


def store(where: Where) -> xr.Dataset:
    """The store, opened lazily (dask-backed), once per process and evaluation."""
    return cached(where, ("store",), lambda: open_store(where.store_url))


def result(where: Where, group: str) -> xr.Dataset:
    """The result ``results/<group>`` (``explain/<run>``, ``de/<method>/<contrast>``), opened lazily."""
    return cached(where, ("result", group), lambda: read_result(where.store_url, group))


def _read(var: xr.DataArray, rows: Rows, genes: Rows | None = None) -> np.ndarray:
    """The (rows, genes) values of a (sample, gene) variable as a numpy array."""
    sel: dict[str, Rows] = {SAMPLE: rows}
    if genes is not None:
        sel[GENE] = genes
    return np.asarray(var.isel(sel).values)


def _all_labels(where: Where, label: str) -> np.ndarray:
    """(sample,) labels (str) of every store sample, read once per process and evaluation."""
    return cached(where, ("labels", label), lambda: np.asarray(store(where)[label].values).astype(str))


def store_labels(where: Where, label: str, rows: Rows) -> np.ndarray:
    """Labels (str) of the store samples at ``rows``."""
    return _all_labels(where, label)[rows]


def importance_block(where: Where, run: str, explainer: str, rows: Rows) -> tuple[np.ndarray, int]:
    """Partial of the global importance (mean |attribution| over samples) of one sample block.

    Returns
    -------
    sums, n
        (gene,) float64 sum over the block's samples of |attribution|, and the block's samples.
    """
    attr = _read(result(where, f"explain/{run}")[ATTR + explainer], rows)
    return np.abs(attr.astype(np.float64)).sum(axis=0), int(attr.shape[0])


def _shared_genes(a: xr.Dataset, b: xr.Dataset) -> tuple[Rows, Rows]:
    genes = np.intersect1d(a[GENE].values.astype(str), b[GENE].values.astype(str))
    return compact(positions(a[GENE].values, genes, "gene")), compact(
        positions(b[GENE].values, genes, "gene")
    )


def pair_block(
    where: Where, run_a: str, run_b: str, explainer: str, rows_a: Rows, rows_b: Rows, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reproducibility of one block of samples shared by two runs, on their shared genes.

    Parameters
    ----------
    where
        The store.
    run_a, run_b
        The explain runs.
    explainer
        The explainer both ran.
    rows_a, rows_b
        Positions of the block's samples in each run (same samples, same order).
    k
        Top-k size.

    Returns
    -------
    spearman, top_k_overlap
        Per sample, (sample,) float64.
    """
    a, b = result(where, f"explain/{run_a}"), result(where, f"explain/{run_b}")
    ga, gb = cached(where, ("shared genes", run_a, run_b), lambda: _shared_genes(a, b))
    xa, xb = _read(a[ATTR + explainer], rows_a, ga), _read(b[ATTR + explainer], rows_b, gb)
    return per_sample_spearman(xa, xb), top_k_overlap(xa, xb, k)


def models_block(
    where: Where, run: str, variable: str, i: int, j: int, rows: Rows, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reproducibility between models ``i`` and ``j`` of a per-model attribution (model, sample,
    gene) for one sample block; returns per-sample Spearman and top-k overlap, (sample,) each."""
    var = result(where, f"explain/{run}")[variable]
    dim = var.dims[0]
    xa = np.asarray(var.isel({dim: i, SAMPLE: rows}).values)
    xb = np.asarray(var.isel({dim: j, SAMPLE: rows}).values)
    return per_sample_spearman(xa, xb), top_k_overlap(xa, xb, k)


def top_counts_block(
    where: Where,
    run: str,
    explainer: str,
    rows: Rows,
    store_rows: Rows,
    label: str,
    classes: tuple[str, ...],
    k: int,
) -> TopGeneCounts:
    """Per-class top-k counts and |attribution| sums of one sample block (integers and float sums
    the driver adds in block order).

    Parameters
    ----------
    where
        The store.
    run, explainer
        The attribution.
    rows, store_rows
        The block's samples: positions in the run and in the store.
    label
        The store's label column.
    classes
        Every class of the run (the accumulators' rows).
    k
        Top-k size.
    """
    attr = _read(result(where, f"explain/{run}")[ATTR + explainer], rows)
    counts = TopGeneCounts.empty(list(classes), attr.shape[1])
    return counts.add(attr, store_labels(where, label, store_rows), k)


def class_tpm_block(
    where: Where, label: str, classes: tuple[str, ...], genes: Rows
) -> tuple[np.ndarray, np.ndarray]:
    """(class, gene) means and medians of TPM over the store's samples of ``classes``, for the
    store genes at ``genes`` (one gene block; the caller bounds its width x samples)."""
    labels = _all_labels(where, label)
    keep = np.isin(labels, list(classes))
    tpm = np.asarray(store(where)["tpm"].isel({GENE: genes}).values)[keep]
    _, means, medians = class_expression_stats(tpm, labels[keep])
    return means, medians


@dataclass(frozen=True)
class HiddenKey:
    """One (attribution source, DE contrast) pair of the hidden-to-DE table.

    Attributes
    ----------
    run, explainer
        The attribution.
    rows
        Positions in the run of the class's samples read (at most ``max_class_samples``).
    group
        The DE result (``de/<method>/<contrast>``).
    level
        The contrast's tested class.
    k, min_frac, min_z, alpha
        Thresholds of :func:`gexplain.pipelines.evaluate.biology.hidden_to_de`.
    """

    run: str
    explainer: str
    rows: Rows
    group: str
    level: str
    k: int
    min_frac: float
    min_z: float
    alpha: float


def hidden_pair(where: Where, key: HiddenKey) -> pd.DataFrame:
    """Hidden-to-DE genes of one (source, DE contrast) pair (columns of
    :func:`gexplain.pipelines.evaluate.biology.hidden_to_de` plus ``source``, ``contrast``, ``label``)."""
    res = result(where, f"explain/{key.run}")
    d = result(where, key.group)
    genes = np.asarray(res[GENE].values).astype(str)
    name = ATTR + key.explainer
    attr = _read(res[name], key.rows)
    std = _read(res[name + "_std"], key.rows) if name + "_std" in res else None
    count = (
        np.asarray(res[name + "_count"].isel({SAMPLE: key.rows}).values) if name + "_count" in res else None
    )
    table = pd.DataFrame(
        {c: np.asarray(d[c].values, dtype=np.float64) for c in ("padj", "log2FoldChange", "baseMean")},
        index=d[GENE].values.astype(str),
    )
    labels = np.full(attr.shape[0], key.level)
    h = hidden_to_de(
        attr, std, count, labels, genes, table, key.level,
        k=key.k, min_frac=key.min_frac, min_z=key.min_z, alpha=key.alpha,
    )  # fmt: skip
    return h.assign(source=f"{key.run}:{key.explainer}", contrast=key.group, label=key.level)
