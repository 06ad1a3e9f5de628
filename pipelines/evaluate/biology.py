"""Biology of attributions: per-class top genes, their overlap with DE, tissue-specific and
housekeeping genes against chance, and the genes hidden to DE.

Gene sets
---------
* shared top genes of a class: genes in the top-k (by absolute attribution) of at least
  ``min_samples`` (default 2) samples of that class;
* tissue-enhanced genes of a class (TissueEnrich / HPA rule): class mean expression >= 1 TPM and
  >= 4 times the mean of the other classes' means;
* housekeeping genes: class median TPM >= 1 in every class and max / min of the class medians < 2;
* DE genes of a class: padj < alpha in a DE contrast whose test level is that class.

Each overlap is compared with the overlap expected by chance when drawing the top set at random
from the gene universe: expectation ``n_a * n_b / N`` and the hypergeometric upper tail
``P(X >= overlap)`` (:func:`overlap_test`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from gexplain.pipelines.evaluate.reproducibility import top_k_indices
from scipy.stats import hypergeom


def overlap_test(set_a: np.ndarray, set_b: np.ndarray) -> dict[str, float]:
    """Overlap of two gene sets against chance.

    Parameters
    ----------
    set_a, set_b
        Boolean masks over the same gene universe, shape (gene,).

    Returns
    -------
    dict
        ``n_a``, ``n_b``, ``universe``, ``overlap``, ``expected`` (= n_a n_b / N), ``fold``
        (overlap / expected, NaN when expected is 0) and ``p_value`` = P(X >= overlap) for
        X ~ Hypergeom(N, n_b, n_a).
    """
    a = np.asarray(set_a, dtype=bool)
    b = np.asarray(set_b, dtype=bool)
    n_univ, n_a, n_b = a.size, int(a.sum()), int(b.sum())
    ov = int((a & b).sum())
    expected = n_a * n_b / n_univ if n_univ else float("nan")
    p = float(hypergeom.sf(ov - 1, n_univ, n_b, n_a)) if n_univ else float("nan")
    return {
        "n_a": n_a,
        "n_b": n_b,
        "universe": n_univ,
        "overlap": ov,
        "expected": expected,
        "fold": ov / expected if expected else float("nan"),
        "p_value": p,
    }


def top_k_membership(attr: np.ndarray, k: int) -> np.ndarray:
    """Boolean (sample, gene) mask of each sample's top-k genes by absolute attribution.

    Parameters
    ----------
    attr
        Shape (sample, gene).
    k
        Top-k size (clipped to the number of genes).
    """
    a = np.asarray(attr)
    idx = top_k_indices(a, min(k, a.shape[1]), absolute=True)
    mask = np.zeros(a.shape, dtype=bool)
    mask[np.arange(a.shape[0])[:, None], idx] = True
    return mask


@dataclass
class TopGeneCounts:
    """Per-class accumulators of top-k membership, filled block by block over samples.

    Attributes
    ----------
    classes
        Class names (row order).
    n_top
        (class, gene) int64: samples of the class with the gene in their top-k.
    sum_abs
        (class, gene) float64: sum over the class's samples of |attribution|.
    n
        (class,) int64: samples seen per class.
    """

    classes: list[str]
    n_top: np.ndarray
    sum_abs: np.ndarray
    n: np.ndarray

    @classmethod
    def empty(cls, classes: list[str], n_genes: int) -> TopGeneCounts:
        """Zeroed accumulators for ``classes`` over ``n_genes`` genes."""
        c = len(classes)
        return cls(
            list(classes), np.zeros((c, n_genes), np.int64), np.zeros((c, n_genes)), np.zeros(c, np.int64)
        )

    def add(self, attr: np.ndarray, labels: np.ndarray, k: int) -> TopGeneCounts:
        """Add a block of samples: ``attr`` (sample, gene) and their ``labels`` (sample,)."""
        a = np.abs(np.asarray(attr, dtype=np.float64))
        member = top_k_membership(a, k)
        labels = np.asarray(labels).astype(str)
        for ci, cls in enumerate(self.classes):
            sel = labels == cls
            if sel.any():
                self.n_top[ci] += member[sel].sum(axis=0)
                self.sum_abs[ci] += a[sel].sum(axis=0)
                self.n[ci] += int(sel.sum())
        return self

    def table(self, genes: np.ndarray, min_samples: int = 2) -> pd.DataFrame:
        """Rows (class, gene) for genes in at least one sample's top-k.

        Columns ``label``, ``gene``, ``mean_abs_attr`` (class mean |attr|), ``n_top`` (samples with
        the gene in their top-k), ``frac_top`` (``n_top`` / class size), ``shared``
        (``n_top >= min_samples``), ``rank`` (1 = largest mean |attr| within the class); sorted by
        label then rank.
        """
        genes = np.asarray(genes).astype(str)
        frames = []
        for ci, cls in enumerate(self.classes):
            if self.n[ci] == 0:
                continue
            mean_abs = self.sum_abs[ci] / self.n[ci]
            hit = np.nonzero(self.n_top[ci] > 0)[0]
            order = hit[np.argsort(-mean_abs[hit], kind="stable")]
            frames.append(
                pd.DataFrame(
                    {
                        "label": cls,
                        "gene": genes[order],
                        "mean_abs_attr": mean_abs[order],
                        "n_top": self.n_top[ci, order],
                        "frac_top": self.n_top[ci, order] / self.n[ci],
                        "shared": self.n_top[ci, order] >= min_samples,
                        "rank": np.arange(1, order.size + 1),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def class_top_genes(
    attr: np.ndarray, labels: np.ndarray, genes: np.ndarray, *, k: int = 100, min_samples: int = 2
) -> pd.DataFrame:
    """Per class: genes in some sample's top-k, their mean |attribution| and top-k counts.

    Parameters
    ----------
    attr
        Attributions (sample, gene) for each sample's own class.
    labels
        Class of each sample, shape (sample,).
    genes
        Gene ids, shape (gene,).
    k
        Per-sample top-k size.
    min_samples
        A gene is a *shared* top gene of a class when at least this many of its samples rank it
        in their top-k.

    Returns
    -------
    pandas.DataFrame
        See :meth:`TopGeneCounts.table`.
    """
    classes = sorted(set(np.asarray(labels).astype(str)))
    counts = TopGeneCounts.empty(classes, np.asarray(attr).shape[1]).add(attr, labels, k)
    return counts.table(genes, min_samples)


def class_expression_stats(tpm: np.ndarray, labels: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Class means and medians of expression.

    Parameters
    ----------
    tpm
        Expression in TPM, shape (sample, gene).
    labels
        Class of each sample, shape (sample,).

    Returns
    -------
    classes, means, medians
        Sorted class names; (class, gene) arrays of means and medians in TPM.
    """
    labels = np.asarray(labels).astype(str)
    classes = sorted(set(labels))
    x = np.asarray(tpm, dtype=np.float64)
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])
    medians = np.stack([np.median(x[labels == c], axis=0) for c in classes])
    return classes, means, medians


