"""Zhao et al. (2022) Figures 1 and 2, in shape, on a simulated cohort.

Figure 1 (reproducibility without optimisation): integrated gradients of one explanation per
model (one dropout repeat, one reference) are compared per sample, by Spearman correlation of
|attribution| and by top-100 overlap, *intra-model* (the same trained model, two runs with
different seeds) and *inter-model* (two replicates trained with different seeds). The paper
reports low reproducibility without optimisation, intra-model above inter-model.

Figure 2 (saturation): the same metrics between disjoint aggregates of ``n`` items, as ``n``
doubles, for three kinds of item: dropout repeats, references and trained models
(:func:`pipelines.evaluate.saturation_stage.saturation_part`, Zhao's subsampling protocol). The
paper reports curves that rise and flatten (saturate) as more items are averaged.

Pipeline: ``simulate_cohort`` (19,241 genes, ``tissues`` classes) -> train ``models`` MLP replicates
(gexplain defaults, ``epochs`` max) -> two ``run_explain`` runs of model 0 (seeds 0, 1) and one of
model 1 (seed 2; explicit repeats: ``mc_dropout``, 1 repeat, 1 ``universal`` reference, 20 steps) ->
``compare_runs`` -> saturation pools of ``pool`` items on ``pool_samples`` samples.

The exact infinite-repeat limit (the ``expected`` repeat mode of the attribution engine, built in
a separate change) is not on this branch: see ``EXPECTED_MODE`` below for where it plugs in.

Usage::

    python benchmarks/zhao_reproducibility.py                       # 5,000 x 19,241, 10 tissues
    python benchmarks/zhao_reproducibility.py --samples 1000        # fewer samples
    python benchmarks/zhao_reproducibility.py --quick               # 300 x 2,000, 4 tissues
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

# Where the `expected` repeat mode goes once the engine has it: an explain run with
# mode="expected" gives the infinite-repeat limit of one model; its reproducibility against the
# explicit-repeat runs (and the models-axis curve built from per-model limits) is the paper's
# plateau. Left out here: the mode is not on this branch.
EXPECTED_MODE: str | None = None


def _explain(url: str, name: str, model: int, seed: int, spec) -> pd.DataFrame:  # noqa: ANN001
    from pipelines.explain.engine import run_explain
    from storage.store import read_result

    run_explain(url, spec.model_copy(update={"models": [model]}), name=name, seed=seed)
    return np.asarray(
        read_result(url, f"explain/{name}")["attr_integrated_gradients"].values, dtype=np.float64
    )


def main() -> None:
    """Run the benchmark and write benchmarks/results/zhao_reproducibility.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--genes", type=int, default=19241)
    parser.add_argument("--tissues", type=int, default=10)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--pool-samples", type=int, default=32)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.genes, args.tissues, args.models, args.epochs, args.pool = 300, 2000, 4, 4, 10, 8
    from cluster.runtime import start_runtime
    from pipelines.evaluate.reproducibility import compare_runs
    from pipelines.evaluate.saturation_stage import SaturationParams, saturation_part
    from pipelines.evaluate.stage import EvaluateParams
    from pipelines.explain.params import ExplainParams
    from pipelines.models.stage import TrainStageParams, run_training
    from pipelines.simulate.cohort import simulate_cohort
    from storage.store import open_store

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
    finally:
        runtime.shutdown()
    lines = ["### Figure 1: reproducibility of one explanation (1 repeat, 1 reference)", ""]
    lines += ["| comparison | Spearman, mean (sd) | top-100 overlap, mean (sd) |", "|---|---|---|"]
    for name, t in fig1.items():
        lines.append(
            f"| {name} | {t.loc['mean', 'spearman']:.3f} ({t.loc['std', 'spearman']:.3f}) "
            f"| {t.loc['mean', 'top_k_overlap']:.3f} ({t.loc['std', 'top_k_overlap']:.3f}) |"
        )
    lines += ["", "### Figure 2: saturation (mean over sample subset and replicate pairs)", ""]
    curves = sat.get("saturation_curves")
    if curves is not None:
        lines += ["| axis | n | Spearman | top-100 overlap |", "|---|---|---|---|"]
        for _, r in curves.sort_values(["axis", "n"]).iterrows():
            lines.append(
                f"| {r['axis']} | {int(r['n'])} | {r['spearman_mean']:.3f} | {r['top_k_overlap_mean']:.3f} |"
            )
        summary = sat["saturation_summary"]
        lines += [
            "",
            "Saturation points (first n whose doubling gains < 0.01): "
            + "; ".join(
                f"{r['curve']}: Spearman {r['saturation_n_spearman']}, top-100 {r['saturation_n_top_k']}"
                for _, r in summary.iterrows()
            ),
        ]
    full = args.samples >= 5000 and args.genes == 19241 and args.tissues >= 10
    size = "the issue's size" if full else "REDUCED size (the issue asks >= 5,000 x 19,241, >= 10 tissues)"
    accuracy = ", ".join(f"{v:.3f}" for v in trained["test_accuracy"])
    lines += [
        "",
        f"{args.samples:,} samples x {args.genes:,} genes, {args.tissues} tissues: {size}. {args.models} MLP "
        f"replicates (test accuracy {accuracy}); IG 20 steps, universal reference, mc_dropout, explicit repeats. "
        f"Saturation pools: {args.pool} items on {args.pool_samples} samples. The exact infinite-repeat limit "
        "(`expected` mode) is not included (not on this branch). "
        "Wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ". "
        f"Load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (machine shared with other jobs).",
    ]
    path = write_result(
        "zhao_reproducibility", "Zhao et al. Figures 1 and 2 in shape", "\n".join(lines), quick=args.quick
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
