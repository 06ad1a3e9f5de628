"""Build the one-page HTML report of a store: data, models, DE, attributions and their evaluation.

Every section reads only what exists; a section whose inputs were not computed says so instead of
failing. Tables shown are also written as CSV files into ``<report stem>_tables/`` beside the
HTML file.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.de.calibration import read_calibration
from gexplain.pipelines.evaluate.ground_truth import de_evidence
from gexplain.pipelines.evaluate.inputs import de_test_level, explain_runs, label_column
from gexplain.pipelines.evaluate.params import SaturationParams
from gexplain.pipelines.evaluate.tables import read_tables
from gexplain.pipelines.progress import Task
from gexplain.pipelines.report import plots
from gexplain.pipelines.report.attributions import SourceStats, source_stats
from gexplain.pipelines.report.consensus import (
    annotate,
    consensus_sign,
    consensus_top_genes,
    de_calls,
    hidden_genes,
)
from gexplain.pipelines.report.findings import auprc_by_kind, de_missed_recovery, saturation_verdicts
from gexplain.pipelines.report.glossary import describe
from gexplain.pipelines.report.html import Section, column_names, esc, kv_table, page, plain
from gexplain.pipelines.report.summary import Answers, summary_section
from gexplain.pipelines.versions import library_versions
from gexplain.storage.checkpoints import list_checkpoints, list_model_sets, read_metadata
from gexplain.storage.errors import InputError
from gexplain.storage.paths import atomic_write_bytes
from gexplain.storage.schema import GENE, SAMPLE, layer_names
from gexplain.storage.store import list_results, open_store, read_result

T = TypeVar("T")

SECTION_TITLES = {
    "summary": "Summary",
    "data": "Data summary",
    "models": "Model accuracy",
    "de": "Differential expression",
    "top_genes": "Top genes per class",
    "reproducibility": "Reproducibility and saturation",
    "ground_truth": "Ground truth",
    "faithfulness": "Faithfulness (PGI / PGU)",
    "de_vs_attr": "DE versus attribution",
    "hidden": "Hidden to DE",
    "glossary": "Glossary of columns",
}
HEADER_LIBRARIES = ("gexplain", "torch", "numpy", "zarr", "ray", "dask", "xarray", "matplotlib")
HEATMAP_ROWS = 60  # most genes in the consensus heatmap
FAITHFULNESS_AXIS = {
    "openxai": "k top genes perturbed (Gaussian noise, sd = sigma x gene sd)",
    "replace": "k top genes replaced by the reference",
}


REPORT_STEPS = len(SECTION_TITLES) + 1
"""Progress steps of :func:`build_report`: its sections, then writing the tables and the page."""


def _unchanged(value: T) -> T:
    return value


def _section(key: str) -> Section:
    return Section(sid=key, title=SECTION_TITLES[key])


def data_section(store_url: str, ds: xr.Dataset, label: str | None) -> Section:
    """Dims, layers, class sizes and provenance."""
    s = _section("data")
    s.text(f"store {store_url}: {ds.sizes[SAMPLE]} samples x {ds.sizes[GENE]} genes")
    s.table(
        "data_layers",
        pd.DataFrame({"layer": layer_names(ds), "dtype": [str(ds[n].dtype) for n in layer_names(ds)]}),
    )
    if label is not None:
        counts = pd.Series(np.asarray(ds[label].values).astype(str)).value_counts().sort_index()
        s.heading(f"samples per class ({label})")
        s.table("data_classes", counts.rename_axis("class").reset_index(name="samples"))
    else:
        s.missing("no label column")
    sim = ds.attrs.get("simulator")
    if isinstance(sim, dict):
        s.heading(f"simulated with {sim.get('name', 'a simulator')}")
        s.raw(kv_table(sim.get("params") or {}))
    elif sim:
        s.text(f"simulated: {plain(sim)}")
    if "truth_informative" in ds:
        inf = np.asarray(ds["truth_informative"].values, dtype=bool)
        modes = (
            pd.Series(np.asarray(ds["truth_mode"].values).astype(str)[inf]).value_counts().sort_index()
            if "truth_mode" in ds
            else pd.Series(dtype=int)
        )
        kinds = ", ".join(f"{n} {mode}" for mode, n in modes.items())
        s.text(f"ground truth: {int(inf.sum())} informative genes" + (f" ({kinds})" if kinds else ""))
    results = list_results(store_url)
    s.text("results in the store: " + (", ".join(results) if results else "none"))
    return s


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[key] = float(value)
        elif isinstance(value, dict):
            for sub, v in _flat_metrics(value).items():
                if "." not in sub and sub in ("accuracy", "macro_f1", "n"):
                    out[f"{key}.{sub}"] = v
    return out


def models_section(store_url: str) -> Section:
    """Held-out metrics of every replicate of every model set."""
    s = _section("models")
    rows, per_class = [], []
    for model_set in list_model_sets(store_url):
        for rep in list_checkpoints(store_url, model_set):
            meta = read_metadata(store_url, model_set, rep)
            metrics = meta.get("metrics", {}) or {}
            rows.append(
                {
                    "model_set": model_set,
                    "replicate": rep,
                    "arch": meta.get("arch", ""),
                    **_flat_metrics(metrics),
                }
            )
            for cls, acc in (metrics.get("per_class_accuracy") or {}).items():
                per_class.append({"model_set": model_set, "replicate": rep, "class": cls, "accuracy": acc})
    if not rows:
        s.missing("no trained models in the store (run `gexplain train`)")
        return s
    table = pd.DataFrame(rows)
    s.table("model_metrics", table)
    if per_class:
        pc = pd.DataFrame(per_class).groupby(["model_set", "class"], as_index=False)["accuracy"].mean()
        s.figure(plots.bars(pc, "class", "accuracy", "model_set", "held-out accuracy per class", "accuracy"))
        s.table("model_class_accuracy", pc)
    return s


def de_section(
    de: dict[str, xr.Dataset],
    alpha: float,
    max_plots: int,
    calibration: pd.DataFrame | None = None,
    symbols: dict[str, str] | None = None,
) -> Section:
    """Volcano plots (genes labelled by ``symbols``, else ids), the number of significant genes per
    contrast and the label-permutation check."""
    s = _section("de")
    if not de:
        s.missing("no DE results in the store (run `gexplain de`)")
        return s
    rows = []
    for name, d in de.items():
        padj = np.asarray(d["padj"].values, dtype=np.float64)
        lfc = np.asarray(d["log2FoldChange"].values, dtype=np.float64)
        sig = np.nan_to_num(padj, nan=1.0) < alpha
        rows.append(
            {
                "result": name,
                "genes": padj.size,
                f"padj<{alpha}": int(sig.sum()),
                "up": int((sig & (lfc > 0)).sum()),
                "down": int((sig & (lfc < 0)).sum()),
            }
        )
    s.table("de_summary", pd.DataFrame(rows))
    if calibration is not None:
        s.table("de_calibration", calibration)
    for name, d in list(de.items())[:max_plots]:
        genes = np.asarray(d[GENE].values).astype(str)
        s.figure(
            plots.volcano(
                np.asarray(d["log2FoldChange"].values, dtype=np.float64),
                np.asarray(d["padj"].values, dtype=np.float64),
                name,
                alpha,
                names=np.array([(symbols or {}).get(g, g) for g in genes], dtype=object),
            )
        )
    if len(de) > max_plots:
        s.text(f"volcano plots of the first {max_plots} of {len(de)} results shown", "note")
    return s


def top_genes_section(
    consensus: pd.DataFrame | None, top: pd.DataFrame | None, symbols: dict[str, str], top_n: int
) -> Section:
    """The consensus top genes of each class (table and heatmap) and every source's own ranking."""
    s = _section("top_genes")
    if consensus is None or top is None:
        s.missing("no top-gene table (run the evaluate stage after explain)")
        return s
    n_classes = max(consensus["label"].nunique(), 1)
    per_class = max(1, min(top_n, HEATMAP_ROWS // n_classes))
    best = consensus[consensus["consensus_rank"] <= per_class]
    genes = list(dict.fromkeys(best.sort_values(["label", "consensus_rank"])["gene"].astype(str)))
    n_sources = top["source"].nunique()
    matrix = (
        top[top["gene"].astype(str).isin(genes)]
        .pivot_table(index="gene", columns="label", values="mean_abs_attr", aggfunc="sum", fill_value=0.0)
        .reindex(genes)
        .fillna(0.0)
        / n_sources
    )
    matrix.index = [symbols.get(g, g) for g in matrix.index]
    s.text(
        f"consensus over {n_sources} attribution sources: a gene's agreement is the number of sources with it "
        f"in their top {top_n} of the class; ties are broken by the mean rank over sources",
        "note",
    )
    s.figure(plots.heatmap(matrix, f"consensus top {per_class} genes per class"))
    s.table("top_genes_consensus", consensus[consensus["consensus_rank"] <= top_n], max_rows=200)
    for source, t in top.groupby("source", sort=True):
        shown = t[t["rank"] <= top_n]
        shown = shown.assign(symbol=[symbols.get(g, g) for g in shown["gene"].astype(str)])
        s.heading(f"ranking of {source}")
        s.table(f"top_genes_{_safe(source)}", shown, max_rows=500)
    return s


def reproducibility_section(
    classes: pd.DataFrame | None,
    curves: pd.DataFrame | None,
    summary: pd.DataFrame | None,
    verdicts: pd.DataFrame | None,
    tol: float,
) -> Section:
    """Per-class reproducibility between runs, saturation curves (one figure per axis) and verdicts."""
    s = _section("reproducibility")
    if classes is None:
        s.missing("reproducibility between runs (needs two explain runs and the evaluate stage)")
    else:
        s.table("reproducibility_classes", classes)
        overall = classes[classes["label"] == "all"].assign(
            pair=lambda t: t["run_a"] + " vs " + t["run_b"] + " (" + t["explainer"] + ")"
        )
        s.figure(
            plots.bars(
                overall, "pair", "spearman_mean", None, "per-sample Spearman between runs", "mean Spearman"
            )
        )
    if curves is None:
        s.missing("saturation curves (enable saturation in the evaluate stage)")
        return s
    for axis, c in curves.groupby("axis", sort=True):
        lines = {f"{e} / {v}": t for (e, v), t in c.groupby(["explainer", "variant"], sort=True)}
        s.figure(
            plots.curves(
                lines,
                "n",
                "spearman_mean",
                f"saturation over {axis}",
                f"n {axis} aggregated",
                "mean Spearman between replicates",
                True,
            )
        )
    if verdicts is not None:
        s.text(f"saturated: the first n whose doubling gains less than {tol} mean Spearman", "note")
        s.table("saturation_verdicts", verdicts)
    s.table("saturation_curves", curves)
    if summary is not None:
        s.table("saturation_summary", summary)
    return s


def ground_truth_section(
    gt: pd.DataFrame | None, ds: xr.Dataset, de_missed: pd.DataFrame | None, auprc: pd.DataFrame | None
) -> Section:
    """Precision/recall at k, AUROC, AUPRC of attributions and DE against the simulator's truth."""
    s = _section("ground_truth")
    if "truth_informative" not in ds:
        s.missing("the store has no ground truth (only simulated stores carry it)")
        return s
    if gt is None:
        s.missing("ground-truth metrics (run the evaluate stage)")
        return s
    if de_missed is not None:
        s.table("ground_truth_de_missed", de_missed)
    if auprc is not None:
        s.table("ground_truth_auprc", auprc)
    s.table("ground_truth", gt)
    s.figure(plots.bars(gt, "source", "auprc", "subset", "AUPRC of the informative genes", "AUPRC"))
    return s


def faithfulness_section(f: pd.DataFrame | None) -> Section:
    """PGI / PGU / random-floor curves, the x axis saying what each variant does to the top genes."""
    s = _section("faithfulness")
    if f is None:
        s.missing("faithfulness (needs a model set and an explain run; run the evaluate stage)")
        return s
    by = ["source", "variant"] if "variant" in f else ["source"]
    for key, t in f.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        variant = str(key[-1]) if "variant" in f else "replace"
        s.figure(
            plots.curves(
                {c: t[["k", c]].rename(columns={c: "value"}) for c in ("pgi", "pgu", "random")},
                "k",
                "value",
                f"prediction gap: {' '.join(map(str, key))}",
                FAITHFULNESS_AXIS.get(variant, "k top genes changed"),
                "mean |change in p(class)|",
                False,
            )
        )
    s.table("faithfulness", f)
    return s


def de_vs_attr_section(
    overlaps: pd.DataFrame | None,
    ds: xr.Dataset,
    de: dict[str, xr.Dataset],
    stats: list[SourceStats],
    max_plots: int,
) -> Section:
    """Per-gene DE evidence against attribution importance, and the class-level overlaps."""
    s = _section("de_vs_attr")
    if not de or not stats:
        s.missing("needs both DE results and an explain run")
    else:
        first = stats[0]
        imp_genes = pd.Series(first.importance, index=first.genes)
        truth = (
            pd.Series(
                np.asarray(ds["truth_informative"].values, dtype=bool), index=ds[GENE].values.astype(str)
            )
            if "truth_informative" in ds
            else None
        )
        for name, d in list(de.items())[:max_plots]:
            genes = np.asarray(d[GENE].values).astype(str)
            hl = (
                truth.reindex(genes).fillna(False).to_numpy(dtype=bool)
                if truth is not None
                else np.zeros(genes.size, bool)
            )
            s.figure(
                plots.scatter(
                    de_evidence(d),
                    imp_genes.reindex(genes).to_numpy(dtype=np.float64),
                    hl,
                    f"{name} vs {first.source}" + (" (red: informative)" if truth is not None else ""),
                    "DE -log10 p-value (unadjusted)",
                    "mean |attribution|",
                )
            )
    if overlaps is None:
        s.missing(
            "overlaps of top genes with DE, tissue-enhanced and housekeeping genes (run the evaluate stage)"
        )
    else:
        s.text(
            "overlap of each class's shared top genes with its DE genes, tissue-enhanced genes (>= 4x the mean of "
            "the other classes) and housekeeping genes, against the overlap expected by chance (hypergeometric)",
            "note",
        )
        s.table("class_overlaps", overlaps)
    return s


def hidden_section(
    hidden: pd.DataFrame | None, dedup: pd.DataFrame | None, symbols: dict[str, str]
) -> Section:
    """Genes with strong, reproducible attribution that DE does not call: deduplicated, then per row."""
    s = _section("hidden")
    if hidden is None or dedup is None:
        s.missing("hidden-to-DE genes (needs DE results, an explain run and the evaluate stage)")
        return s
    s.table("hidden_to_de_genes", dedup, max_rows=200)
    h = hidden.assign(symbol=[symbols.get(g, g) for g in hidden["gene"].astype(str)])
    counts = h.groupby(["source", "contrast"], as_index=False).size().rename(columns={"size": "hidden genes"})
    s.table("hidden_to_de_counts", counts)
    if "z" in h and np.isinf(h["z"].to_numpy(dtype=np.float64)).any():
        s.text(
            "z = inf: the run kept no per-sample spread of the attribution (no attr_<explainer>_std, e.g. one "
            "item per sample) or the spread is 0, so the standard error is 0; such genes were selected on "
            "strength (frac_top) and DE alone, not on reproducibility",
            "note",
        )
    s.table("hidden_to_de", h, max_rows=500)
    return s


def glossary_section(sections: list[Section]) -> Section:
    """One entry per column name shown anywhere in ``sections``."""
    s = _section("glossary")
    names = column_names("".join(sec.body() for sec in sections))
    items = "".join(
        f"<dt>{esc(n)}</dt><dd>{esc(describe(n) or 'no description')}</dd>"
        for n in sorted(names, key=str.lower)
    )
    s.raw(f'<dl class="glossary">{items}</dl>')
    return s


def _de_long(de: dict[str, xr.Dataset], genes: set[str]) -> pd.DataFrame:
    """``label``, ``method``, ``gene``, ``padj`` of ``genes`` in every DE contrast with a tested class."""
    frames = []
    for name, d in sorted(de.items()):
        level = de_test_level(d)
        if level is None:
            continue
        ids = np.asarray(d[GENE].values).astype(str)
        keep = np.isin(ids, list(genes))
        frames.append(
            pd.DataFrame(
                {
                    "label": level,
                    "method": str(d.attrs.get("method") or name.split("/")[1]),
                    "gene": ids[keep],
                    "padj": np.asarray(d["padj"].values, dtype=np.float64)[keep],
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["label", "method", "gene", "padj"])
    )


def _de_called_any(de: dict[str, xr.Dataset], alpha: float) -> pd.Series:
    """Bool per gene: some DE result calls it (padj < alpha)."""
    calls = [
        pd.Series(
            np.nan_to_num(np.asarray(d["padj"].values, dtype=np.float64), nan=1.0) < alpha,
            index=np.asarray(d[GENE].values).astype(str),
        )
        for d in de.values()
    ]
    return pd.concat(calls).groupby(level=0).max() if calls else pd.Series(dtype=bool)


def saturation_tol(run_config: dict[str, Any] | None) -> tuple[float, str]:
    """The evaluate stage's saturation threshold from the run config, else the default, and where from."""
    for stage in (run_config or {}).get("stage", []):
        if stage.get("kind") == "evaluate":
            tol = ((stage.get("params") or {}).get("saturation") or {}).get("tol")
            if tol is not None:
                return float(tol), "evaluate saturation.tol in the run config"
    return float(SaturationParams().tol), "the evaluate default"


def _answers(
    tables: dict[str, pd.DataFrame],
    ds: xr.Dataset,
    de: dict[str, xr.Dataset],
    stats: list[SourceStats],
    metrics: pd.DataFrame | None,
    *,
    alpha: float,
    top_n: int,
    run_config: dict[str, Any] | None,
) -> Answers:
    """Everything the first screen and the sections derived from it show."""
    symbols = _symbols(ds)
    out = Answers(metrics=metrics, consensus_k=top_n, alpha=alpha)
    top = _table(tables, "top_genes")
    if top is not None:
        consensus = consensus_top_genes(top, top_n)
        genes = set(consensus["gene"])
        signed = (
            pd.concat([st.signed_table(genes) for st in stats], ignore_index=True)
            if stats
            else pd.DataFrame()
        )
        table = annotate(consensus, consensus_sign(signed), de_calls(_de_long(de, genes), alpha))
        out.consensus = table.assign(symbol=[symbols.get(g, g) for g in table["gene"]])
    gt = _table(tables, "ground_truth")
    if "truth_informative" in ds and stats and de:
        truth = pd.DataFrame(
            {"informative": np.asarray(ds["truth_informative"].values, dtype=bool)}
            | ({"mode": np.asarray(ds["truth_mode"].values).astype(str)} if "truth_mode" in ds else {}),
            index=np.asarray(ds[GENE].values).astype(str),
        )
        k = int(truth["informative"].sum())  # R-precision cut-off: as many genes as are informative
        in_top = pd.concat([st.in_top(k) for st in stats], axis=1)
        out.de_missed, out.truth_k = de_missed_recovery(truth, _de_called_any(de, alpha), in_top), k
        out.auprc = auprc_by_kind(gt) if gt is not None else None
    out.reproducibility = _table(tables, "reproducibility_classes")
    curves = _table(tables, "saturation_curves")
    out.tol, out.tol_origin = saturation_tol(run_config)
    out.verdicts = saturation_verdicts(curves, out.tol) if curves is not None else None
    hidden = _table(tables, "hidden_to_de")
    if hidden is not None:
        dedup = hidden_genes(hidden)
        out.hidden = dedup.assign(symbol=[symbols.get(g, g) for g in dedup["gene"]])
        out.hidden_sources = hidden["source"].nunique()
        out.hidden_contrasts = hidden["contrast"].nunique()
    return out


def header_lines(store_url: str, run_config: dict[str, Any] | None) -> list[str]:
    """The lines under the title: store and date, library versions, the run config (escaped)."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    versions = library_versions(HEADER_LIBRARIES)
    config = (
        "<details><summary>run config</summary><pre>"
        + esc(json.dumps(run_config, indent=2, default=str))
        + "</pre></details>"
        if run_config
        else "run config: none (report built outside a run; `gexplain run` records one)"
    )
    return [
        f"{esc(store_url)} · {esc(now)}",
        " · ".join(f"{esc(name)} {esc(v)}" for name, v in versions.items()) + f" · {config}",
    ]


def _table(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame | None:
    found = [t for key, t in sorted(tables.items()) if key.rsplit("/", 1)[-1] == name]
    return pd.concat(found, ignore_index=True) if found else None


def _symbols(ds: xr.Dataset) -> dict[str, str]:
    if "gene_symbol" not in ds:
        return {}
    sym = np.asarray(ds["gene_symbol"].values).astype(str)
    return {g: (s or g) for g, s in zip(np.asarray(ds[GENE].values).astype(str), sym, strict=True)}


def _safe(name: object) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))


def build_report(
    store_url: str,
    out: str | Path,
    *,
    evaluation: str | None = None,
    alpha: float = 0.05,
    top_n: int = 15,
    max_plots: int = 6,
    run_config: dict[str, Any] | None = None,
    task: Task | None = None,
) -> Path:
    """Write the HTML report of a store and the CSV files of its tables.

    Parameters
    ----------
    store_url
        The store.
    out
        Path of the HTML file; tables go to ``<out without .html>_tables/<name>.csv``.
    evaluation
        Use only this evaluation's tables (``results/evaluate/<name>``); None uses all.
    alpha
        DE significance level shown.
    top_n
        Top genes per class in the heatmap.
    max_plots
        Most volcano / comparison plots.
    run_config
        The run's config (as in its manifest), shown in the header and read for the evaluate
        stage's saturation threshold; None outside a run.
    task
        A progress task sized :data:`REPORT_STEPS`: one step per section (:data:`SECTION_TITLES`),
        one for writing the tables and the page.

    Returns
    -------
    pathlib.Path
        The HTML file.
    """
    step = task.step if task is not None else _unchanged
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {out}: the report is an HTML file; give a path ending in .html")
    ds = open_store(store_url)
    try:
        label: str | None = label_column(ds)
    except InputError:
        label = None
    de = {g: read_result(store_url, g) for g in list_results(store_url, "de")}
    tables = read_tables(store_url, evaluation)
    symbols = _symbols(ds)
    top = _table(tables, "top_genes")
    evaluated = set(top["source"].astype(str)) if top is not None else None
    stats = (
        [
            st
            for st in source_stats(ds, label, explain_runs(store_url))
            if evaluated is None or st.source in evaluated
        ]
        if label is not None
        else []
    )
    models = step(models_section(store_url))
    answers = _answers(
        tables,
        ds,
        de,
        stats,
        models.tables.get("model_metrics"),
        alpha=alpha,
        top_n=top_n,
        run_config=run_config,
    )
    sections = [
        step(summary_section(answers)),
        step(data_section(store_url, ds, label)),
        models,
        step(de_section(de, alpha, max_plots, read_calibration(store_url), symbols)),
        step(top_genes_section(answers.consensus, top, symbols, top_n)),
        step(
            reproducibility_section(
                answers.reproducibility,
                _table(tables, "saturation_curves"),
                _table(tables, "saturation_summary"),
                answers.verdicts,
                answers.tol,
            )
        ),
        step(ground_truth_section(_table(tables, "ground_truth"), ds, answers.de_missed, answers.auprc)),
        step(faithfulness_section(_table(tables, "faithfulness"))),
        step(de_vs_attr_section(_table(tables, "class_overlaps"), ds, de, stats, max_plots)),
        step(hidden_section(_table(tables, "hidden_to_de"), answers.hidden, symbols)),
    ]
    sections.append(step(glossary_section(sections)))
    csv_dir = out.with_name(out.stem + "_tables")
    csv_dir.mkdir(parents=True, exist_ok=True)
    for section in sections:
        for name, table in section.tables.items():
            atomic_write_bytes(str(csv_dir / f"{name}.csv"), table.to_csv(index=False).encode())
    html = page("gexplain report", header_lines(store_url, run_config), sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(str(out), html.encode("utf-8"))
    step(None)
    return out
