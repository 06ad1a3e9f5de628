"""Build the one-page HTML report of a store: data, models, DE, attributions and their evaluation.

Every section reads only what exists; a section whose inputs were not computed says so instead of
failing. Tables shown are also written as CSV files into ``<report stem>_tables/`` beside the
HTML file.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.de.calibration import read_calibration
from gexplain.pipelines.evaluate.ground_truth import de_evidence
from gexplain.pipelines.evaluate.inputs import ATTR, explainers_of, label_column
from gexplain.pipelines.evaluate.tables import read_tables
from gexplain.pipelines.progress import Task
from gexplain.pipelines.report import plots
from gexplain.pipelines.report.html import Section, kv_table, page, plain
from gexplain.pipelines.report.summary import summary_section
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
    de: dict[str, xr.Dataset], alpha: float, max_plots: int, calibration: pd.DataFrame | None = None
) -> Section:
    """Volcano plots, the number of significant genes per contrast and the label-permutation check."""
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
        s.figure(
            plots.volcano(
                np.asarray(d["log2FoldChange"].values, dtype=np.float64),
                np.asarray(d["pvalue"].values, dtype=np.float64),
                np.asarray(d["padj"].values, dtype=np.float64),
                name,
                alpha,
            )
        )
    if len(de) > max_plots:
        s.text(f"volcano plots of the first {max_plots} of {len(de)} results shown", "note")
    return s


def top_genes_section(tables: dict[str, pd.DataFrame], ds: xr.Dataset, top_n: int) -> Section:
    """Heatmap of the top genes of each class (class-mean |attribution|) per attribution source."""
    s = _section("top_genes")
    top = _table(tables, "top_genes")
    if top is None:
        s.missing("no top-gene table (run the evaluate stage after explain)")
        return s
    symbols = _symbols(ds)
    for source, t in top.groupby("source", sort=True):
        best = t[t["rank"] <= top_n]
        genes = list(dict.fromkeys(best.sort_values(["label", "rank"])["gene"].astype(str)))
        matrix = t[t["gene"].astype(str).isin(genes)].pivot_table(
            index="gene", columns="label", values="mean_abs_attr", aggfunc="first", fill_value=0.0
        )
        matrix = matrix.reindex(genes).fillna(0.0)
        matrix.index = [symbols.get(g, g) for g in matrix.index]
        s.heading(str(source))
        s.figure(plots.heatmap(matrix, f"top {top_n} genes per class: {source}"))
        shared = best.assign(symbol=[symbols.get(g, g) for g in best["gene"].astype(str)])
        s.table(f"top_genes_{_safe(source)}", shared, max_rows=500)
    return s


def reproducibility_section(tables: dict[str, pd.DataFrame]) -> Section:
    """Per-class reproducibility between runs, and saturation curves."""
    s = _section("reproducibility")
    classes = _table(tables, "reproducibility_classes")
    if classes is None:
        s.missing("reproducibility between runs (needs two explain runs and the evaluate stage)")
    else:
        s.table("reproducibility_classes", classes)
        overall = classes[classes["label"] == "all"].assign(
            pair=lambda t: t["run_a"] + " vs " + t["run_b"] + " (" + t["explainer"] + ")"
        )
        s.figure(
            plots.bars(overall, "pair", "spearman_mean", None, "per-sample Spearman between runs", "Spearman")
        )
    curves = _table(tables, "saturation_curves")
    if curves is None:
        s.missing("saturation curves (enable saturation in the evaluate stage)")
    else:
        for name, c in curves.groupby("curve", sort=True):
            s.figure(
                plots.curves(
                    c,
                    "n",
                    ["spearman_mean", "top_k_overlap_mean"],
                    f"saturation: {name}",
                    "n aggregated",
                    "mean",
                    True,
                )
            )
        s.table("saturation_curves", curves)
        summary = _table(tables, "saturation_summary")
        if summary is not None:
            s.table("saturation_summary", summary)
    return s


def ground_truth_section(tables: dict[str, pd.DataFrame], ds: xr.Dataset) -> Section:
    """Precision/recall at k, AUROC, AUPRC of attributions and DE against the simulator's truth."""
    s = _section("ground_truth")
    if "truth_informative" not in ds:
        s.missing("the store has no ground truth (only simulated stores carry it)")
        return s
    gt = _table(tables, "ground_truth")
    if gt is None:
        s.missing("ground-truth metrics (run the evaluate stage)")
        return s
    s.table("ground_truth", gt)
    s.figure(plots.bars(gt, "source", "auprc", "subset", "AUPRC of the informative genes", "AUPRC"))
    return s


