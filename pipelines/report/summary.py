"""The report's first screen: the answers, each linking to the section with the evidence.

Left, the consensus top genes of each class over every attribution source, with the sign of the
attribution, the agreement of the sources and the DE call, then the genes hidden to DE
(deduplicated). Right, what attribution finds that DE misses (when the store has ground truth),
reproducibility with a saturated / not-saturated verdict, and the models' accuracy. Plus a
gene search box that filters every gene table of the page. Everything fits a 1400 x 900 window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from gexplain.pipelines.report.consensus import NOT_TESTED
from gexplain.pipelines.report.html import Section, esc, header_cell

MAX_CLASSES = 5
TOP_GENES = 5
HIDDEN_SHOWN = 8
AXES = ("repeats", "references", "models")


@dataclass
class Answers:
    """What the first screen shows (each None where its inputs were not computed).

    Attributes
    ----------
    metrics
        Per-replicate model metrics (``model_set``, ``arch``, ``accuracy``, ``macro_f1``).
    consensus
        :func:`gexplain.pipelines.report.consensus.annotate` output with a ``symbol`` column.
    consensus_k
        Top-k size of the agreement.
    alpha
        DE significance level.
    de_missed, auprc
        :func:`gexplain.pipelines.report.findings.de_missed_recovery` and
        :func:`~gexplain.pipelines.report.findings.auprc_by_kind` outputs (ground truth only).
    truth_k
        Top-k size of the ground-truth recovery (the number of informative genes).
    reproducibility
        The evaluation's ``reproducibility_classes`` table.
    verdicts
        :func:`gexplain.pipelines.report.findings.saturation_verdicts` output.
    tol, tol_origin
        The saturation threshold and where it comes from (run config or default).
    hidden
        :func:`gexplain.pipelines.report.consensus.hidden_genes` output with a ``symbol`` column.
    hidden_sources, hidden_contrasts
        Sources and DE contrasts the hidden-to-DE table covers.
    """

    metrics: pd.DataFrame | None = None
    consensus: pd.DataFrame | None = None
    consensus_k: int = 15
    alpha: float = 0.05
    de_missed: pd.DataFrame | None = None
    auprc: pd.DataFrame | None = None
    truth_k: int | None = None
    reproducibility: pd.DataFrame | None = None
    verdicts: pd.DataFrame | None = None
    tol: float = 0.01
    tol_origin: str = "the evaluate default"
    hidden: pd.DataFrame | None = None
    hidden_sources: int = 0
    hidden_contrasts: int = 0


def _num(value: float) -> str:
    """Two decimals for the headline numbers (accuracy, Spearman, overlap, AUPRC)."""
    return "n/a" if not np.isfinite(value) else f"{value:.2f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _card(title: str, link: str, body: str) -> str:
    return (
        f'<div class="card"><h3><a href="#{esc(link)}">{esc(title)}</a></h3>{body}'
        f'<p class="note"><a href="#{esc(link)}">details</a></p></div>'
    )


def _missing(text: str) -> str:
    return f'<p class="missing">not computed: {esc(text)}</p>'


def _mini_table(name: str, header: list[str], rows: list[list[str]], gene_cols: tuple[int, ...] = ()) -> str:
    """A small table; cells are HTML built by the caller from escaped parts."""
    head = "".join(header_cell(h, ' class="text"') for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="text{" g" if i in gene_cols else ""}">{c}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    genes = " genes" if gene_cols else ""
    return (
        f'<table class="data{genes}" id="t-summary-{esc(name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def models_card(metrics: pd.DataFrame | None) -> str:
    """Held-out accuracy per model set: mean and range over replicates, macro-F1."""
    if metrics is None or metrics.empty or "accuracy" not in metrics:
        return _card("Model accuracy", "models", _missing("no trained models with held-out metrics"))
    parts = []
    for model_set, t in metrics.groupby("model_set", sort=True):
        acc = t["accuracy"].to_numpy(dtype=np.float64)
        f1 = t["macro_f1"].to_numpy(dtype=np.float64) if "macro_f1" in t else np.array([np.nan])
        arch = ", ".join(sorted(set(t["arch"].astype(str)))) if "arch" in t else ""
        spread = f" ({_num(acc.min())}–{_num(acc.max())})" if acc.size > 1 else ""
        parts.append(
            f'<p><span class="big">{esc(_num(float(np.nanmean(acc))))}</span> held-out accuracy, '
            f"{esc(model_set)}: {esc(arch)}, {_plural(acc.size, 'replicate')}{esc(spread)}, "
            f"macro-F1 {esc(_num(float(np.nanmean(f1))))}</p>"
        )
    return _card("Model accuracy", "models", "".join(parts))


def _gene_badge(row: pd.Series, n_sources: int) -> str:
    call = str(row["de_call"])
    if call.startswith("yes"):
        de = f'<span class="yes">DE</span> {esc(call[len("yes: ") :])}'
    elif call == NOT_TESTED:
        de = "DE not tested"
    else:
        de = '<span class="no">not DE</span>'
    sign = esc(row["sign"] or "?")
    return (
        f'<span class="cg" title="{esc(row["gene"])}: sign {sign}, in the top k of {int(row["agreement"])} of '
        f'{n_sources} sources, DE {esc(call)}"><b>{esc(row["symbol"])}</b> {sign} '
        f"<small>{int(row['agreement'])}/{n_sources} · {de}</small></span>"
    )


def consensus_card(consensus: pd.DataFrame | None, k: int, alpha: float) -> str:
    """Each class's consensus top genes with sign, agreement and DE call."""
    title = "Top genes per class (consensus)"
    if consensus is None or consensus.empty:
        return _card(title, "top_genes", _missing("no top-gene table (run evaluate after explain)"))
    labels = sorted(consensus["label"].astype(str).unique())
    rows = []
    n_sources = int(consensus["n_sources"].max())
    for label in labels[:MAX_CLASSES]:
        best = (
            consensus[consensus["label"].astype(str) == label].sort_values("consensus_rank").head(TOP_GENES)
        )
        cell = " ".join(_gene_badge(r, int(r["n_sources"])) for _, r in best.iterrows())
        rows.append([esc(label), cell])
    more = (
        f'<p class="note">{len(labels) - MAX_CLASSES} more classes in the section</p>'
        if len(labels) > MAX_CLASSES
        else ""
    )
    body = (
        f"<p>over {_plural(n_sources, 'attribution source')} (explainers × runs: seeds, models)</p>"
        + _mini_table("consensus", ["class", "consensus top genes"], rows, (1,))
        + f'<p class="note">+ / -: class-mean attribution positive / negative in every source (mixed: they '
        f"disagree) · a/b: in the top {k} of a of b sources · DE: padj &lt; {esc(alpha)} in a contrast of the "
        "class (methods named)</p>" + more
    )
    return _card(title, "top_genes", body)


