"""The report's first screen: the answers, each linking to the section with the evidence.

Four cards: how accurate the models are; how reproducible the attributions are and how far from
saturation; the top genes of each class; how many strongly attributed genes DE misses. Plus a
gene search box that filters every gene table of the page.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from gexplain.pipelines.report.html import Section, esc

MAX_CLASSES = 8
TOP_GENES = 5


def _num(value: float) -> str:
    """Two decimals for the headline numbers (accuracy, Spearman, overlap, gains)."""
    return "n/a" if not np.isfinite(value) else f"{value:.2f}"


def _card(title: str, link: str, body: str) -> str:
    return (
        f'<div class="card"><h3><a href="#{esc(link)}">{esc(title)}</a></h3>{body}'
        f'<p class="note"><a href="#{esc(link)}">details</a></p></div>'
    )


def _missing(text: str) -> str:
    return f'<p class="missing">not computed: {esc(text)}</p>'


def _mini_table(header: list[str], rows: list[list[str]], gene_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f'<th class="text">{esc(h)}</th>' for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="text{" g" if i in gene_cols else ""}">{esc(c)}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    genes = " genes" if gene_cols else ""
    return f'<table class="data{genes}" id="t-summary-{len(header)}-{len(rows)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def models_card(metrics: pd.DataFrame | None) -> str:
    """Held-out accuracy per model set: mean and range over replicates, macro-F1."""
    if metrics is None or metrics.empty or "accuracy" not in metrics:
        return _card("Model accuracy", "models", _missing("no trained models with held-out metrics"))
    parts = []
    for model_set, t in metrics.groupby("model_set", sort=True):
        acc = t["accuracy"].to_numpy(dtype=np.float64)
        f1 = t["macro_f1"].to_numpy(dtype=np.float64) if "macro_f1" in t else np.array([np.nan])
        arch = ", ".join(sorted(set(t["arch"].astype(str)))) if "arch" in t else ""
        spread = f" (range {_num(acc.min())}–{_num(acc.max())})" if acc.size > 1 else ""
        parts.append(
            f'<p><span class="big">{esc(_num(float(np.nanmean(acc))))}</span> held-out accuracy, '
            f"{esc(model_set)} ({esc(arch)}, {acc.size} replicate{'s' if acc.size != 1 else ''}){esc(spread)}; "
            f"macro-F1 {esc(_num(float(np.nanmean(f1))))}</p>"
        )
    return _card("Model accuracy", "models", "".join(parts))


def reproducibility_card(
    classes: pd.DataFrame | None, curves: pd.DataFrame | None, summary: pd.DataFrame | None
) -> str:
    """Spearman and top-k overlap between runs, and each saturation curve's distance from its plateau."""
    parts = []
    if classes is None:
        parts.append(_missing("reproducibility (needs two explain runs and the evaluate stage)"))
    else:
        overall = classes[classes["label"].astype(str) == "all"]
        for row in overall.itertuples(index=False):
            parts.append(
                f'<p><span class="big">{esc(_num(float(row.spearman_mean)))}</span> mean per-sample Spearman of |attribution| '
                f"between runs {esc(row.run_a)} and {esc(row.run_b)} ({esc(row.explainer)}); top-{esc(row.k)} "
                f"overlap {esc(_num(float(row.top_k_overlap_mean)))}</p>"
            )
        by_class = classes[classes["label"].astype(str) != "all"]
        if not by_class.empty:
            worst = by_class.sort_values("spearman_mean").iloc[0]
            parts.append(
                f"<p>least reproducible class: {esc(worst['label'])} "
                f"(Spearman {esc(_num(float(worst['spearman_mean'])))})</p>"
            )
    if summary is None or curves is None:
        parts.append(_missing("saturation (enable saturation in the evaluate stage)"))
    else:
        for row in _paper_curves_first(summary).itertuples(index=False):
            curve = curves[curves["curve"] == row.curve].sort_values("n")
            if pd.notna(row.saturation_n_spearman):
                text = f"saturated at n = {int(row.saturation_n_spearman)} of {int(row.max_n)} aggregated"
            elif len(curve) >= 2:
                gain = float(curve["spearman_mean"].iloc[-1] - curve["spearman_mean"].iloc[-2])
                text = (
                    f"not saturated: the last doubling (n = {int(curve['n'].iloc[-2])} → {int(curve['n'].iloc[-1])}) "
                    f"still gained {gain:+.3f} Spearman; aggregate more"
                )
            else:
                text = "too few points to tell"
            parts.append(f"<p>{esc(row.curve)}{esc(_variant_note(row))}: {esc(text)}</p>")
    return _card("Reproducibility and saturation", "reproducibility", "".join(parts))


