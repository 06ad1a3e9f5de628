"""DE calibration at cohort size: empirical FDR and label-permutation calls per method.

Question (Li et al. 2022, Genome Biology 23:79): on a population-scale cohort whose counts are
heterogeneous (sample-specific over-dispersion, outliers), do DESeq2, Welch's t-test and the
Wilcoxon (Mann-Whitney) test keep their FDR at the 5 % target? Li et al. found DESeq2 and edgeR
often above 20 % while Wilcoxon stayed calibrated.

Cohort (ours): two groups of ``n/2`` samples, ``genes`` genes; gene means ``LogNormal(ln 200, 1.5)``;
size factors ``LogNormal(0, 0.4)``; counts NB with a per-(sample, gene) dispersion
``alpha_g * LogNormal(0, 1)`` around a gene dispersion ``alpha_g ~ LogNormal(ln 0.2, 0.8)``
(over-dispersion that varies from sample to sample, not the single NB per gene DESeq2 assumes);
outliers: 0.5 % of entries multiplied by ``U(5, 50)``. ``de_fraction`` of the genes are truly DE
with fold changes ``2^{+-U(0.3, 1)}`` applied to the test group.

Measured per method: calls at padj < 0.05 on the real labels, their empirical FDR (false calls /
calls, from the known truth) and the number of genes called under ``permutations`` label
permutations (:mod:`gexplain.pipelines.de.calibration`; every such call is false).

Usage::

    python benchmarks/de_calibration.py                # 1,000 samples x 2,000 genes, 5 permutations
    python benchmarks/de_calibration.py --quick        # 200 x 300, 2 permutations
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


def simulate(path: str, n: int, genes: int, de_fraction: float, seed: int) -> tuple[str, np.ndarray]:
    """Write the heterogeneous cohort (module docstring) and return (store URL, truly-DE mask)."""
    from gexplain.pipelines.simulate.common import log2_cpm1
    from gexplain.storage.store import create_store

    rng = np.random.default_rng(seed)
    group = rng.permutation(np.repeat(["ctrl", "case"], n // 2)).astype(object)
    mean = np.exp(rng.normal(np.log(200.0), 1.5, genes))
    alpha = np.exp(rng.normal(np.log(0.2), 0.8, genes))
    de = rng.uniform(size=genes) < de_fraction
    lfc = np.where(de, rng.choice([-1, 1], genes) * rng.uniform(0.3, 1.0, genes), 0.0)
    size = np.exp(rng.normal(0.0, 0.4, n))
    mu = size[:, None] * mean[None, :] * np.where((group == "case")[:, None], 2.0 ** lfc[None, :], 1.0)
    disp = alpha[None, :] * np.exp(rng.normal(0.0, 1.0, (n, genes)))
    r = 1.0 / disp
    counts = rng.negative_binomial(r, r / (r + mu)).astype(np.float64)
    outlier = rng.uniform(size=counts.shape) < 0.005
    counts[outlier] *= rng.uniform(5, 50, int(outlier.sum()))
    counts = np.minimum(np.round(counts), np.iinfo(np.int32).max).astype(np.int32)
    writer = create_store(
        path,
        sample_ids=np.array([f"S{i:05d}" for i in range(n)], dtype=object),
        gene_ids=np.array([f"G{g:05d}" for g in range(genes)], dtype=object),
        coords={"sample_group": ("sample", group)},
        layers={"counts": "int32", "log_expr": "float32"},
        chunks={"sample": 512, "gene": 512},
    )
    writer.write_block({}, {"counts": counts, "log_expr": log2_cpm1(counts)})
    return writer.commit(), de


def main() -> None:
    """Run the benchmark and write benchmarks/results/de_calibration.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--permutations", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.genes, args.permutations = 200, 300, 2
    from gexplain.pipelines.de.analysis import execute, plan
    from gexplain.pipelines.de.calibration import calibrate, summarize
    from gexplain.pipelines.de.stage import DeTest
    from gexplain.storage.store import open_store

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        url, de = simulate(str(Path(tmp) / "cohort.zarr"), args.samples, args.genes, 0.1, seed=0)
        ds = open_store(url)
        rows, tables = [], []
        for method, layer in (("deseq2", None), ("welch", "log_expr"), ("mannwhitney", "log_expr")):
            req = DeTest(method=method, contrasts=[("group", "case", "ctrl")], layer=layer)
            checked = plan(ds, req)
            start = time.perf_counter()
            results = execute(ds, checked)
            wall = time.perf_counter() - start
            (result,) = results.values()
            called = np.nan_to_num(np.asarray(result["padj"].values, dtype=np.float64), nan=1.0) < 0.05
            table = calibrate(ds, checked, results, args.permutations, seed=0)
            tables.append(table)
            rows.append(
                {
                    "method": method,
                    "calls": int(called.sum()),
                    "true calls": int((called & de).sum()),
                    "empirical FDR": (called & ~de).sum() / max(1, called.sum()),
                    "power": (called & de).sum() / max(1, de.sum()),
                    "wall s (one fit)": wall,
                }
            )
        summary = summarize(pd.concat(tables, ignore_index=True)).set_index("method")
    lines = [
        "| method | calls at padj<0.05 | true | empirical FDR | power | permuted-label calls: mean / max "
        "| permutations with >= 1 call | one fit, wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = summary.loc[r["method"]]
        lines.append(
            f"| {r['method']} | {r['calls']} | {r['true calls']} | {r['empirical FDR']:.3f} | {r['power']:.3f} "
            f"| {s['perm_mean']:.1f} / {int(s['perm_max'])} | {s['perm_any']:.2f} | {r['wall s (one fit)']:.1f} |"
        )
    body = "\n".join(lines) + (
        f"\n\n{args.samples:,} samples x {args.genes:,} genes, {int(de.sum())} truly DE (10 %), "
        f"{args.permutations} label permutations per method; target FDR 0.05 (BH). Counts: NB with "
        "sample-specific over-dispersion and 0.5 % outliers (x5-50), see the script's docstring. "
        "welch and mannwhitney on log2(CPM+1) (ranks equal those of CPM). "
        f"Load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (machine shared with other "
        "jobs: timings are indicative only)."
    )
    path = write_result(
        "de_calibration", "DE calibration: empirical FDR at cohort size", body, quick=args.quick
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