def faithfulness_section(tables: dict[str, pd.DataFrame]) -> Section:
    """PGI / PGU / random-floor curves."""
    s = _section("faithfulness")
    f = _table(tables, "faithfulness")
    if f is None:
        s.missing("faithfulness (needs a model set and an explain run; run the evaluate stage)")
        return s
    by = ["source", "variant"] if "variant" in f else ["source"]
    for key, t in f.groupby(by, sort=True):
        s.figure(
            plots.curves(
                t,
                "k",
                ["pgi", "pgu", "random"],
                f"prediction gap: {' '.join(map(str, key))}",
                "k genes replaced",
                "mean |change in p|",
                True,
            )
        )
    s.table("faithfulness", f)
    return s


def de_vs_attr_section(
    tables: dict[str, pd.DataFrame], ds: xr.Dataset, de: dict[str, xr.Dataset], store_url: str, max_plots: int
) -> Section:
    """Per-gene DE evidence against attribution importance, and the class-level overlaps."""
    s = _section("de_vs_attr")
    runs = [g for g in list_results(store_url, "explain")]
    if not de or not runs:
        s.missing("needs both DE results and an explain run")
    else:
        res = read_result(store_url, runs[0])
        explainer = explainers_of(res)[0]
        imp = np.asarray(abs(res[ATTR + explainer]).mean(SAMPLE).values, dtype=np.float64)
        imp_genes = pd.Series(imp, index=np.asarray(res[GENE].values).astype(str))
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
                    f"{name} vs {runs[0]}:{explainer}" + (" (red: informative)" if truth is not None else ""),
                    "DE -log10 p-value",
                    "mean |attribution|",
                )
            )
    ov = _table(tables, "class_overlaps")
    if ov is None:
        s.missing(
            "overlaps of top genes with DE, tissue-enhanced and housekeeping genes (run the evaluate stage)"
        )
    else:
        s.text(
            "overlap of each class's shared top genes with its DE genes, tissue-enhanced genes (>= 4x the mean of "
            "the other classes) and housekeeping genes, against the overlap expected by chance (hypergeometric)",
            "note",
        )
        s.table("class_overlaps", ov)
    return s


def hidden_section(tables: dict[str, pd.DataFrame], ds: xr.Dataset) -> Section:
    """Genes with strong, reproducible attribution that DE does not call, per contrast."""
    s = _section("hidden")
    h = _table(tables, "hidden_to_de")
    if h is None:
        s.missing("hidden-to-DE genes (needs DE results, an explain run and the evaluate stage)")
        return s
    symbols = _symbols(ds)
    h = h.assign(symbol=[symbols.get(g, g) for g in h["gene"].astype(str)])
    counts = h.groupby(["source", "contrast"], as_index=False).size().rename(columns={"size": "hidden genes"})
    s.table("hidden_to_de_counts", counts)
    s.table("hidden_to_de", h, max_rows=500)
    return s


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
    models = step(models_section(store_url))
    sections = [
        step(data_section(store_url, ds, label)),
        models,
        step(de_section(de, alpha, max_plots, read_calibration(store_url))),
        step(top_genes_section(tables, ds, top_n)),
        step(reproducibility_section(tables)),
        step(ground_truth_section(tables, ds)),
        step(faithfulness_section(tables)),
        step(de_vs_attr_section(tables, ds, de, store_url, max_plots)),
        step(hidden_section(tables, ds)),
    ]
    summary_inputs = {
        name: _table(tables, name)
        for name in (
            "reproducibility_classes",
            "saturation_curves",
            "saturation_summary",
            "top_genes",
            "hidden_to_de",
        )
    }
    sections.insert(
        0, step(summary_section(models.tables.get("model_metrics"), summary_inputs, _symbols(ds)))
    )
    csv_dir = out.with_name(out.stem + "_tables")
    csv_dir.mkdir(parents=True, exist_ok=True)
    for section in sections:
        for name, table in section.tables.items():
            atomic_write_bytes(str(csv_dir / f"{name}.csv"), table.to_csv(index=False).encode())
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    html = page("gexplain report", f"{store_url} · {now}", sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(str(out), html.encode("utf-8"))
    step(None)
    return out
