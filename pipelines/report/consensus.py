"""Consensus of attribution sources: the genes every explainer, seed and model agree on.

A *source* is one explainer of one explain run (``<run>:<explainer>``; runs differ in seed,
model set or references). Everything here is a pure function on small tables:

* :func:`consensus_top_genes`: per class, genes ranked by how many sources put them in their
  top k (the *agreement*), then by mean rank over the sources;
* :func:`consensus_sign`: the direction of the signed class-mean attribution, ``+`` / ``-`` when
  every source agrees, ``mixed`` otherwise;
* :func:`de_calls`: whether each (class, gene) is called by a DE test of that class
  (``padj < alpha``) and by which methods;
* :func:`hidden_genes`: the hidden-to-DE table deduplicated over sources and contrasts, with the
  number of sources that flag each gene.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NOT_TESTED = "not tested"


def consensus_top_genes(top: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per class, the genes in the top ``k`` of at least one source, in consensus order.

    Parameters
    ----------
    top
        Per-source class rankings with columns ``source``, ``label``, ``gene`` and ``rank``
        (1 = largest class-mean |attribution|), as in the evaluation's ``top_genes`` table.
    k
        Top-k size of a source's ranking.

    Returns
    -------
    pandas.DataFrame
        Columns ``label``, ``consensus_rank`` (1 = best), ``gene``, ``agreement`` (sources with the
        gene at rank <= k), ``n_sources`` (sources ranking the class), ``mean_rank`` (mean over
        those sources of the gene's rank, a rank above k or a missing one counted as k + 1).
        Ordered by label, then agreement (most first), mean rank, gene id.
    """
    cols = ["label", "consensus_rank", "gene", "agreement", "n_sources", "mean_rank"]
    if top.empty:
        return pd.DataFrame(columns=cols)
    t = (
        top.assign(
            label=top["label"].astype(str), gene=top["gene"].astype(str), source=top["source"].astype(str)
        )
        .groupby(["source", "label", "gene"], as_index=False)["rank"]
        .min()  # one rank per source and gene, even when tables of several evaluations are stacked
    )
    frames = []
    for label, group in t.groupby("label", sort=True):
        n_sources = group["source"].nunique()
        best = group[group["rank"] <= k]
        ranks = best.groupby("gene")["rank"]
        agreement = best.groupby("gene")["source"].nunique()
        # sources missing a gene count it at k + 1
        mean_rank = (ranks.sum() + (n_sources - ranks.count()) * (k + 1)) / n_sources
        table = pd.DataFrame(
            {"gene": agreement.index, "agreement": agreement.to_numpy(), "mean_rank": mean_rank.to_numpy()}
        ).sort_values(["agreement", "mean_rank", "gene"], ascending=[False, True, True], kind="stable")
        frames.append(
            table.assign(label=label, n_sources=n_sources, consensus_rank=np.arange(1, len(table) + 1))
        )
    return pd.concat(frames, ignore_index=True)[cols]


def consensus_sign(signed: pd.DataFrame) -> pd.DataFrame:
    """The direction of each (class, gene)'s signed class-mean attribution over sources.

    Parameters
    ----------
    signed
        Columns ``source``, ``label``, ``gene``, ``mean_attr`` (mean over the class's samples of
        the signed attribution, one row per source).

    Returns
    -------
    pandas.DataFrame
        Columns ``label``, ``gene``, ``sign`` (``+`` when every source's mean is positive, ``-``
        when every one is negative, ``mixed`` otherwise) and ``mean_attr`` (mean over sources).
    """
    if signed.empty:
        return pd.DataFrame(columns=["label", "gene", "sign", "mean_attr"])
    g = signed.assign(label=signed["label"].astype(str), gene=signed["gene"].astype(str)).groupby(
        ["label", "gene"], sort=True
    )["mean_attr"]
    out = g.agg(lo="min", hi="max", mean_attr="mean").reset_index()
    out["sign"] = np.where(out["lo"] > 0, "+", np.where(out["hi"] < 0, "-", "mixed"))
    return out[["label", "gene", "sign", "mean_attr"]]


