"""The first screen's findings, as pure functions on small tables.

* :func:`de_missed_recovery`: of the simulator's informative genes that no DE result calls, how
  many attribution puts in its top k ("attribution recovers X of Y informative genes that DE
  misses");
* :func:`auprc_by_kind`: AUPRC of attribution and of DE per ground-truth subset;
* :func:`saturation_verdicts`: per explainer and axis, is the saturation curve flat (saturated)
  at the given threshold, preferring Zhao et al.'s variants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from gexplain.pipelines.evaluate.saturation import saturation_point

INTRA = "intra_model"


def de_missed_recovery(truth: pd.DataFrame, de_called: pd.Series, in_top: pd.DataFrame) -> pd.DataFrame:
    """Informative genes DE misses, and those of them attribution recovers.

    Parameters
    ----------
    truth
        Indexed by gene: ``informative`` (bool) and optionally ``mode`` (the kind of signal of an
        informative gene, e.g. ``linear`` / ``nonlinear``).
    de_called
        Indexed by gene (bool): called by at least one DE result (``padj < alpha``).
    in_top
        Indexed by gene, one bool column per attribution source: the gene is in that source's
        top k by global importance (mean |attribution| over samples).

    Returns
    -------
    pandas.DataFrame
        One row per subset (``all``, then each mode in sorted order): ``subset``,
        ``n_informative``, ``n_de_missed`` (informative genes no DE result calls; Y) and
        ``n_recovered`` (those in the top k of at least half of the ``n_sources`` sources; X).
    """
    genes = truth.index.astype(str)
    inf = truth["informative"].to_numpy(dtype=bool)
    called = de_called.reindex(genes).fillna(False).to_numpy(dtype=bool)
    top = in_top.reindex(genes).fillna(False).to_numpy(dtype=bool)
    n_sources = top.shape[1]
    majority = 2 * top.sum(axis=1) >= n_sources if n_sources else np.zeros(genes.size, bool)
    subsets = {"all": inf}
    if "mode" in truth:
        mode = truth["mode"].astype(str).to_numpy()
        subsets |= {m: inf & (mode == m) for m in sorted(set(mode[inf]))}
    rows = []
    for name, sel in subsets.items():
        missed = sel & ~called
        rows.append(
            {
                "subset": name,
                "n_informative": int(sel.sum()),
                "n_de_missed": int(missed.sum()),
                "n_recovered": int((missed & majority).sum()),
                "n_sources": n_sources,
            }
        )
    return pd.DataFrame(rows)


def auprc_by_kind(ground_truth: pd.DataFrame) -> pd.DataFrame:
    """Mean AUPRC of the attribution sources and of the DE results, per subset.

    Parameters
    ----------
    ground_truth
        The evaluation's ``ground_truth`` table (``source``, ``kind`` = attribution / de,
        ``subset``, ``auprc``).

    Returns
    -------
    pandas.DataFrame
        Columns ``subset``, ``auprc_attribution``, ``auprc_de`` (NaN when that kind is absent),
        ``n_attribution`` and ``n_de`` (sources averaged), in the table's subset order.
    """
    rows = []
    for subset in dict.fromkeys(ground_truth["subset"].astype(str)):
        t = ground_truth[ground_truth["subset"].astype(str) == subset]
        row: dict[str, object] = {"subset": subset}
        for kind in ("attribution", "de"):
            vals = t.loc[t["kind"] == kind, "auprc"].to_numpy(dtype=np.float64)
            row[f"auprc_{kind}"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            row[f"n_{kind}"] = int(vals.size)
        rows.append(row)
    return pd.DataFrame(rows)


def paper_variants(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a saturation table to show first: per (explainer, axis) Zhao et al.'s variants
    (``inter_model``, ``resampled``) where they exist, the ``intra_model`` curve otherwise."""
    if "variant" not in table:
        return table
    keep = []
    for _, group in table.groupby(["explainer", "axis"], sort=True):
        paper = group[group["variant"] != INTRA]
        keep.append(paper if not paper.empty else group)
    return pd.concat(keep, ignore_index=True)


def saturation_verdicts(curves: pd.DataFrame, tol: float) -> pd.DataFrame:
    """Saturated or not, per saturation curve (paper variants first, :func:`paper_variants`).

    A curve is *saturated* at the first n whose doubling to 2n gains less than ``tol`` in mean
    Spearman (:func:`gexplain.pipelines.evaluate.saturation.saturation_point`); *not saturated*
    when it has a doubling and none gains that little; no verdict without a doubling on its grid.

    Parameters
    ----------
    curves
        The evaluation's ``saturation_curves`` table (``curve``, ``explainer``, ``axis``,
        ``variant``, ``n_models``, ``n``, ``spearman_mean``).
    tol
        Gain per doubling below which a curve is saturated.

    Returns
    -------
    pandas.DataFrame
        Columns ``explainer``, ``axis``, ``variant``, ``n_models``, ``points``, ``max_n``,
        ``saturated`` (bool, NaN without a verdict), ``saturation_n`` (NaN unless saturated) and
        ``last_gain`` (Spearman gain of the last doubling on the grid, NaN without one).
    """
    rows = []
    for name, c in curves.groupby("curve", sort=True):
        c = c.sort_values("n")
        values = dict(zip(c["n"].astype(int), c["spearman_mean"].astype(float), strict=True))
        doublings = [n for n in values if 2 * n in values]
        point = saturation_point(c, "spearman_mean", tol)
        first = c.iloc[0]
        rows.append(
            {
                "curve": name,
                "explainer": first.get("explainer", name),
                "axis": first.get("axis", ""),
                "variant": first.get("variant", ""),
                "n_models": first.get("n_models", np.nan),
                "points": len(c),
                "max_n": int(c["n"].max()),
                "saturated": (point is not None) if doublings else np.nan,
                "saturation_n": np.nan if point is None else point,
                "last_gain": values[2 * doublings[-1]] - values[doublings[-1]] if doublings else np.nan,
            }
        )
    table = paper_variants(pd.DataFrame(rows)) if rows else pd.DataFrame()
    return table.drop(columns="curve", errors="ignore")
