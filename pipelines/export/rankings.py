"""Per-class attribution rankings and evaluation tables for ``AnnData.uns``.

Rankings use the layout scanpy's ``tl.rank_genes_groups`` writes, so ``sc.pl.rank_genes_groups``,
``sc.get.rank_genes_groups_df`` and friends read them with ``key=<the uns key>``:

``uns["rank_attr_<run>_<explainer>"]``
    ``names`` and ``scores``: numpy record arrays, one field per class (the groups of
    ``params["groupby"]``), genes sorted by decreasing score; ``scores`` is the class mean of
    ``|attribution|`` (attribution units) over the class's explained samples. ``mean_attr`` (same
    layout): the signed class mean of each listed gene, for its direction. ``logfoldchanges``,
    ``pvals`` and ``pvals_adj``: NaN, because an attribution is not a test; they are there because
    scanpy's readers (``sc.get.rank_genes_groups_df``) require them for every method but
    ``logreg``. ``params``: ``groupby`` (the store's label column), ``reference`` = ``"rest"``,
    ``method`` (what the score is), ``use_raw`` = False, ``layer`` (the attribution layer),
    ``corr_method`` = ``"none"``.
``uns["evaluate"][<evaluation>][<table>]``
    Every table of ``results/evaluate/<evaluation>`` as a DataFrame (text columns as str).

Class means are accumulated over sample blocks: memory is one block x genes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.evaluate.inputs import ATTR, explainers_of, label_column
from gexplain.pipelines.evaluate.tables import read_tables
from gexplain.storage.schema import GENE, SAMPLE

BLOCK = 1024  # samples per attribution block read


def class_means(
    attr: xr.DataArray, labels: np.ndarray, classes: list[str], block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Class means of ``|attr|`` and of ``attr`` over samples, NaN samples of a gene left out.

    Parameters
    ----------
    attr
        Attributions (sample, gene), lazy.
    labels
        Class of each sample of ``attr``, shape (sample,).
    classes
        Classes to average, in output order.
    block
        Samples read at once.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mean |attr|, mean attr)``, each float64 (class, gene).
    """
    n_c, n_g = len(classes), attr.sizes[GENE]
    abs_sum, sums, counts = np.zeros((n_c, n_g)), np.zeros((n_c, n_g)), np.zeros((n_c, n_g))
    index = {c: i for i, c in enumerate(classes)}
    for start in range(0, attr.sizes[SAMPLE], block):
        values = np.asarray(attr.isel({SAMPLE: slice(start, start + block)}).values, dtype=np.float64)
        for row, label in zip(values, labels[start : start + block], strict=True):
            i = index.get(label)
            if i is None:
                continue
            ok = ~np.isnan(row)
            abs_sum[i, ok] += np.abs(row[ok])
            sums[i, ok] += row[ok]
            counts[i, ok] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return abs_sum / counts, sums / counts


def _records(columns: dict[str, np.ndarray], dtype: str) -> np.recarray:
    return np.rec.fromarrays(list(columns.values()), names=list(columns), formats=[dtype] * len(columns))


def rank_genes_groups_entry(
    result: xr.Dataset, explainer: str, labels: np.ndarray, groupby: str, layer: str
) -> dict[str, Any]:
    """One ``uns`` entry in ``sc.tl.rank_genes_groups``'s layout for an explainer of a run.

    Parameters
    ----------
    result
        An explain result (``attr_<explainer>`` over sample, gene).
    explainer
        Explainer name.
    labels
        Class of each sample of ``result``, shape (sample,).
    groupby
        The obs column the classes come from.
    layer
        Name of the attribution layer in the AnnData.

    Returns
    -------
    dict
        ``names``, ``scores``, ``mean_attr``, NaN ``logfoldchanges``, ``pvals`` and ``pvals_adj``
        (record arrays, one field per class) and ``params``.
    """
    classes = sorted({str(c) for c in labels if str(c) != ""})
    genes = np.asarray(result[GENE].values).astype(str)
    score, signed = class_means(result[ATTR + explainer], labels.astype(str), classes)
    names, scores, means = {}, {}, {}
    for i, c in enumerate(classes):
        order = np.argsort(-np.nan_to_num(score[i], nan=-np.inf), kind="stable")
        names[c], scores[c], means[c] = genes[order], score[i, order], signed[i, order]
    width = max((len(g) for g in genes), default=1)
    return {
        "names": _records(names, f"U{width}"),
        "scores": _records(scores, "float64"),
        "mean_attr": _records(means, "float64"),
        **{
            c: _records({g: np.full(genes.size, np.nan) for g in classes}, "float64")
            for c in ("logfoldchanges", "pvals", "pvals_adj")
        },
        "params": {
            "groupby": groupby,
            "reference": "rest",
            "method": f"gexplain: class mean of |{explainer}| attribution",
            "use_raw": False,
            "layer": layer,
            "corr_method": "none",
        },
    }


def evaluation_tables(store_url: str) -> dict[str, dict[str, pd.DataFrame]]:
    """Every complete evaluation's tables, ``{evaluation: {table: DataFrame}}``, text as str."""
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for key, df in sorted(read_tables(store_url).items()):
        name, table = key.split("/", 1)
        frame = df.reset_index(drop=True).copy()
        for c in frame.columns:
            if frame[c].dtype == object:
                frame[c] = frame[c].astype(str)
        frame.columns = [str(c) for c in frame.columns]
        out.setdefault(name, {})[table.replace("/", "_")] = frame
    return out


def attribution_rankings(
    ds: xr.Dataset, results: dict[str, xr.Dataset], key: Any
) -> dict[str, dict[str, Any]]:
    """``{uns key: entry}`` for every explainer of every explain run.

    Parameters
    ----------
    ds
        The store (for the label column).
    results
        Explain results by run name.
    key
        Maps a name to a safe AnnData key (the export's own rule).
    """
    groupby = label_column(ds)
    store_labels = pd.Series(np.asarray(ds[groupby].values).astype(str), index=ds[SAMPLE].values.astype(str))
    out = {}
    for run, res in sorted(results.items()):
        labels = store_labels.reindex(np.asarray(res[SAMPLE].values).astype(str)).fillna("").to_numpy()
        for explainer in explainers_of(res):
            layer = f"attr_{key(run)}_{key(explainer)}"
            out[f"rank_{layer}"] = rank_genes_groups_entry(res, explainer, labels, groupby, layer)
    return out