def _paper_curves_first(summary: pd.DataFrame) -> pd.DataFrame:
    """The saturation rows the first screen shows: per (explainer, axis) the paper's variant
    (inter-model replicates, resampled models) when it exists, the intra-model one otherwise."""
    if "variant" not in summary:
        return summary
    keep = []
    for _, group in summary.groupby(["explainer", "axis"], sort=True):
        paper = group[group["variant"] != "intra_model"]
        keep.append(paper if not paper.empty else group)
    return pd.concat(keep, ignore_index=True)


def _variant_note(row: object) -> str:
    variant, n_models = getattr(row, "variant", None), getattr(row, "n_models", None)
    if variant == "inter_model":
        return f" (replicates of {int(n_models)} models, as Zhao et al.; the paper uses 5)"
    if variant == "resampled":
        return (
            f" (K = max(M/n, 4) replicates of random subsets of M = {int(n_models)} models, as Zhao et al.)"
        )
    if variant == "intra_model":
        return " (one model's items in disjoint subsets: tends to 1, not comparable with Zhao et al.)"
    return ""


def top_genes_card(top: pd.DataFrame | None, symbols: dict[str, str]) -> str:
    """The first attribution source's top genes of each class (by rank)."""
    if top is None or top.empty:
        return _card(
            "Top genes per class", "top_genes", _missing("no top-gene table (run evaluate after explain)")
        )
    sources = sorted(top["source"].astype(str).unique())
    source = sources[0]
    t = top[top["source"].astype(str) == source]
    labels = sorted(t["label"].astype(str).unique())
    rows = []
    for label in labels[:MAX_CLASSES]:
        best = t[t["label"].astype(str) == label].sort_values("rank").head(TOP_GENES)
        rows.append([label, ", ".join(symbols.get(str(g), str(g)) for g in best["gene"])])
    more = (
        f'<p class="note">{len(labels) - MAX_CLASSES} more classes in the section</p>'
        if len(labels) > MAX_CLASSES
        else ""
    )
    others = f" ({len(sources) - 1} more sources in the section)" if len(sources) > 1 else ""
    body = (
        f"<p>from {esc(source)}{esc(others)}</p>"
        + _mini_table(["class", f"top {TOP_GENES} genes"], rows, (1,))
        + more
    )
    return _card("Top genes per class", "top_genes", body)


def hidden_card(hidden: pd.DataFrame | None, top: pd.DataFrame | None) -> str:
    """How many strongly, reproducibly attributed genes DE does not call, per contrast."""
    if hidden is None:
        return _card(
            "Hidden to DE", "hidden", _missing("hidden-to-DE genes (needs DE, explain and evaluate)")
        )
    n_hidden = hidden["gene"].astype(str).nunique()
    shared = top[top["shared"].astype(bool)] if top is not None and "shared" in top else None
    n_shared = shared["gene"].astype(str).nunique() if shared is not None else 0
    of = f" of the {n_shared} genes in the top of most samples of a class" if n_shared else ""
    parts = [
        f'<p><span class="big">{n_hidden}</span> genes{esc(of)} have strong, reproducible attribution that DE '
        "does not call significant</p>"
    ]
    counts = hidden.groupby(["source", "contrast"], as_index=False)["gene"].nunique()
    rows = [[str(r.contrast), str(r.source), str(r.gene)] for r in counts.head(6).itertuples(index=False)]
    parts.append(_mini_table(["contrast", "attribution", "hidden genes"], rows))
    return _card("Hidden to DE", "hidden", "".join(parts))


def summary_section(
    metrics: pd.DataFrame | None,
    tables: dict[str, pd.DataFrame | None],
    symbols: dict[str, str],
) -> Section:
    """The first section: four answer cards and the gene search box.

    Parameters
    ----------
    metrics
        Per-replicate model metrics (``model_set``, ``arch``, ``accuracy``, ``macro_f1``) or None.
    tables
        Evaluation tables by name (``reproducibility_classes``, ``saturation_curves``,
        ``saturation_summary``, ``top_genes``, ``hidden_to_de``); None where absent.
    symbols
        Gene id -> symbol.
    """
    s = Section(sid="summary", title="Summary")
    s.raw(
        '<div class="search"><label>Find a gene: <input id="gene-search" type="search" '
        'placeholder="symbol or id, e.g. ESR1" aria-label="find a gene"></label> '
        '<span id="gene-search-status" class="note"></span></div>'
    )
    top = tables.get("top_genes")
    cards = [
        models_card(metrics),
        reproducibility_card(
            tables.get("reproducibility_classes"),
            tables.get("saturation_curves"),
            tables.get("saturation_summary"),
        ),
        top_genes_card(top, symbols),
        hidden_card(tables.get("hidden_to_de"), top),
    ]
    s.raw(f'<div class="cards">{"".join(cards)}</div>')
    return s
