"""Evaluate a store's attributions and DE results; every table goes to the store and to CSV.

Each part runs only when its inputs exist (ground truth needs ``truth_informative``, faithfulness
needs a model set, reproducibility needs two runs, DE overlaps need DE results). Attribution
matrices are streamed in sample blocks, so memory is bounded by ``block`` x genes, except for the
per-class hidden-to-DE step, which holds at most ``max_class_samples`` samples of one class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.evaluate.biology import (
    TopGeneCounts,
    class_expression_stats,
    class_overlaps,
    hidden_to_de,
    housekeeping,
    tissue_enhanced,
)
from gexplain.pipelines.evaluate.faithfulness import (
    Ensemble,
    default_k_grid,
    gap_table,
    openxai_k_grid,
    perturbation_sample_gaps,
    replacement_sample_gaps,
    with_areas,
)
from gexplain.pipelines.evaluate.ground_truth import attribution_importance, ground_truth_table
from gexplain.pipelines.evaluate.inputs import (
    ATTR,
    AttributionSource,
    attribution_sources,
    de_results,
    de_test_level,
    explain_runs,
    explainers_of,
    gene_values,
    label_column,
    labels_for,
    positions,
)
from gexplain.pipelines.evaluate.reproducibility import compare_runs, summarise_per_class
from gexplain.pipelines.evaluate.tables import begin_evaluation, finish_evaluation, write_table
from gexplain.pipelines.labels import labelled_samples
from gexplain.pipelines.progress import SILENT, Progress, Task
from gexplain.storage.checkpoints import list_model_sets
from gexplain.storage.errors import InputError
from gexplain.storage.schema import GENE, SAMPLE
from gexplain.storage.store import open_store

if TYPE_CHECKING:
    from gexplain.pipelines.evaluate.params import EvaluateParams

log = logging.getLogger(__name__)

FAITHFULNESS_BLOCK = 8  # samples per faithfulness block (one progress step, one unit of work)
TPM_BLOCK_VALUES = 8_000_000  # TPM values per gene block read for class medians (~32 MiB float32)


@dataclass
class EvaluateOutput:
    """Tables written (name -> table) and the store groups they live in."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)


def _blocks(n: int, block: int) -> list[slice]:
    return [slice(s, min(s + block, n)) for s in range(0, n, block)]


def _values(var: xr.DataArray, sample_pos: np.ndarray | slice, gene_pos: np.ndarray | slice) -> np.ndarray:
    return np.asarray(var.isel({SAMPLE: sample_pos, GENE: gene_pos}).values)


def ground_truth_part(
    ds: xr.Dataset,
    runs: dict[str, xr.Dataset],
    de: dict[str, xr.Dataset],
    opts: EvaluateParams,
    task: Task,
) -> pd.DataFrame | None:
    """Ground-truth table of every attribution and DE result, or None without ground truth;
    ``task`` counts the sources (attribution sources and DE results)."""
    if "truth_informative" not in ds:
        return None
    sources = attribution_sources(runs)
    task.report(0, len(sources) + len(de))
    frames = []
    for src in sources:
        res = runs[src.run]
        genes = np.asarray(res[GENE].values)
        imp = attribution_importance(res[ATTR + src.explainer])
        frames.append(task.step(_truth_rows(ds, genes, {src.name: imp}, {}, opts)))
    for name, d in de.items():
        frames.append(task.step(_truth_rows(ds, np.asarray(d[GENE].values), {}, {name: d}, opts)))
    return pd.concat(frames, ignore_index=True) if frames else None


def _truth_rows(
    ds: xr.Dataset,
    genes: np.ndarray,
    attrs: dict[str, np.ndarray],
    de: dict[str, xr.Dataset],
    opts: EvaluateParams,
) -> pd.DataFrame:
    inf = gene_values(ds, "truth_informative", genes).astype(bool)
    mode = gene_values(ds, "truth_mode", genes).astype(str) if "truth_mode" in ds else None
    return ground_truth_table(inf, mode, attrs, de, k=opts.k, alpha=opts.alpha)


