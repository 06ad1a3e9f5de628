"""What the report reads from the explain runs themselves: per source, the class means of the
signed attribution and the global importance of each gene, in one pass over sample blocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.evaluate.inputs import ATTR, attribution_sources, labels_for
from gexplain.pipelines.labels import labelled_samples
from gexplain.storage.schema import GENE, SAMPLE

BLOCK_VALUES = 8_000_000  # attribution values per sample block read (~32 MiB float32)


@dataclass
class SourceStats:
    """Per-gene summaries of one attribution source (``<run>:<explainer>``).

    Attributes
    ----------
    source
        Source name.
    genes
        Gene ids, shape (gene,).
    classes
        Class names (rows of ``signed_mean``).
    signed_mean
        (class, gene): mean over the class's samples of the signed attribution.
    importance
        (gene,): mean |attribution| over the labelled samples (the ground-truth ranking score).
    """

    source: str
    genes: np.ndarray
    classes: list[str]
    signed_mean: np.ndarray
    importance: np.ndarray

    def signed_table(self, genes: set[str] | None = None) -> pd.DataFrame:
        """Long table ``source``, ``label``, ``gene``, ``mean_attr`` (only ``genes`` when given)."""
        keep = np.ones(self.genes.size, bool) if genes is None else np.isin(self.genes, list(genes))
        c, g = np.meshgrid(np.arange(len(self.classes)), np.flatnonzero(keep), indexing="ij")
        return pd.DataFrame(
            {
                "source": self.source,
                "label": np.asarray(self.classes, dtype=object)[c.ravel()],
                "gene": self.genes[g.ravel()],
                "mean_attr": self.signed_mean[c.ravel(), g.ravel()],
            }
        )

    def in_top(self, k: int) -> pd.Series:
        """Bool per gene: among the ``k`` largest global importances (ties broken by gene order)."""
        order = np.argsort(-self.importance, kind="stable")[: min(k, self.genes.size)]
        mask = np.zeros(self.genes.size, bool)
        mask[order] = True
        return pd.Series(mask, index=self.genes, name=self.source)


def source_stats(ds: xr.Dataset, label: str, runs: dict[str, xr.Dataset]) -> list[SourceStats]:
    """Class-mean signed attribution and global importance of every source of ``runs``.

    Parameters
    ----------
    ds
        The expression store (its label column gives each sample's class).
    label
        The label column.
    runs
        Explain run name -> result Dataset.

    Returns
    -------
    list of SourceStats
        One per (run, explainer); unlabelled samples are left out.
    """
    out = []
    for src in attribution_sources(runs):
        res = runs[src.run]
        samples = np.asarray(res[SAMPLE].values).astype(str)
        labels = labels_for(ds, label, samples)
        keep = np.flatnonzero(labelled_samples(labels, label))
        labels = labels[keep]
        classes = sorted(set(labels))
        genes = np.asarray(res[GENE].values).astype(str)
        signed = np.zeros((len(classes), genes.size))
        total = np.zeros(genes.size)
        step = max(1, BLOCK_VALUES // max(genes.size, 1))
        code = np.searchsorted(classes, labels)
        for start in range(0, keep.size, step):
            a = np.asarray(res[ATTR + src.explainer].isel({SAMPLE: keep[start : start + step]}).values)
            a = a.astype(np.float64)
            block = code[start : start + step]
            for ci in np.unique(block):
                signed[ci] += a[block == ci].sum(axis=0)
            total += np.abs(a).sum(axis=0)
        counts = np.bincount(code, minlength=len(classes)).astype(np.float64)[:, None]
        out.append(
            SourceStats(
                source=src.name,
                genes=genes,
                classes=classes,
                signed_mean=signed / np.maximum(counts, 1.0),
                importance=total / max(keep.size, 1),
            )
        )
    return out
