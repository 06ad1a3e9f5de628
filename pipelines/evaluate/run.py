"""Evaluate a store's attributions and DE results; every table goes to the store and to CSV.

Each part runs only when its inputs exist (ground truth needs ``truth_informative``, faithfulness
needs a model set, reproducibility needs two runs, DE overlaps need DE results). Attribution
matrices are streamed in sample blocks, so memory is bounded by ``block`` x genes, except for the
per-class hidden-to-DE step, which holds at most ``max_class_samples`` samples of one class.

Where it runs: each part plans small tasks, one per (source, sample block), (comparison, sample
block), (source, variant, faithfulness block), (gene block) or (source, DE contrast), and runs them
with :func:`gexplain.pipelines.evaluate.dispatch.run_tasks` on the run's Dask scheduler (local
threads by default; a distributed ``Client`` or Dask-on-Ray under ``--dask``), at most
``workers`` at a time. A task gets the store URL and a key, opens the store itself, reads its one
block and returns a small partial (per-sample rows, per-class counts, per-gene sums); the driver
combines the partials in key order, so the tables are bit-identical whatever the number of
workers or the order in which they finish (``tests/test_evaluate_distributed.py``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.evaluate.biology import (
    TopGeneCounts,
    class_overlaps,
    housekeeping,
    tissue_enhanced,
)
from gexplain.pipelines.evaluate.dispatch import Call, resolve_workers, run_tasks, torch_threads
from gexplain.pipelines.evaluate.faithfulness import (
    default_k_grid,
    gap_table,
    openxai_k_grid,
    with_areas,
)
from gexplain.pipelines.evaluate.ground_truth import ground_truth_table
from gexplain.pipelines.evaluate.inputs import (
    ATTR,
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
from gexplain.pipelines.evaluate.reproducibility import summarise_per_class
from gexplain.pipelines.evaluate.tables import begin_evaluation, finish_evaluation, write_table
from gexplain.pipelines.evaluate.tasks import (
    HiddenKey,
    Where,
    class_tpm_block,
    compact,
    hidden_pair,
    importance_block,
    models_block,
    pair_block,
    top_counts_block,
)
from gexplain.pipelines.labels import labelled_samples
from gexplain.pipelines.progress import SILENT, Progress, Task
from gexplain.storage.checkpoints import list_checkpoints, list_model_sets, read_metadata
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


@dataclass
class _Inputs:
    """What the driver plans from: lazy views of the labelled samples and where they are stored.

    Attributes
    ----------
    where
        The store and this evaluation's token (what every task gets).
    ds
        The store, labelled samples only (lazy; the driver reads 1-d variables of it).
    label
        The label column.
    runs
        Explain runs, labelled samples only (lazy).
    de
        DE results.
    store_rows
        (sample,) positions in the stored store of the samples of ``ds``.
    run_rows
        Run -> (sample,) positions in the stored run of the samples of ``runs[run]``.
    workers
        Tasks in flight at once.
    """

    where: Where
    ds: xr.Dataset
    label: str
    runs: dict[str, xr.Dataset]
    de: dict[str, xr.Dataset]
    store_rows: np.ndarray
    run_rows: dict[str, np.ndarray]
    workers: int

    def store_rows_of(self, run: str) -> np.ndarray:
        """Positions in the stored store of the samples of ``runs[run]``."""
        ids = np.asarray(self.runs[run][SAMPLE].values)
        return self.store_rows[positions(self.ds[SAMPLE].values, ids, "sample")]


def ground_truth_part(inp: _Inputs, opts: EvaluateParams, task: Task) -> pd.DataFrame | None:
    """Ground-truth table of every attribution and DE result, or None without ground truth;
    ``task`` counts the sources (attribution sources and DE results).

    The importance of a source (mean |attribution| over samples) is summed per sample block by
    tasks and divided once here, the block sums added in block order.
    """
    if "truth_informative" not in inp.ds:
        return None
    sources = attribution_sources(inp.runs)
    task.report(0, len(sources) + len(inp.de))
    calls: list[Call] = []
    steps: list[float] = []
    owners: list[int] = []
    for i, src in enumerate(sources):
        rows = inp.run_rows[src.run]
        blocks = _blocks(rows.size, opts.block)
        for j, blk in enumerate(blocks):
            calls.append((importance_block, (inp.where, src.run, src.explainer, compact(rows[blk]))))
            steps.append(1.0 if j == len(blocks) - 1 else 0.0)
            owners.append(i)
        if not blocks:
            task.advance()
    parts = run_tasks(calls, inp.workers, task, steps)
    frames = []
    for i, src in enumerate(sources):
        genes = np.asarray(inp.runs[src.run][GENE].values)
        total, n = np.zeros(genes.size), 0
        for (sums, count), owner in zip(parts, owners, strict=True):
            if owner == i:
                total, n = total + sums, n + count
        imp = total / n if n else np.full(genes.size, np.nan)
        frames.append(_truth_rows(inp.ds, genes, {src.name: imp}, {}, opts))
    for name, d in inp.de.items():
        frames.append(task.step(_truth_rows(inp.ds, np.asarray(d[GENE].values), {}, {name: d}, opts)))
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
    calls
        One task per sample block, each returning per-sample Spearman and top-k overlap.
    """

    meta: dict[str, object]
    samples: np.ndarray
    labels: np.ndarray
    calls: list[Call]