@dataclass
class _Comparison:
    """Two attribution matrices compared sample by sample (one reproducibility table entry).

    Attributes
    ----------
    meta
        ``run_a``, ``run_b``, ``explainer`` and ``k`` of the entry.
    samples, labels
        The compared samples' ids and labels, (sample,).
    k
        Top-k size of the overlaps (at most the shared genes).
    read
        ``read(block)``: the two (sample, gene) attribution matrices of the samples ``block``.
    """

    meta: dict[str, object]
    samples: np.ndarray
    labels: np.ndarray
    k: int
    read: Callable[[slice], tuple[np.ndarray, np.ndarray]]


def reproducibility_part(
    ds: xr.Dataset, label: str, runs: dict[str, xr.Dataset], opts: EvaluateParams, task: Task
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Per-sample and per-class reproducibility between pairs of runs (shared explainers), and
    between the models of a run that kept per-model means (``run_a`` = ``<run>/model<i>``);
    ``task`` counts the sample blocks compared."""
    comparisons = _between_runs(ds, label, runs, opts)
    for run, res in sorted(runs.items()):
        comparisons += _between_models(ds, label, run, res, opts)
    blocks = [_blocks(c.samples.size, opts.block) for c in comparisons]
    task.report(0, sum(len(b) for b in blocks))
    per_sample: list[pd.DataFrame] = []
    per_class: list[pd.DataFrame] = []
    for c, blks in zip(comparisons, blocks, strict=True):
        rows = []
        for blk in blks:
            xa, xb = c.read(blk)
            rows.append(task.step(compare_runs(xa, xb, c.labels[blk], c.samples[blk], k=c.k)[0]))
        ps = pd.concat(rows, ignore_index=True)
        per_sample.append(ps.assign(**c.meta))
        per_class.append(summarise_per_class(ps.drop(columns="sample")).assign(**c.meta))
    if not per_sample:
        return None
    return pd.concat(per_sample, ignore_index=True), pd.concat(per_class, ignore_index=True)


def _between_runs(
    ds: xr.Dataset, label: str, runs: dict[str, xr.Dataset], opts: EvaluateParams
) -> list[_Comparison]:
    """The comparisons between the pairs of runs of ``opts.pairs`` (all pairs when empty), one per
    explainer they share, over their shared samples and genes."""
    pairs = list(opts.pairs) or list(combinations(sorted(runs), 2))
    unknown = sorted({r for pair in pairs for r in pair} - set(runs))
    if unknown:
        raise InputError(
            f"option pairs names explain run(s) {', '.join(unknown)} that are not evaluated; "
            f"use runs among: {', '.join(sorted(runs)) or 'none'}"
        )
    out = []
    for run_a, run_b in pairs:
        a, b = runs[run_a], runs[run_b]
        samples = np.intersect1d(a[SAMPLE].values.astype(str), b[SAMPLE].values.astype(str))
        genes = np.intersect1d(a[GENE].values.astype(str), b[GENE].values.astype(str))
        if samples.size == 0 or genes.size == 0:
            continue
        k = min(opts.k, genes.size)
        pa, pb = (
            positions(a[SAMPLE].values, samples, "sample"),
            positions(b[SAMPLE].values, samples, "sample"),
        )
        ga, gb = positions(a[GENE].values, genes, "gene"), positions(b[GENE].values, genes, "gene")
        labels = labels_for(ds, label, samples)
        for explainer in sorted(set(explainers_of(a)) & set(explainers_of(b))):
            read = partial(_read_pair, a[ATTR + explainer], b[ATTR + explainer], pa, pb, ga, gb)
            meta = {"run_a": run_a, "run_b": run_b, "explainer": explainer, "k": k}
            out.append(_Comparison(meta, samples, labels, k, read))
    return out


def _between_models(
    ds: xr.Dataset, label: str, run: str, res: xr.Dataset, opts: EvaluateParams
) -> list[_Comparison]:
    """The comparisons between the per-model means of one run (``attr_<e>_model``), every pair."""
    out = []
    samples = np.asarray(res[SAMPLE].values).astype(str)
    labels = labels_for(ds, label, samples)
    k = min(opts.k, res.sizes[GENE])
    for explainer in explainers_of(res):
        var = res.get(f"{ATTR}{explainer}_model")
        if var is None or var.ndim != 3:
            continue
        dim = var.dims[0]
        models = np.asarray(var[dim].values) if dim in var.coords else np.arange(var.shape[0])
        for i, j in combinations(range(len(models)), 2):
            read = partial(_read_models, var, str(dim), i, j)
            meta = {
                "run_a": f"{run}/model{models[i]}",
                "run_b": f"{run}/model{models[j]}",
                "explainer": explainer,
                "k": k,
            }
            out.append(_Comparison(meta, samples, labels, k, read))
    return out


def _read_pair(
    va: xr.DataArray,
    vb: xr.DataArray,
    pa: np.ndarray,
    pb: np.ndarray,
    ga: np.ndarray,
    gb: np.ndarray,
    blk: slice,
) -> tuple[np.ndarray, np.ndarray]:
    """Block ``blk`` of the shared samples of two runs' attributions (positions ``pa``/``pb`` of the
    shared samples, ``ga``/``gb`` of the shared genes in each)."""
    return _values(va, pa[blk], ga), _values(vb, pb[blk], gb)


def _read_models(var: xr.DataArray, dim: str, i: int, j: int, blk: slice) -> tuple[np.ndarray, np.ndarray]:
    """Block ``blk`` of models ``i`` and ``j`` of a per-model attribution (model ``dim``, sample, gene)."""
    a, b = var.isel({dim: i, SAMPLE: blk}), var.isel({dim: j, SAMPLE: blk})
    return np.asarray(a.values), np.asarray(b.values)


def evaluation_device(device: str) -> str:
    """The torch device of the model passes: ``cuda`` when asked or (``auto``) when one is visible."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise InputError('evaluate device = "cuda": no CUDA device is visible; use device = "cpu" or "auto"')
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def sample_subset(samples: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A deterministic sorted subset of ``n`` sample positions."""
    if samples.size <= n:
        return np.arange(samples.size)
    return np.sort(np.random.default_rng([seed, 7]).choice(samples.size, size=n, replace=False))


def faithfulness_part(
    store_url: str,
    ds: xr.Dataset,
    label: str,
    runs: dict[str, xr.Dataset],
    opts: EvaluateParams,
    task: Task,
) -> pd.DataFrame | None:
    """PGI / PGU / random-floor curves of every attribution, with the model set's ensemble.

    Samples are evaluated in blocks of :data:`FAITHFULNESS_BLOCK` (fixed by sample order, so the
    numbers do not depend on who computes a block); ``task`` counts the blocks of every source
    and variant.
    """
    if opts.model_set not in list_model_sets(store_url) or not runs:
        return None
    from gexplain.pipelines.models.load import load_models

    loaded: dict[bytes, list] = {}
    chosen = []
    for src in attribution_sources(runs):
        res = runs[src.run]
        genes = np.asarray(res[GENE].values).astype(str)
        key = genes.tobytes()
        if key not in loaded:
            loaded[key] = load_models(store_url, opts.model_set, genes=genes, fill="mean")
        samples = np.asarray(res[SAMPLE].values).astype(str)
        pick = sample_subset(samples, opts.faithfulness_samples, opts.seed)
        labels = labels_for(ds, label, samples[pick])
        known = np.isin(labels, list(loaded[key][0].classes))
        if known.any():
            chosen.append((src, genes, loaded[key], samples, pick[known], labels[known]))
    task.report(0, len(opts.faithfulness) * sum(-(-c[4].size // FAITHFULNESS_BLOCK) for c in chosen))
    frames = []
    device = evaluation_device(opts.device)
    for src, genes, models, samples, pick, labels in chosen:
        res = runs[src.run]
        classes = list(models[0].classes)
        layer = models[0].layer
        spos = positions(ds[SAMPLE].values, samples[pick], "sample")
        gpos = positions(ds[GENE].values, genes, "gene")
        x = _values(ds[layer], spos, gpos).astype(np.float64)
        attr = _values(res[ATTR + src.explainer], pick, slice(None))
        targets = np.array([classes.index(c) for c in labels])
        predict = Ensemble([m.module for m in models], device=device)
        layer_values = ds[layer].isel({GENE: gpos})
        blocks = _blocks(pick.size, FAITHFULNESS_BLOCK)
        for variant in opts.faithfulness:
            if variant == "openxai":
                ks = list(opts.faithfulness_ks) or openxai_k_grid(genes.size)
                ks = [k for k in ks if k <= genes.size]
                scale = np.asarray(layer_values.std(SAMPLE).values, dtype=np.float64)
                scale = np.where(scale > 0, scale, 1.0)
                parts = []
                for blk in blocks:
                    parts.append(
                        perturbation_sample_gaps(
                            predict,
                            x[blk],
                            attr[blk],
                            ks,
                            scale=scale,
                            sample_ids=spos[blk],
                            sigma=opts.faithfulness_sigma,
                            n_perturbations=opts.faithfulness_perturbations,
                            n_random=opts.n_random,
                            seed=opts.seed,
                        )  # fmt: skip
                    )
                    task.advance()
            else:
                if opts.reference == "zero":
                    reference = np.zeros(genes.size)
                else:
                    reference = np.asarray(layer_values.mean(SAMPLE).values, dtype=np.float64)
                ks = list(opts.faithfulness_ks) or default_k_grid(genes.size)
                ks = [k for k in ks if k <= genes.size]
                parts = []
                for blk in blocks:
                    parts.append(
                        replacement_sample_gaps(
                            predict,
                            x[blk],
                            attr[blk],
                            targets[blk],
                            ks,
                            reference,
                            sample_ids=spos[blk],
                            n_random=opts.n_random,
                            seed=opts.seed,
                        )  # fmt: skip
                    )
                    task.advance()
            table = gap_table(np.concatenate(parts), ks, opts.n_random, variant)
            frames.append(with_areas(table).assign(source=src.name, n_samples=int(pick.size)))
    return pd.concat(frames, ignore_index=True) if frames else None


def _de_called(de: dict[str, xr.Dataset], genes: np.ndarray, alpha: float) -> dict[str, np.ndarray]:
    """Class -> DE-called genes (padj < alpha, aligned to ``genes``) of the first contrast testing it."""
    out: dict[str, np.ndarray] = {}
    for _, d in sorted(de.items()):
        level = de_test_level(d)
        if level is None or level in out:
            continue
        padj = pd.Series(np.asarray(d["padj"].values, dtype=np.float64), index=d[GENE].values.astype(str))
        out[level] = np.nan_to_num(padj.reindex(genes).to_numpy(), nan=1.0) < alpha
    return out


def biology_part(
    ds: xr.Dataset,
    label: str,
    runs: dict[str, xr.Dataset],
    de: dict[str, xr.Dataset],
    opts: EvaluateParams,
    task: Task,
) -> dict[str, pd.DataFrame]:
    """Per-class top genes and their overlaps against chance; ``task`` counts the sample blocks
    read and one overlap step per source."""
    tops, overlaps = [], []
    store_labels = np.asarray(ds[label].values).astype(str)
    tpm_cache: dict[tuple[tuple[str, ...], bytes], tuple[np.ndarray, np.ndarray]] = {}
    sources = attribution_sources(runs)
    task.report(0, sum(len(_blocks(runs[s.run].sizes[SAMPLE], opts.block)) + 1 for s in sources))
    for src in sources:
        res = runs[src.run]
        samples = np.asarray(res[SAMPLE].values).astype(str)
        genes = np.asarray(res[GENE].values).astype(str)
        labels = labels_for(ds, label, samples)
        classes = sorted(set(labels))
        counts = TopGeneCounts.empty(classes, genes.size)
        var = res[ATTR + src.explainer]
        for blk in _blocks(samples.size, opts.block):
            counts.add(np.asarray(var.isel({SAMPLE: blk}).values), labels[blk], opts.k)
            task.advance()
        top = counts.table(genes, opts.min_samples)
        tops.append(top.assign(source=src.name))
        enhanced = house = None
        if "tpm" in ds:
            key = (tuple(classes), genes.tobytes())
            if key not in tpm_cache:
                tpm_cache[key] = _class_tpm(ds, store_labels, genes, classes, opts.block)
            means, medians = tpm_cache[key]
            enhanced, house = tissue_enhanced(means), housekeeping(medians)
        ov = class_overlaps(top, genes, classes, enhanced, house, _de_called(de, genes, opts.alpha))
        if not ov.empty:
            overlaps.append(ov.assign(source=src.name))
        task.advance()
    out = {}
    if tops:
        out["top_genes"] = pd.concat(tops, ignore_index=True)
    if overlaps:
        out["class_overlaps"] = pd.concat(overlaps, ignore_index=True)
    return out


def hidden_part(
    ds: xr.Dataset,
    label: str,
    runs: dict[str, xr.Dataset],
    de: dict[str, xr.Dataset],
    opts: EvaluateParams,
    task: Task,
) -> pd.DataFrame | None:
    """Hidden-to-DE genes of every (attribution source, DE result of one class) pair, which
    ``task`` counts; None when there is none."""
    pairs = []
    for src in attribution_sources(runs):
        res = runs[src.run]
        labels = labels_for(ds, label, np.asarray(res[SAMPLE].values).astype(str))
        for group, d in sorted(de.items()):
            level = de_test_level(d)
            if level is not None and level in labels:
                pairs.append((src, labels, group, level))
    task.report(0, len(pairs))
    rows = []
    for src, labels, group, level in pairs:
        rows.append(task.step(_hidden_rows(src, runs[src.run], labels, group, de[group], level, opts)))
    return pd.concat(rows, ignore_index=True) if rows else None


def _class_tpm(
    ds: xr.Dataset, store_labels: np.ndarray, genes: np.ndarray, classes: list[str], block: int
) -> tuple[np.ndarray, np.ndarray]:
    """(class, gene) means and medians of TPM for ``genes``, read in gene blocks of all samples.

    A block holds at most :data:`TPM_BLOCK_VALUES` values (and ``block`` genes), so memory does not grow
    with the cohort beyond one block.
    """
    gpos = positions(ds[GENE].values, genes, "gene")
    keep = np.isin(store_labels, classes)
    means = np.zeros((len(classes), genes.size))
    medians = np.zeros((len(classes), genes.size))
    width = max(1, min(block, TPM_BLOCK_VALUES // max(int(keep.sum()), 1)))
    for blk in _blocks(genes.size, width):
        tpm = np.asarray(ds["tpm"].isel({GENE: gpos[blk]}).values)[keep]
        _, means[:, blk], medians[:, blk] = class_expression_stats(tpm, store_labels[keep])
    return means, medians


def _hidden_rows(
    src: AttributionSource,
    res: xr.Dataset,
    labels: np.ndarray,
    group: str,
    d: xr.Dataset,
    level: str,
    opts: EvaluateParams,
) -> pd.DataFrame:
    """Hidden-to-DE genes of ``src`` for the DE result ``group`` (``d``) of class ``level``."""
    genes = np.asarray(res[GENE].values).astype(str)
    name = ATTR + src.explainer
    pick = np.nonzero(labels == level)[0][: opts.max_class_samples]
    attr = np.asarray(res[name].isel({SAMPLE: pick}).values)
    std = np.asarray(res[name + "_std"].isel({SAMPLE: pick}).values) if name + "_std" in res else None
    count = np.asarray(res[name + "_count"].isel({SAMPLE: pick}).values) if name + "_count" in res else None
    table = pd.DataFrame(
        {c: np.asarray(d[c].values, dtype=np.float64) for c in ("padj", "log2FoldChange", "baseMean")},
        index=d[GENE].values.astype(str),
    )
    h = hidden_to_de(
        attr, std, count, labels[pick], genes, table, level,
        k=opts.k, min_frac=opts.min_frac, min_z=opts.min_z, alpha=opts.alpha,
    )  # fmt: skip
    return h.assign(source=src.name, contrast=group, label=level)


def _labelled_only(
    ds: xr.Dataset, label: str, runs: dict[str, xr.Dataset], opts: EvaluateParams
) -> tuple[xr.Dataset, dict[str, xr.Dataset]]:
    """The store and the runs without unlabelled samples (the one label policy, ``opts.unlabelled``)."""
    keep = labelled_samples(np.asarray(ds[label].values), label, opts.unlabelled)
    if keep.all():
        return ds, runs
    ds = ds.isel({SAMPLE: np.flatnonzero(keep)})
    ids = np.asarray(ds[SAMPLE].values).astype(str)
    runs = {
        name: res.isel({SAMPLE: np.flatnonzero(np.isin(np.asarray(res[SAMPLE].values).astype(str), ids))})
        for name, res in runs.items()
    }
    return ds, runs


def evaluate_store(
    store_url: str,
    opts: EvaluateParams,
    csv_dir: Path | None = None,
    progress: Progress | None = None,
    *,
    finish: bool = True,
) -> EvaluateOutput:
    """Run every evaluation whose inputs exist and write its tables.

    Parameters
    ----------
    store_url
        The store (with ``results/explain/*`` and/or ``results/de/*``).
    opts
        Options.
    csv_dir
        Folder for CSV copies of the tables (created).
    progress
        Progress reporting.
    finish
        Flag the evaluation complete at the end; False when the caller writes more tables into it
        and then calls :func:`gexplain.pipelines.evaluate.tables.finish_evaluation` itself.

    Returns
    -------
    EvaluateOutput
        Tables by name and their store groups (``evaluate/<name>/<table>``).
    """
    progress = progress or SILENT
    ds = open_store(store_url)
    label = label_column(ds, opts.label)
    runs = explain_runs(store_url, list(opts.explain_runs) or None)
    de = de_results(store_url, list(opts.de_methods) or None)
    ds, runs = _labelled_only(ds, label, runs, opts)
    out = EvaluateOutput()
    begin_evaluation(store_url, opts.name)  # its tables count only once the evaluation is finished
    if csv_dir is not None:
        csv_dir.mkdir(parents=True, exist_ok=True)

    def emit(table: str, df: pd.DataFrame | None) -> None:
        if df is None or df.empty:
            return
        out.tables[table] = df
        out.groups.append(write_table(store_url, opts.name, table, df, csv_dir))

    with progress.task("evaluate: ground truth (sources)") as task:
        emit("ground_truth", ground_truth_part(ds, runs, de, opts, task))
    with progress.task("evaluate: reproducibility (sample blocks)") as task:
        rep = reproducibility_part(ds, label, runs, opts, task)
    if rep is not None:
        emit("reproducibility_samples", rep[0])
        emit("reproducibility_classes", rep[1])
    with progress.task("evaluate: faithfulness (sample blocks)") as task:
        emit("faithfulness", faithfulness_part(store_url, ds, label, runs, opts, task))
    with progress.task("evaluate: biology (sample blocks)") as task:
        for table, df in biology_part(ds, label, runs, de, opts, task).items():
            emit(table, df)
    with progress.task("evaluate: hidden-to-DE (source x contrast)") as task:
        emit("hidden_to_de", hidden_part(ds, label, runs, de, opts, task))
    if finish:
        finish_evaluation(store_url, opts.name)
    return out