def truth_card(
    de_missed: pd.DataFrame | None, auprc: pd.DataFrame | None, k: int | None, alpha: float
) -> str:
    """ "Attribution recovers X of Y informative genes that DE misses", with both AUPRCs."""
    title = "What attribution finds that DE misses"
    if de_missed is None or de_missed.empty:
        return _card(title, "ground_truth", _missing("ground-truth recovery (needs explain and DE)"))
    overall = de_missed.iloc[0]
    x, y, n = int(overall["n_recovered"]), int(overall["n_de_missed"]), int(overall["n_sources"])
    parts = [
        f'<p>attribution recovers <span class="big">{x}</span> of {y} informative genes that DE misses '
        f"(of {int(overall['n_informative'])} informative; recovered: in the top {esc(k)}, as many genes as are "
        f"informative, of at least half of the {n} attribution sources; missed: padj &ge; {esc(alpha)} in every "
        "DE result)</p>"
    ]
    kinds = [
        f"{esc(r.subset)}: {int(r.n_recovered)} of {int(r.n_de_missed)}"
        for r in de_missed.iloc[1:].itertuples(index=False)
    ]
    if kinds:
        parts.append(f"<p>by kind: {'; '.join(kinds)}</p>")
    if auprc is not None and not auprc.empty:
        lines = [
            f"{esc(r.subset)}: attribution {_num(float(r.auprc_attribution))} vs DE {_num(float(r.auprc_de))}"
            for r in auprc.itertuples(index=False)
        ]
        parts.append(f"<p>AUPRC, mean over sources: {'; '.join(lines)}</p>")
    return _card(title, "ground_truth", "".join(parts))


def _verdict_cell(row: pd.Series) -> str:
    if pd.isna(row["saturated"]):
        return f"no verdict ({_plural(int(row['points']), 'point')})"
    if bool(row["saturated"]):
        return f'<span class="yes">saturated</span> at n = {int(row["saturation_n"])}'
    return f'<span class="no">not saturated</span> ({float(row["last_gain"]):+.3f})'


def _variant_note(variant: str, n_models: float) -> str:
    if variant == "inter_model":
        return f"replicates of {int(n_models)} models (Zhao et al. use 5)"
    if variant == "resampled":
        return f"K = max(M/n, 4) resamples of M = {int(n_models)} models (Zhao et al.)"
    if variant == "intra_model":
        return "disjoint subsets of one model's items (tends to 1; not Zhao et al.)"
    return str(variant)