def reproducibility_part(
    inp: _Inputs, opts: EvaluateParams, task: Task
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Per-sample and per-class reproducibility between pairs of runs (shared explainers), and
    between the models of a run that kept per-model means (``run_a`` = ``<run>/model<i>``);
    one task per (comparison, sample block), which ``task`` counts."""
    comparisons = _between_runs(inp, opts)
    for run in sorted(inp.runs):
        comparisons += _between_models(inp, run, opts)
    calls = [call for c in comparisons for call in c.calls]
    task.report(0, len(calls))
    parts = iter(run_tasks(calls, inp.workers, task))
    per_sample: list[pd.DataFrame] = []
    per_class: list[pd.DataFrame] = []
    for c in comparisons:
        got = [next(parts) for _ in c.calls]
        ps = pd.DataFrame(
            {
                "sample": c.samples.astype(str),
                "label": c.labels.astype(str),
                "spearman": np.concatenate([g[0] for g in got]),
                "top_k_overlap": np.concatenate([g[1] for g in got]),
            }
        )
        per_sample.append(ps.assign(**c.meta))
        per_class.append(summarise_per_class(ps.drop(columns="sample")).assign(**c.meta))
    if not per_sample:
        return None
    return pd.concat(per_sample, ignore_index=True), pd.concat(per_class, ignore_index=True)


def _between_runs(inp: _Inputs, opts: EvaluateParams) -> list[_Comparison]:
    """The comparisons between the pairs of runs of ``opts.pairs`` (all pairs when empty), one per
    explainer they share, over their shared samples and genes."""
    runs = inp.runs
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
        ra = inp.run_rows[run_a][positions(a[SAMPLE].values, samples, "sample")]
        rb = inp.run_rows[run_b][positions(b[SAMPLE].values, samples, "sample")]
        labels = labels_for(inp.ds, inp.label, samples)
        blocks = _blocks(samples.size, opts.block)
        for explainer in sorted(set(explainers_of(a)) & set(explainers_of(b))):
            calls: list[Call] = [
                (pair_block, (inp.where, run_a, run_b, explainer, compact(ra[blk]), compact(rb[blk]), k))
                for blk in blocks
            ]
            meta = {"run_a": run_a, "run_b": run_b, "explainer": explainer, "k": k}
            out.append(_Comparison(meta, samples, labels, calls))
    return out


def _between_models(inp: _Inputs, run: str, opts: EvaluateParams) -> list[_Comparison]:
    """The comparisons between the per-model means of one run (``attr_<e>_model``), every pair."""
    out = []
    res = inp.runs[run]
    samples = np.asarray(res[SAMPLE].values).astype(str)
    labels = labels_for(inp.ds, inp.label, samples)
    k = min(opts.k, res.sizes[GENE])
    rows = inp.run_rows[run]
    blocks = _blocks(samples.size, opts.block)
    for explainer in explainers_of(res):
        name = f"{ATTR}{explainer}_model"
        var = res.get(name)
        if var is None or var.ndim != 3:
            continue
        dim = var.dims[0]
        models = np.asarray(var[dim].values) if dim in var.coords else np.arange(var.shape[0])
        for i, j in combinations(range(len(models)), 2):
            calls: list[Call] = [
                (models_block, (inp.where, run, name, i, j, compact(rows[blk]), k)) for blk in blocks
            ]
            meta = {
                "run_a": f"{run}/model{models[i]}",
                "run_b": f"{run}/model{models[j]}",
                "explainer": explainer,
                "k": k,
            }
            out.append(_Comparison(meta, samples, labels, calls))
    return out


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


def _model_set_info(store_url: str, model_set: str) -> tuple[list[str], str]:
    """Classes and input layer of a model set (its first replicate's metadata)."""
    meta = read_metadata(store_url, model_set, list_checkpoints(store_url, model_set)[0])
    return [str(c) for c in meta["classes"]], str(meta["layer"])


def faithfulness_part(inp: _Inputs, opts: EvaluateParams, task: Task) -> pd.DataFrame | None:
    """PGI / PGU / random-floor curves of every attribution, with the model set's ensemble.

    One task per (source, variant, block of :data:`FAITHFULNESS_BLOCK` samples), fixed by sample
    order, so the numbers do not depend on who computes a block; ``task`` counts them. The
    per-gene noise scale and replacement reference (array reductions over the samples) run as
    Dask graphs on the current scheduler.
    """
    store_url = inp.where.store_url
    if opts.model_set not in list_model_sets(store_url) or not inp.runs:
        return None
    from gexplain.pipelines.evaluate.faithfulness_tasks import FaithfulnessKey, faithfulness_block

    classes, layer = _model_set_info(store_url, opts.model_set)
    device = evaluation_device(opts.device)
    threads = torch_threads(inp.workers)
    stats: dict[tuple[bytes, str], np.ndarray] = {}
    plans: list[tuple[str, str, list[int], int, list[Call]]] = []
    for src in attribution_sources(inp.runs):
        res = inp.runs[src.run]
        genes = np.asarray(res[GENE].values).astype(str)
        samples = np.asarray(res[SAMPLE].values).astype(str)
        pick = sample_subset(samples, opts.faithfulness_samples, opts.seed)
        labels = labels_for(inp.ds, inp.label, samples[pick])
        pick = pick[np.isin(labels, classes)]
        if not pick.size:
            continue
        ids = positions(inp.ds[SAMPLE].values, samples[pick], "sample")
        rows, store_rows = inp.run_rows[src.run][pick], inp.store_rows[ids]
        for variant in opts.faithfulness:
            ks = list(opts.faithfulness_ks) or (
                openxai_k_grid(genes.size) if variant == "openxai" else default_k_grid(genes.size)
            )
            ks = [k for k in ks if k <= genes.size]
            kind = "scale" if variant == "openxai" else opts.reference
            key = (genes.tobytes(), kind)
            if key not in stats:
                stats[key] = _gene_stat(inp.ds, layer, genes, kind)
            calls: list[Call] = []
            for blk in _blocks(pick.size, FAITHFULNESS_BLOCK):
                fk = FaithfulnessKey(
                    run=src.run, explainer=src.explainer, variant=variant, model_set=opts.model_set,
                    rows=compact(rows[blk]), store_rows=compact(store_rows[blk]), ids=compact(ids[blk]),
                    label=inp.label, ks=tuple(int(k) for k in ks), stat=stats[key],
                    sigma=opts.faithfulness_sigma, n_perturbations=opts.faithfulness_perturbations,
                    n_random=opts.n_random, seed=opts.seed, device=device, torch_threads=threads,
                )  # fmt: skip
                calls.append((faithfulness_block, (inp.where, fk)))
            plans.append((src.name, variant, ks, int(pick.size), calls))
    calls = [c for plan in plans for c in plan[4]]
    task.report(0, len(calls))
    import torch

    before = torch.get_num_threads()
    try:
        parts = iter(run_tasks(calls, inp.workers, task))
    finally:
        torch.set_num_threads(before)
    frames = []
    for name, variant, ks, n, plan_calls in plans:
        gaps = np.concatenate([next(parts) for _ in plan_calls])
        table = gap_table(gaps, ks, opts.n_random, variant)
        frames.append(with_areas(table).assign(source=name, n_samples=n))
    return pd.concat(frames, ignore_index=True) if frames else None


def _gene_stat(ds: xr.Dataset, layer: str, genes: np.ndarray, kind: str) -> np.ndarray:
    """Per-gene statistic of a layer over the evaluated samples, float64 (gene,): the standard
    deviation (``"scale"``, zeros replaced by 1), the mean (``"mean"``) or zeros (``"zero"``).
    The reductions are Dask graphs over the stored chunks, computed on the current scheduler."""
    if kind == "zero":
        return np.zeros(genes.size)
    values = ds[layer].isel({GENE: positions(ds[GENE].values, genes, "gene")})
    if kind == "scale":
        scale = np.asarray(values.std(SAMPLE).values, dtype=np.float64)
        return np.where(scale > 0, scale, 1.0)
    return np.asarray(values.mean(SAMPLE).values, dtype=np.float64)


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


def biology_part(inp: _Inputs, opts: EvaluateParams, task: Task) -> dict[str, pd.DataFrame]:
    """Per-class top genes and their overlaps against chance; ``task`` counts the sample blocks
    read and one overlap step per source.

    One task per (source, sample block) returns that block's per-class top-k counts (added in
    block order); class TPM means and medians are one task per gene block.
    """
    sources = attribution_sources(inp.runs)
    calls: list[Call] = []
    plans = []
    tpm_plans: dict[tuple[tuple[str, ...], bytes], list[tuple[slice, int]]] = {}
    tpm_calls: list[Call] = []
    store_labels = np.asarray(inp.ds[inp.label].values).astype(str)
    for src in sources:
        res = inp.runs[src.run]
        samples = np.asarray(res[SAMPLE].values).astype(str)
        genes = np.asarray(res[GENE].values).astype(str)
        classes = tuple(sorted(set(labels_for(inp.ds, inp.label, samples))))
        rows, srows = inp.run_rows[src.run], inp.store_rows_of(src.run)
        first = len(calls)
        for blk in _blocks(samples.size, opts.block):
            args = (inp.where, src.run, src.explainer, compact(rows[blk]), compact(srows[blk]), inp.label)
            calls.append((top_counts_block, (*args, classes, opts.k)))
        plans.append((src, genes, classes, first, len(calls)))
        key = (classes, genes.tobytes())
        if "tpm" in inp.ds and key not in tpm_plans:
            gpos = positions(inp.ds[GENE].values, genes, "gene")
            n_keep = int(np.isin(store_labels, classes).sum())
            width = max(1, min(opts.block, TPM_BLOCK_VALUES // max(n_keep, 1)))
            tpm_plans[key] = []
            for blk in _blocks(genes.size, width):
                tpm_plans[key].append((blk, len(tpm_calls)))
                tpm_calls.append((class_tpm_block, (inp.where, inp.label, classes, compact(gpos[blk]))))
    task.report(0, len(calls) + len(sources))
    results = run_tasks(calls + tpm_calls, inp.workers, task, [1.0] * len(calls) + [0.0] * len(tpm_calls))
    counts_parts, tpm_parts = results[: len(calls)], results[len(calls) :]
    tpm: dict[tuple[tuple[str, ...], bytes], tuple[np.ndarray, np.ndarray]] = {}
    for key, blocks in tpm_plans.items():
        means = np.concatenate([tpm_parts[i][0] for _, i in blocks], axis=1)
        medians = np.concatenate([tpm_parts[i][1] for _, i in blocks], axis=1)
        tpm[key] = (means, medians)
    tops, overlaps = [], []
    for src, genes, classes, lo, hi in plans:
        counts = TopGeneCounts.empty(list(classes), genes.size)
        for part in counts_parts[lo:hi]:
            counts.n_top += part.n_top
            counts.sum_abs += part.sum_abs
            counts.n += part.n
        top = counts.table(genes, opts.min_samples)
        tops.append(top.assign(source=src.name))
        enhanced = house = None
        key = (classes, genes.tobytes())
        if key in tpm:
            means, medians = tpm[key]
            enhanced, house = tissue_enhanced(means), housekeeping(medians)
        ov = class_overlaps(top, genes, list(classes), enhanced, house, _de_called(inp.de, genes, opts.alpha))
        if not ov.empty:
            overlaps.append(ov.assign(source=src.name))
        task.advance()
    out = {}
    if tops:
        out["top_genes"] = pd.concat(tops, ignore_index=True)
    if overlaps:
        out["class_overlaps"] = pd.concat(overlaps, ignore_index=True)
    return out


def hidden_part(inp: _Inputs, opts: EvaluateParams, task: Task) -> pd.DataFrame | None:
    """Hidden-to-DE genes of every (attribution source, DE result of one class) pair, one task
    each (at most ``max_class_samples`` samples of the class), which ``task`` counts; None when
    there is none."""
    calls: list[Call] = []
    for src in attribution_sources(inp.runs):
        res = inp.runs[src.run]
        labels = labels_for(inp.ds, inp.label, np.asarray(res[SAMPLE].values).astype(str))
        for group, d in sorted(inp.de.items()):
            level = de_test_level(d)
            if level is not None and level in labels:
                pick = np.nonzero(labels == level)[0][: opts.max_class_samples]
                key = HiddenKey(
                    run=src.run, explainer=src.explainer, rows=compact(inp.run_rows[src.run][pick]),
                    group=group, level=level, k=opts.k, min_frac=opts.min_frac, min_z=opts.min_z,
                    alpha=opts.alpha,
                )  # fmt: skip
                calls.append((hidden_pair, (inp.where, key)))
    task.report(0, len(calls))
    rows = run_tasks(calls, inp.workers, task)
    return pd.concat(rows, ignore_index=True) if rows else None


def _labelled_only(
    ds: xr.Dataset, label: str, runs: dict[str, xr.Dataset], opts: EvaluateParams
) -> tuple[xr.Dataset, dict[str, xr.Dataset], np.ndarray, dict[str, np.ndarray]]:
    """The store and the runs without unlabelled samples (the one label policy, ``opts.unlabelled``),
    and the stored positions of the samples kept in each (what tasks read)."""
    keep = labelled_samples(np.asarray(ds[label].values), label, opts.unlabelled)
    if keep.all():
        return ds, runs, np.arange(ds.sizes[SAMPLE]), {n: np.arange(r.sizes[SAMPLE]) for n, r in runs.items()}
    store_rows = np.flatnonzero(keep)
    ds = ds.isel({SAMPLE: store_rows})
    ids = np.asarray(ds[SAMPLE].values).astype(str)
    run_rows = {
        n: np.flatnonzero(np.isin(np.asarray(r[SAMPLE].values).astype(str), ids)) for n, r in runs.items()
    }
    runs = {name: res.isel({SAMPLE: run_rows[name]}) for name, res in runs.items()}
    return ds, runs, store_rows, run_rows


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
    ds, runs, store_rows, run_rows = _labelled_only(ds, label, runs, opts)
    where = Where(store_url, uuid.uuid4().hex)
    inp = _Inputs(where, ds, label, runs, de, store_rows, run_rows, resolve_workers(opts.workers))
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
        emit("ground_truth", ground_truth_part(inp, opts, task))
    with progress.task("evaluate: reproducibility (sample blocks)") as task:
        rep = reproducibility_part(inp, opts, task)
    if rep is not None:
        emit("reproducibility_samples", rep[0])
        emit("reproducibility_classes", rep[1])
    with progress.task("evaluate: faithfulness (sample blocks)") as task:
        emit("faithfulness", faithfulness_part(inp, opts, task))
    with progress.task("evaluate: biology (sample blocks)") as task:
        for table, df in biology_part(inp, opts, task).items():
            emit(table, df)
    with progress.task("evaluate: hidden-to-DE (source x contrast)") as task:
        emit("hidden_to_de", hidden_part(inp, opts, task))
    if finish:
        finish_evaluation(store_url, opts.name)
    return out
