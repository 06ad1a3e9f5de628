"""How long does the evaluate stage take on the cohort store, part by part?

Runs each part of :func:`gexplain.pipelines.evaluate.run.evaluate_store` (ground truth,
reproducibility, faithfulness, biology) on an existing store with its explain results and model
set, with the evaluate defaults (OpenXAI PGI/PGU: 64 samples x 100 perturbations x 10 k x (PGI,
PGU and 2 x 5 floors)), and prints one row per part: wall time, process CPU time and peak RSS,
with the machine and ``os.getloadavg()`` before and after (numbers taken under load are not
benchmarks). Nothing is written to the store.

Usage (after ``gexplain run pipelines/configs/cohort.toml``, on a quiet machine)::

    python benchmarks/evaluate_cohort.py --store runs/cohort/cohort.zarr
    python benchmarks/evaluate_cohort.py --demo      # smoke run on a 40 x 50 test store
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_line, peak_rss_mb, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Time every evaluate part on ``--store`` (or a demo store) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store with results/explain/* and a model set")
    parser.add_argument("--demo", action="store_true", help="smoke run on the tests' 40 x 50 store")
    parser.add_argument("--samples", type=int, default=64, help="faithfulness samples (default 64)")
    parser.add_argument("--perturbations", type=int, default=100, help="perturbations per sample (100)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    from gexplain.pipelines.evaluate import run as ev
    from gexplain.pipelines.evaluate.inputs import de_results, explain_runs, label_column
    from gexplain.pipelines.evaluate.stage import EvaluateParams
    from gexplain.storage.store import open_store

    if args.demo:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_evaluate_store import make_demo_store

        store = make_demo_store(Path(tempfile.mkdtemp(prefix="gexplain-bench-")))
    elif args.store:
        store = args.store
    else:
        parser.error("give --store PATH or --demo")
    opts = EvaluateParams(faithfulness_samples=args.samples, faithfulness_perturbations=args.perturbations)
    ds = open_store(store)
    label = label_column(ds, opts.label)
    runs = explain_runs(store)
    de = de_results(store)
    ds, runs = ev._labelled_only(ds, label, runs, opts)
    parts = {
        "ground truth": lambda: ev.ground_truth_part(ds, runs, de, opts),
        "reproducibility": lambda: ev.reproducibility_part(ds, label, runs, opts),
        "faithfulness": lambda: ev.faithfulness_part(store, ds, label, runs, opts),
        "biology": lambda: ev.biology_part(ds, label, runs, de, opts),
    }
    rows = []
    for name, part in parts.items():
        wall, cpu = time.perf_counter(), time.process_time()
        part()
        rows.append((name, time.perf_counter() - wall, time.process_time() - cpu, peak_rss_mb()))
    load_after = os.getloadavg()
    shape = f"{ds.sizes['sample']} samples x {ds.sizes['gene']} genes, runs: {', '.join(sorted(runs))}"
    lines = [
        machine_line(),
        f"Store: {store} ({shape}); faithfulness {args.samples} samples x {args.perturbations} perturbations.",
        f"Load average (1, 5, 15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; "
        f"after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}.",
        "",
        "| part | wall s | CPU s | peak RSS MiB |",
        "|---|---:|---:|---:|",
        *(f"| {n} | {w:.1f} | {c:.1f} | {m:.0f} |" for n, w, c, m in rows),
        f"| total | {sum(r[1] for r in rows):.1f} | {sum(r[2] for r in rows):.1f} | |",
    ]
    print("\n".join(lines))
    write_result("evaluate_cohort", "Evaluate stage, part by part", "\n".join(lines[1:]), quick=args.demo)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