def reproducibility_card(
    classes: pd.DataFrame | None, verdicts: pd.DataFrame | None, tol: float, tol_origin: str
) -> str:
    """Spearman between runs and the saturation verdict of every axis, per explainer."""
    title = "Reproducibility and saturation"
    parts = []
    overall = classes[classes["label"].astype(str) == "all"] if classes is not None else None
    if verdicts is not None and not verdicts.empty:
        judged = verdicts[verdicts["saturated"].notna()]
        flat = int(judged["saturated"].astype(bool).sum())
        open_axes = sorted(set(judged.loc[~judged["saturated"].astype(bool), "axis"]))
        verdict = (
            '<span class="big yes">saturated</span>'
            if flat == len(judged) and len(judged)
            else '<span class="big no">not saturated</span>'
        )
        more = f"; aggregate more {', '.join(map(esc, open_axes))}" if open_axes else ""
        parts.append(
            f'<p>{verdict}: {flat} of {_plural(len(judged), "curve")} flat <span title="threshold from '
            f'{esc(tol_origin)}">(gain &lt; {esc(tol)} mean Spearman per doubling of n)</span>{more}</p>'
        )
    elif verdicts is None:
        parts.append(_missing("saturation (enable saturation in the evaluate stage)"))
    explainers = sorted(
        set(verdicts["explainer"].astype(str) if verdicts is not None else [])
        | set(overall["explainer"].astype(str) if overall is not None else [])
    )
    if explainers:
        rows = []
        for e in explainers:
            row = [esc(e)]
            if overall is not None:
                runs = overall[overall["explainer"].astype(str) == e]
                row.append(
                    f'<span title="mean over {_plural(len(runs), "run pair")}">'
                    f"{_num(float(runs['spearman_mean'].mean()))}</span>"
                    if len(runs)
                    else ""
                )
            for axis in AXES:
                v = (
                    verdicts[(verdicts["explainer"].astype(str) == e) & (verdicts["axis"] == axis)]
                    if verdicts is not None
                    else []
                )
                row.append(
                    " ".join(
                        f'<span title="{esc(_variant_note(str(r["variant"]), r["n_models"]))}; last doubling to '
                        f'n = {int(r["max_n"])}">{_verdict_cell(r)}</span>'
                        for _, r in v.iterrows()
                    )
                    if len(v)
                    else "—"
                )
            rows.append(row)
        header = ["explainer", *(["between runs"] if overall is not None else []), *AXES]
        parts.append(_mini_table("reproducibility", header, rows))
    if verdicts is not None and not verdicts.empty:
        axes_of: dict[str, list[str]] = {}
        for r in verdicts.itertuples(index=False):
            note = _variant_note(str(r.variant), r.n_models)
            axes_of.setdefault(note, [])
            if r.axis not in axes_of[note]:
                axes_of[note].append(str(r.axis))
        notes = "; ".join(f"{', '.join(axes)}: {note}" for note, axes in axes_of.items())
        parts.append(f'<p class="note">{esc(notes)} · (+x): gain of the last doubling</p>')
    if overall is None:
        parts.append(_missing("reproducibility between runs (needs two explain runs and the evaluate stage)"))
    else:
        by_class = classes[classes["label"].astype(str) != "all"]
        if not by_class.empty:
            worst = by_class.sort_values("spearman_mean").iloc[0]
            parts.append(
                f'<p title="{esc(worst["run_a"])} vs {esc(worst["run_b"])}, {esc(worst["explainer"])}">least '
                f"reproducible class: {esc(worst['label'])} (Spearman {esc(_num(float(worst['spearman_mean'])))})</p>"
            )
    return _card(title, "reproducibility", "".join(parts))


def hidden_card(hidden: pd.DataFrame | None, n_sources: int, n_contrasts: int, alpha: float) -> str:
    """The genes hidden to DE, deduplicated, with the number of sources that flag each."""
    title = "Hidden to DE"
    if hidden is None:
        return _card(title, "hidden", _missing("hidden-to-DE genes (needs DE, explain and evaluate)"))
    genes = ", ".join(
        f'<span class="g" title="hidden in {esc(r.classes)}">{esc(r.symbol)}</span> ({r.n_sources}/{n_sources})'
        for r in hidden.head(HIDDEN_SHOWN).itertuples(index=False)
    )
    more = f", {len(hidden) - HIDDEN_SHOWN} more" if len(hidden) > HIDDEN_SHOWN else ""
    body = (
        f'<p><span class="big">{len(hidden)}</span> distinct genes have strong, reproducible attribution that '
        f"DE does not call (padj &ge; {esc(alpha)}), over {_plural(n_sources, 'source')} and "
        f"{_plural(n_contrasts, 'contrast')}</p>"
        + (
            f"<p>{genes}{more} <span class='note'>(a/b: flagged by a of b sources)</span></p>"
            if genes
            else ""
        )
    )
    return _card(title, "hidden", body)


def summary_section(answers: Answers) -> Section:
    """The first section: the consensus card, four answer cards and the gene search box."""
    s = Section(sid="summary", title="Summary")
    s.raw(
        '<div class="search"><label>Find a gene: <input id="gene-search" type="search" '
        'placeholder="symbol or id, e.g. ESR1" aria-label="find a gene"></label> '
        '<span id="gene-search-status" class="note"></span></div>'
    )
    truth = (
        [truth_card(answers.de_missed, answers.auprc, answers.truth_k, answers.alpha)]
        if answers.de_missed is not None
        else []
    )
    left = [
        consensus_card(answers.consensus, answers.consensus_k, answers.alpha),
        hidden_card(answers.hidden, answers.hidden_sources, answers.hidden_contrasts, answers.alpha),
    ]
    right = [
        *truth,
        reproducibility_card(answers.reproducibility, answers.verdicts, answers.tol, answers.tol_origin),
        models_card(answers.metrics),
    ]
    s.raw(
        f'<div class="cards"><div class="col">{"".join(left)}</div><div class="col">{"".join(right)}</div></div>'
    )
    return s
