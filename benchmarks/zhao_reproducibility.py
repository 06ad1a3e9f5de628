"""Zhao et al. (2022) Figures 1 and 2, in shape, on a simulated cohort.

Figure 1 (reproducibility without optimisation): integrated gradients of one explanation per
model (one dropout repeat, one reference) are compared per sample, by Spearman correlation of
|attribution| and by top-100 overlap, *intra-model* (the same trained model, two runs with
different seeds) and *inter-model* (two replicates trained with different seeds). The paper
reports low reproducibility without optimisation, intra-model above inter-model.

Figure 2 (saturation): the same metrics between disjoint aggregates of ``n`` items, as ``n``
doubles, for three kinds of item: dropout repeats, references and trained models
(:func:`gexplain.pipelines.evaluate.saturation_stage.saturation_part`, Zhao's subsampling protocol). The
paper reports curves that rise and flatten (saturate) as more items are averaged.

The repeats axis also gets its exact infinite-repeat limit: the ``expected`` mode of the
attribution engine (dropout off, the mean of the dropout mask) gives the attribution every
K-repeat average converges to, for the same model, samples and cohort references. Against it we
report, for K = 1, 2, 4, ... up to the pool, the Spearman and top-100 overlap of a K-repeat average
with the limit, and the mean squared deviation next to the exact variance of a K-repeat mean,
``p/(1-p) sum_h L_h^2 / K`` (a check that the limit and the pool share their references). The
expected-mode attribution has no repeat noise, so its reproducibility across seeds (model 0, seeds
0 and 1, R cohort references each) is governed by the references only: it is reported for R = 1, 2,
4, ... up to half the pool (the ``references`` axis pools single references in ``deterministic``
mode, which is the same dropout-off attribution).

Pipeline: ``simulate_cohort`` (19,241 genes, ``tissues`` classes) -> train ``models`` MLP replicates
(gexplain defaults, ``epochs`` max) -> two ``run_explain`` runs of model 0 (seeds 0, 1) and one of
model 1 (seed 2; explicit repeats: ``mc_dropout``, 1 repeat, 1 ``universal`` reference, 20 steps) ->
``compare_runs`` -> saturation pools of ``pool`` items on ``pool_samples`` samples (the repeats pool
from the exact per-unit decomposition, so large pools are cheap) -> ``expected``-mode
``explain_block`` runs of model 0 on the same samples.

Usage::

    python benchmarks/zhao_reproducibility.py                       # 5,000 x 19,241, 10 tissues
    python benchmarks/zhao_reproducibility.py --samples 1000        # fewer samples
    python benchmarks/zhao_reproducibility.py --quick               # 300 x 2,000, 4 tissues, pools of 16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import write_result  # noqa: E402


def _explain(url: str, name: str, model: int, seed: int, spec) -> pd.DataFrame:  # noqa: ANN001
    from gexplain.pipelines.explain.engine import run_explain
    from gexplain.storage.store import read_result

    run_explain(url, spec.model_copy(update={"models": [model]}), name=name, seed=seed)
    return np.asarray(
        read_result(url, f"explain/{name}")["attr_integrated_gradients"].values, dtype=np.float64
    )


def expected_limits(
    url: str, pick: np.ndarray, runs: dict[str, tuple[str, int]], n_steps: int
) -> dict[str, np.ndarray]:
    """Expected-mode integrated gradients of model 0 on the samples ``pick``.

    Parameters
    ----------
    url
        Store with the default model set.
    pick
        Sample positions, shape (samples,) (the saturation subset).
    runs
        Name -> (references, seed), e.g. ``("universal:1", 0)``; cohort-scope references keyed by
        (seed, class), as the saturation pools draw them.
    n_steps
        Integrated-gradients steps.

    Returns
    -------
    dict
        Name -> float32 (sample, gene), attribution units.
    """
    from gexplain.pipelines.explain.compute import compute_reference_stats, explain_block
    from gexplain.pipelines.explain.engine import model_set_info, sample_targets
    from gexplain.pipelines.explain.params import ExplainParams
    from gexplain.pipelines.models.load import load_models
    from gexplain.storage.store import open_store

    ds = open_store(url)
    info = model_set_info(url, "default", None)
    targets = sample_targets(ds, info)
    model = load_models(url, "default", genes=np.asarray(ds["gene"].values).astype(str))[0]
    x = np.asarray(ds[info.layer].isel(sample=pick).values, dtype=np.float32)
    ref_stats = compute_reference_stats(ds[info.layer].data, targets, medians=True)
    out = {}
    for name, (references, seed) in runs.items():
        spec = ExplainParams(
            explainers=["integrated_gradients"],
            references=references,
            mode="expected",
            repeats=1,
            repeat_std=False,
            n_steps=n_steps,
        )
        partial = explain_block(
            [model.module], [model.replicate], x, targets[pick], pick, range(1), ref_stats, spec, seed
        )
        out[name] = partial.finalize()["integrated_gradients"][0]
    return out


def limit_curve(
    pool: np.ndarray, limit: np.ndarray, k: int, exact_var: float | None, seed: int = 0, groups: int = 8
) -> pd.DataFrame:
    """K-repeat averages of ``pool`` against the infinite-repeat ``limit``, K = 1, 2, 4, ... <= items.

    Parameters
    ----------
    pool
        Per-repeat attributions, (item, sample, gene).
    limit
        The expected-mode attribution, (sample, gene).
    k
        Top-k size.
    exact_var
        Exact variance of one repeat around the limit, mean over samples and genes (or None).
    seed
        Seed of the permutation per K.
    groups
        Disjoint K-repeat averages per K (at most items // K).

    Returns
    -------
    pandas.DataFrame
        One row per K: ``n``, ``spearman_mean``, ``top_k_overlap_mean``, ``msd`` (mean squared
        deviation from the limit), ``exact_var_mean`` (``exact_var / K``).
    """
    from gexplain.pipelines.evaluate.reproducibility import per_sample_spearman, top_k_overlap

    n_items, rows, n = pool.shape[0], [], 1
    while n <= n_items:
        order = np.random.default_rng([seed, n]).permutation(n_items)
        rho, ovl, msd = [], [], []
        for g in range(min(n_items // n, groups)):
            avg = pool[order[g * n : (g + 1) * n]].astype(np.float64).mean(axis=0)
            rho.append(per_sample_spearman(avg, limit))
            ovl.append(top_k_overlap(avg, limit, k))
            msd.append(float(np.mean((avg - limit) ** 2)))
        rows.append(
            {
                "n": n,
                "spearman_mean": float(np.nanmean(np.concatenate(rho))),
                "top_k_overlap_mean": float(np.mean(np.concatenate(ovl))),
                "msd": float(np.mean(msd)),
                "exact_var_mean": exact_var / n if exact_var is not None else float("nan"),
            }
        )
        n *= 2
    return pd.DataFrame(rows)


def expected_study(url: str, opts, params, n_genes: int) -> dict[str, pd.DataFrame]:  # noqa: ANN001
    """The repeats pool against its expected-mode limit, and the limit's reproducibility across seeds.

    Returns ``limit_curve`` (:func:`limit_curve`) and ``seeds_curve`` (one row per R: Spearman and
    top-100 overlap of the expected-mode attributions of seeds 0 and 1 with R references each).
    """
    from gexplain.pipelines.evaluate.reproducibility import per_sample_spearman, top_k_overlap
    from gexplain.pipelines.evaluate.run import sample_subset
    from gexplain.pipelines.evaluate.saturation_stage import EXACT_REPEAT_VARIANCE, saturation_pools
    from gexplain.storage.store import open_store

    k = min(opts.k, n_genes)
    pools = saturation_pools(url, opts, params.model_copy(update={"axes": ["repeats"]}))
    pool = pools[("integrated_gradients", "repeats")]
    pick = sample_subset(np.asarray(open_store(url)["sample"].values), params.samples, opts.seed)
    grid = [2**i for i in range(int(np.log2(params.pool // 2)) + 1)]
    runs = {"limit": (f"universal:{params.n_references}", opts.seed)}
    runs |= {f"R{r}_s{s}": (f"universal:{r}", s) for r in grid for s in (0, 1)}
    got = expected_limits(url, pick, runs, params.n_steps)
    curve = limit_curve(
        pool, got["limit"].astype(np.float64), k, EXACT_REPEAT_VARIANCE.get("integrated_gradients"), opts.seed
    )
    seeds = [
        {
            "n": r,
            "spearman_mean": float(np.nanmean(per_sample_spearman(got[f"R{r}_s0"], got[f"R{r}_s1"]))),
            "top_k_overlap_mean": float(np.mean(top_k_overlap(got[f"R{r}_s0"], got[f"R{r}_s1"], k))),
        }
        for r in grid
    ]
    return {"limit_curve": curve, "seeds_curve": pd.DataFrame(seeds)}


def _point(curve: pd.DataFrame) -> str:
    from gexplain.pipelines.evaluate.saturation import saturation_point

    return (
        f"Spearman {saturation_point(curve, 'spearman_mean')}, "
        f"top-100 {saturation_point(curve, 'top_k_overlap_mean')}"
    )


def saturation_lines(sat: dict[str, pd.DataFrame], limit: dict[str, pd.DataFrame]) -> list[str]:
    """Markdown of Figure 2: the three saturation curves, then the repeats axis against its limit."""
    lines = ["", "### Figure 2: saturation (mean over sample subset and replicate pairs)", ""]
    curves = sat.get("saturation_curves")
    if curves is not None:
        axes = ["repeats", "references", "models"]
        lines += [
            "| n | " + " | ".join(f"{a}: Spearman | {a}: top-100" for a in axes) + " |",
            "|---" * (1 + 2 * len(axes)) + "|",
        ]
        for n in sorted(curves["n"].unique()):
            cells = []
            for a in axes:
                row = curves[(curves["axis"] == a) & (curves["n"] == n)]
                cells += (
                    [f"{row['spearman_mean'].iloc[0]:.3f}", f"{row['top_k_overlap_mean'].iloc[0]:.3f}"]
                    if len(row)
                    else ["", ""]
                )
            lines.append(f"| {int(n)} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Saturation points (first n whose doubling gains < 0.01; None: still gaining at the last "
            "doubling): " + "; ".join(f"{a}: {_point(curves[curves['axis'] == a])}" for a in axes) + ".",
        ]
    lc, sc = limit["limit_curve"], limit["seeds_curve"]
    lines += [
        "",
        "### Figure 2, repeats axis: the exact infinite-repeat limit (`expected` mode)",
        "",
        "K-repeat averages (model 0, 1 cohort reference, disjoint groups of the repeats pool) against "
        "the expected-mode attribution of the same model, samples and reference; the mean squared "
        "deviation is checked against the exact variance of a K-repeat mean, p/(1-p) sum_h L_h^2 / K.",
        "",
        "| K | Spearman vs limit | top-100 vs limit | mean sq. deviation | exact p/(1-p) sum L^2 / K |",
        "|---|---|---|---|---|",
    ]
    for _, r in lc.iterrows():
        lines.append(
            f"| {int(r['n'])} | {r['spearman_mean']:.3f} | {r['top_k_overlap_mean']:.3f} "
            f"| {r['msd']:.3e} | {r['exact_var_mean']:.3e} |"
        )
    lines += [
        "",
        f"Saturation point of the K-repeat average against the limit: {_point(lc)}.",
        "",
        "Reproducibility of the expected-mode attribution itself (no repeat noise): model 0, seeds 0 "
        "and 1 (different cohort references), R references each.",
        "",
        "| R | Spearman (seed 0 vs 1) | top-100 (seed 0 vs 1) |",
        "|---|---|---|",
    ]
    for _, r in sc.iterrows():
        lines.append(f"| {int(r['n'])} | {r['spearman_mean']:.3f} | {r['top_k_overlap_mean']:.3f} |")
    lines += ["", f"Saturation point over R: {_point(sc)}."]
    return lines


def main() -> None:
    """Run the benchmark and write benchmarks/results/zhao_reproducibility.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--genes", type=int, default=19241)
    parser.add_argument("--tissues", type=int, default=10)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--pool", type=int, default=128, help="repeats and references pool size")
    parser.add_argument("--pool-samples", type=int, default=32)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.genes, args.tissues, args.models, args.epochs, args.pool = 300, 2000, 4, 4, 10, 16
    from gexplain.cluster.runtime import start_runtime
    from gexplain.pipelines.evaluate.reproducibility import compare_runs
    from gexplain.pipelines.evaluate.saturation_stage import SaturationParams, saturation_part
    from gexplain.pipelines.evaluate.stage import EvaluateParams
    from gexplain.pipelines.explain.params import ExplainParams
    from gexplain.pipelines.models.stage import TrainStageParams, run_training
    from gexplain.pipelines.simulate.cohort import simulate_cohort
    from gexplain.storage.store import open_store

    load = os.getloadavg()
    times: dict[str, float] = {}
    runtime = start_runtime(num_cpus=2)
    runtime.ensure_ray()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            url = simulate_cohort(
                str(Path(tmp) / "cohort.zarr"),
                n_samples=args.samples,
                n_genes=args.genes,
                n_classes=args.tissues,
                seed=0,
            )
            times["simulate"] = time.perf_counter() - start
            start = time.perf_counter()
            trained = run_training(
                url, TrainStageParams(replicates=args.models, max_epochs=args.epochs), 0, runtime=runtime
            )
            times[f"train {args.models} models"] = time.perf_counter() - start
            spec = ExplainParams(
                explainers=["integrated_gradients"], references="universal:1", n_steps=20, repeats=1, actors=1
            )
            start = time.perf_counter()
            a = _explain(url, "m0_s0", 0, 0, spec)
            b = _explain(url, "m0_s1", 0, 1, spec)
            c = _explain(url, "m1_s2", 1, 2, spec)  # its own draws, as the two runs of model 0
            times["3 explain runs"] = time.perf_counter() - start
            ds = open_store(url)
            labels = np.asarray(ds["sample_tissue"].values).astype(str)
            samples = np.asarray(ds["sample"].values).astype(str)
            fig1 = {}
            for name, (x, y) in {
                "intra-model (same model, 2 seeds)": (a, b),
                "inter-model (2 replicates)": (a, c),
            }.items():
                per_sample, _ = compare_runs(x, y, labels, samples, k=100)
                fig1[name] = per_sample[["spearman", "top_k_overlap"]].agg(["mean", "std"])
            start = time.perf_counter()
            opts = EvaluateParams(k=100)
            params = SaturationParams(enabled=True, pool=args.pool, samples=args.pool_samples, n_steps=20)
            sat = saturation_part(url, opts, params)
            times["saturation pools + curves"] = time.perf_counter() - start
            start = time.perf_counter()
            limit = expected_study(url, opts, params, args.genes)
            times["expected-mode limit + its reproducibility"] = time.perf_counter() - start
    finally:
        runtime.shutdown()
    end_load = os.getloadavg()
    lines = ["### Figure 1: reproducibility of one explanation (1 repeat, 1 reference)", ""]
    lines += ["| comparison | Spearman, mean (sd) | top-100 overlap, mean (sd) |", "|---|---|---|"]
    for name, t in fig1.items():
        lines.append(
            f"| {name} | {t.loc['mean', 'spearman']:.3f} ({t.loc['std', 'spearman']:.3f}) "
            f"| {t.loc['mean', 'top_k_overlap']:.3f} ({t.loc['std', 'top_k_overlap']:.3f}) |"
        )
    lines += saturation_lines(sat, limit)
    full = args.samples >= 5000 and args.genes == 19241 and args.tissues >= 10
    size = "the issue's size" if full else "REDUCED size (the issue asks >= 5,000 x 19,241, >= 10 tissues)"
    accuracy = ", ".join(f"{v:.3f}" for v in trained["test_accuracy"])
    lines += [
        "",
        f"{args.samples:,} samples x {args.genes:,} genes, {args.tissues} tissues: {size}. {args.models} MLP "
        f"replicates (test accuracy {accuracy}); IG 20 steps, universal references (Zhao's code). Figure 1: "
        "mc_dropout, explicit repeats, all samples. Saturation pools: "
        f"{args.pool} repeats and {args.pool} references (models: the {args.models} replicates) on "
        f"{args.pool_samples} samples; the limit and its reproducibility on the same samples. "
        "Wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ". "
        f"Load average (1/5/15 min) at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, at end "
        f"{end_load[0]:.1f} / {end_load[1]:.1f} / {end_load[2]:.1f} (2 cores shared with other jobs).",
    ]
    path = write_result(
        "zhao_reproducibility", "Zhao et al. Figures 1 and 2 in shape", "\n".join(lines), quick=args.quick
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