def tissue_enhanced(means: np.ndarray, *, fold: float = 4.0, min_tpm: float = 1.0) -> np.ndarray:
    """TissueEnrich's tissue-enhanced rule per class.

    Parameters
    ----------
    means
        Class mean expression, shape (class, gene), TPM.
    fold
        Required ratio of the class mean to the mean of the other classes' means.
    min_tpm
        Minimum class mean (TPM).

    Returns
    -------
    numpy.ndarray
        Bool (class, gene): gene is enhanced in that class.
    """
    m = np.asarray(means, dtype=np.float64)
    n_cls = m.shape[0]
    if n_cls < 2:
        return np.zeros(m.shape, dtype=bool)
    others = (m.sum(axis=0, keepdims=True) - m) / (n_cls - 1)
    return (m >= min_tpm) & (m >= fold * others)


def housekeeping(medians: np.ndarray, *, min_tpm: float = 1.0, max_fold: float = 2.0) -> np.ndarray:
    """Housekeeping genes: expressed in every class at a similar level.

    Parameters
    ----------
    medians
        Class median expression, shape (class, gene), TPM.
    min_tpm
        Every class median must be at least this.
    max_fold
        The ratio of the largest to the smallest class median must be below this.

    Returns
    -------
    numpy.ndarray
        Bool (gene,).
    """
    m = np.asarray(medians, dtype=np.float64)
    lo, hi = m.min(axis=0), m.max(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (lo >= min_tpm) & (hi / np.where(lo > 0, lo, np.nan) < max_fold)


def class_overlaps(
    top: pd.DataFrame,
    genes: np.ndarray,
    classes: list[str],
    enhanced: np.ndarray | None,
    house: np.ndarray | None,
    de_called: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Overlap of each class's shared top genes with its DE, tissue-enhanced and housekeeping genes.

    Parameters
    ----------
    top
        :func:`class_top_genes` output.
    genes
        Gene universe, shape (gene,).
    classes
        Class names in the row order of ``enhanced``.
    enhanced
        Bool (class, gene) from :func:`tissue_enhanced`, or None when no TPM is available.
    house
        Bool (gene,) from :func:`housekeeping`, or None.
    de_called
        Class -> bool (gene,) DE genes of that class versus the rest (padj < alpha).

    Returns
    -------
    pandas.DataFrame
        One row per (class, gene set): ``label``, ``gene_set`` (de / tissue_enhanced /
        housekeeping), and the :func:`overlap_test` columns (``n_a`` = shared top genes).
    """
    genes = np.asarray(genes).astype(str)
    pos = {g: i for i, g in enumerate(genes)}
    rows = []
    for ci, cls in enumerate(classes):
        shared = np.zeros(genes.size, dtype=bool)
        sel = top[(top["label"] == cls) & top["shared"]]["gene"]
        shared[[pos[g] for g in sel]] = True
        sets: dict[str, np.ndarray] = {}
        if cls in de_called:
            sets["de"] = de_called[cls]
        if enhanced is not None:
            sets["tissue_enhanced"] = enhanced[ci]
        if house is not None:
            sets["housekeeping"] = house
        for name, mask in sets.items():
            rows.append({"label": cls, "gene_set": name, **overlap_test(shared, mask)})
    return pd.DataFrame(rows)


def hidden_to_de(
    attr: np.ndarray,
    attr_std: np.ndarray | None,
    attr_count: np.ndarray | None,
    labels: np.ndarray,
    genes: np.ndarray,
    de: pd.DataFrame,
    test_level: str,
    *,
    k: int = 100,
    min_frac: float = 0.5,
    min_z: float = 3.0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Genes with strong, reproducible attribution in a class that DE does not call.

    A gene of class ``test_level`` is *strong* when it is in the top-k of at least ``min_frac`` of
    the class's samples, *reproducible* when its class-mean |attribution| is at least ``min_z``
    standard errors from zero (standard error from the per-sample standard deviation over repeats
    x references x models and their count, when stored), and *hidden to DE* when its DE padj is
    not below ``alpha`` (or undefined).

    Parameters
    ----------
    attr, attr_std
        (sample, gene) attribution means and standard deviations over aggregated items.
    attr_count
        (sample,) number of aggregated items.
    labels, genes
        Sample classes (sample,) and gene ids (gene,).
    de
        DE table indexed by gene with ``padj``, ``log2FoldChange``, ``baseMean``.
    test_level
        The class tested in the contrast.
    k, min_frac, min_z, alpha
        Thresholds above.

    Returns
    -------
    pandas.DataFrame
        Columns gene, frac_top, mean_abs_attr, z, padj, log2FoldChange, baseMean; sorted by
        mean_abs_attr descending.
    """
    labels = np.asarray(labels).astype(str)
    genes = np.asarray(genes).astype(str)
    sel = labels == test_level
    if not sel.any():
        return pd.DataFrame(
            columns=["gene", "frac_top", "mean_abs_attr", "z", "padj", "log2FoldChange", "baseMean"]
        )
    a = np.abs(np.asarray(attr, dtype=np.float64)[sel])
    frac = top_k_membership(a, k).mean(axis=0)
    mean_abs = a.mean(axis=0)
    if attr_std is not None and attr_count is not None:
        sd = np.asarray(attr_std, dtype=np.float64)[sel]
        cnt = np.maximum(np.asarray(attr_count, dtype=np.float64)[sel], 1.0)[:, None]
        se = np.sqrt(((sd**2) / cnt).sum(axis=0)) / sel.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, mean_abs / np.where(se > 0, se, 1.0), np.inf)
    else:
        z = np.full(genes.size, np.inf)
    de_aligned = de.reindex(genes)
    padj = de_aligned["padj"].to_numpy(dtype=np.float64)
    keep = (frac >= min_frac) & (z >= min_z) & ~(np.nan_to_num(padj, nan=1.0) < alpha)
    idx = np.nonzero(keep)[0]
    idx = idx[np.argsort(-mean_abs[idx], kind="stable")]
    return pd.DataFrame(
        {
            "gene": genes[idx],
            "frac_top": frac[idx],
            "mean_abs_attr": mean_abs[idx],
            "z": z[idx],
            "padj": padj[idx],
            "log2FoldChange": de_aligned["log2FoldChange"].to_numpy(dtype=np.float64)[idx],
            "baseMean": de_aligned["baseMean"].to_numpy(dtype=np.float64)[idx],
        }
    )