def de_calls(de: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Whether a DE test of each class calls each gene, and which methods do.

    Parameters
    ----------
    de
        Columns ``label`` (the class a contrast tests), ``method``, ``gene``, ``padj`` (NaN = not
        called), one row per (contrast, gene).
    alpha
        Significance level on ``padj``.

    Returns
    -------
    pandas.DataFrame
        Columns ``label``, ``gene``, ``de_called`` (True when some method has ``padj < alpha``),
        ``de_methods`` (those methods, sorted, comma-separated; ``""`` when none) and
        ``de_tested`` (every method that tested the class, sorted, comma-separated).
    """
    if de.empty:
        return pd.DataFrame(columns=["label", "gene", "de_called", "de_methods", "de_tested"])
    d = de.assign(
        label=de["label"].astype(str),
        gene=de["gene"].astype(str),
        method=de["method"].astype(str),
        called=np.nan_to_num(de["padj"].to_numpy(dtype=np.float64), nan=1.0) < alpha,
    )
    tested = d.groupby("label")["method"].agg(lambda m: ", ".join(sorted(set(m))))
    rows = []
    for (label, gene), group in d.groupby(["label", "gene"], sort=True):
        methods = sorted(set(group.loc[group["called"], "method"]))
        rows.append(
            {
                "label": label,
                "gene": gene,
                "de_called": bool(methods),
                "de_methods": ", ".join(methods),
                "de_tested": tested[label],
            }
        )
    return pd.DataFrame(rows)


def annotate(consensus: pd.DataFrame, sign: pd.DataFrame, de: pd.DataFrame) -> pd.DataFrame:
    """The consensus table with each gene's sign and DE call.

    Parameters
    ----------
    consensus
        :func:`consensus_top_genes` output.
    sign
        :func:`consensus_sign` output (genes without a row get sign ``""``).
    de
        :func:`de_calls` output; a class no contrast tests gets ``de_call`` = ``"not tested"``.

    Returns
    -------
    pandas.DataFrame
        ``consensus`` plus ``sign``, ``mean_attr`` and ``de_call`` (``"yes: <methods>"``,
        ``"no (<methods tested>)"`` or ``"not tested"``), in ``consensus`` order.
    """
    keys = ["label", "gene"]
    out = consensus.merge(sign, on=keys, how="left").merge(de, on=keys, how="left")
    out["sign"] = out["sign"].fillna("")
    called = out["de_called"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    tested = out["de_tested"].notna().to_numpy()
    out["de_call"] = np.where(
        called,
        "yes: " + out["de_methods"].fillna("").astype(str),
        np.where(tested, "no (" + out["de_tested"].fillna("").astype(str) + ")", NOT_TESTED),
    )
    return out.drop(columns=["de_called", "de_methods", "de_tested"])


def hidden_genes(hidden: pd.DataFrame) -> pd.DataFrame:
    """The hidden-to-DE rows deduplicated to one row per gene.

    Parameters
    ----------
    hidden
        The evaluation's ``hidden_to_de`` table: columns ``source``, ``contrast``, ``label``,
        ``gene``, ``mean_abs_attr``, ``padj`` (one row per source, contrast and gene).

    Returns
    -------
    pandas.DataFrame
        Columns ``gene``, ``n_sources`` (distinct sources flagging it), ``classes`` and
        ``contrasts`` (sorted, comma-separated), ``mean_abs_attr`` (largest over rows) and
        ``padj`` (smallest over rows); ordered by ``n_sources`` (most first), then
        ``mean_abs_attr`` (largest first), then gene id.
    """
    cols = ["gene", "n_sources", "classes", "contrasts", "mean_abs_attr", "padj"]
    if hidden.empty:
        return pd.DataFrame(columns=cols)
    h = hidden.assign(gene=hidden["gene"].astype(str))
    g = h.groupby("gene", sort=True)
    out = pd.DataFrame(
        {
            "n_sources": g["source"].nunique(),
            "classes": g["label"].agg(lambda v: ", ".join(sorted(set(map(str, v))))),
            "contrasts": g["contrast"].agg(lambda v: ", ".join(sorted(set(map(str, v))))),
            "mean_abs_attr": g["mean_abs_attr"].max(),
            "padj": g["padj"].min(),
        }
    ).reset_index()
    out = out.sort_values(
        ["n_sources", "mean_abs_attr", "gene"], ascending=[False, False, True], kind="stable"
    )
    return out.reset_index(drop=True)[cols]
