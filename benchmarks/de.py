"""DESeq2 at cohort scale: gexplain (per gene block on Dask) vs pydeseq2 (whole matrix, joblib).

Question: is gexplain's blockwise DESeq2 at least as fast as pydeseq2 with the same results, and
is its peak memory set by the gene block rather than by the cohort?

On simulated negative-binomial counts (design ``~ cell + dex``, contrast dex trt vs untrt), each
method runs in a fresh child process that reports wall time, its own ``ru_maxrss`` and the peak
summed RSS of its whole process tree (pydeseq2's loky workers, gexplain's Dask workers), sampled
every 50 ms. gexplain reads the counts from a Zarr store on disk and runs on a local Dask cluster
of one single-threaded worker process per core; pydeseq2 gets the dense matrix in memory and
``n_cpus`` = cores; on the shapes both run, each method runs ``--repeats`` times (alternating,
as the machine is shared) and the fastest run is reported. Results are compared column by column
(max / median relative difference and the number of genes called differently at padj < 0.05).

Usage::

    python benchmarks/de.py            # 1,000 x 5,000 and 4,000 x 1,000 (both); 10,000 x 20,000 (gexplain)
    python benchmarks/de.py --quick    # tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import write_result  # noqa: E402

COLUMNS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj")
DESIGN = "~ cell + dex"
CONTRAST = ("dex", "trt", "untrt")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def simulate_store(url: str, n_samples: int, n_genes: int, seed: int, block: int = 2048) -> None:
    """Write NB counts (sample, gene) int32 to a gexplain store, one gene block at a time.

    Means: gene base ~ lognormal(3, 1.5); 10% of genes with a dex effect ~ N(0, 1) (natural log);
    a cell batch effect ~ N(0, 0.3); dispersion 0.05 + 2 / base; size factors ~ lognormal(0, 0.25).
    """
    from gexplain.storage.store import create_store

    rng = np.random.default_rng(seed)
    dex = np.array(["trt", "untrt"])[np.arange(n_samples) % 2]
    cell = np.array(["c1", "c2"])[(np.arange(n_samples) // 2) % 2]
    sf = rng.lognormal(0, 0.25, n_samples)
    writer = create_store(
        url,
        sample_ids=np.array([f"S{i:06d}" for i in range(n_samples)]),
        gene_ids=np.array([f"G{j:06d}" for j in range(n_genes)]),
        coords={
            "sample_dex": ("sample", dex),
            "sample_cell": ("sample", cell),
            "gene_symbol": ("gene", np.array([f"SYM{j}" for j in range(n_genes)])),
        },
        layers={"counts": "int32"},
        chunks={"sample": 2048, "gene": block},
        overwrite=True,
    )
    for start in range(0, n_genes, block):
        stop = min(n_genes, start + block)
        g = np.random.default_rng([seed, start])
        base = g.lognormal(3.0, 1.5, stop - start)
        lfc = np.where(g.random(stop - start) < 0.1, g.normal(0, 1.0, stop - start), 0.0)
        batch = g.normal(0, 0.3, stop - start)
        disp = 0.05 + 2.0 / base
        mu = sf[:, None] * base * np.exp((dex == "trt")[:, None] * lfc + (cell == "c2")[:, None] * batch)
        counts = g.negative_binomial(1 / disp, 1 / (1 + mu * disp)).astype(np.int32)
        writer.write_block({"gene": slice(start, stop)}, {"counts": counts})
    writer.commit()


class TreeRss:
    """Peak summed RSS (MiB) of this process and all its descendants, sampled every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> float:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # noqa: BLE001 - a worker may exit between listing and reading
                continue
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._sample())


def child_gexplain(store: str, out: str, block: int, workers: int) -> dict:
    """Run gexplain's run_deseq2 on the store on a local Dask cluster; save results to ``out``."""
    import logging

    from dask.distributed import Client, LocalCluster
    from gexplain.pipelines.de.deseq2 import run_deseq2
    from gexplain.pipelines.progress import Progress
    from gexplain.storage.store import open_store

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    rss = TreeRss()
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with Client(cluster):
            t0 = time.perf_counter()
            ds = open_store(store)
            progress = Progress(enabled=True, log_every=60.0)
            res = run_deseq2(ds, DESIGN, [CONTRAST], gene_block=block, progress=progress)["dex_trt_vs_untrt"]
            seconds = time.perf_counter() - t0
    np.savez(out, **{c: res[c].values for c in COLUMNS})
    return {
        "seconds": seconds,
        "tree_rss": rss.stop(),
        "self_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_pydeseq2(store: str, out: str, workers: int) -> dict:
    """Load the store densely and run pydeseq2 (DeseqDataSet + DeseqStats) with n_cpus=workers."""
    import pandas as pd
    from gexplain.storage.store import open_store
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    ds = open_store(store)
    counts = pd.DataFrame(ds["counts"].values, index=ds["sample"].values, columns=ds["gene"].values)
    meta = pd.DataFrame(
        {"cell": ds["sample_cell"].values, "dex": ds["sample_dex"].values}, index=counts.index
    )
    rss = TreeRss()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(counts=counts, metadata=meta, design="~cell + dex", quiet=True, n_cpus=workers)
        dds.deseq2()
        stats = DeseqStats(dds, contrast=list(CONTRAST), quiet=True, n_cpus=workers)
        stats.summary()
    seconds = time.perf_counter() - t0
    res = stats.results_df
    np.savez(out, **{c: res[c].to_numpy() for c in COLUMNS})
    return {
        "seconds": seconds,
        "tree_rss": rss.stop(),
        "self_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(args: list[str]) -> dict:
    """Run this script as a child (``nice``-friendly) and parse its JSON report."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed (exit {proc.returncode}); its stderr is above")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fastest(runs: list[dict]) -> dict:
    """The fastest of repeated runs (its RSS), with every run's wall time under ``"all"``."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["all"] = [r["seconds"] for r in runs]
    return best


def compare(a: str, b: str) -> tuple[str, int]:
    """Max/median relative difference per column between two result files; calls that differ."""
    ra, rb = np.load(a), np.load(b)
    parts = []
    for c in COLUMNS:
        x, y = ra[c], rb[c]
        ok = np.isfinite(x) & np.isfinite(y) & (y != 0)
        rel = np.abs(x[ok] - y[ok]) / np.abs(y[ok])
        same_nan = bool((np.isnan(x) == np.isnan(y)).all())
        parts.append(f"{c} {rel.max():.1e}/{np.median(rel):.1e}{'' if same_nan else ' (NaNs differ)'}")
    calls = int(((ra["padj"] < 0.05) != (rb["padj"] < 0.05)).sum())
    return "; ".join(parts), calls


def report(rows: list, args: argparse.Namespace) -> Path:
    """Write the markdown table of the rows measured so far; return the result file."""
    lines = [
        "| samples x genes | method | wall s | peak RSS, process tree MiB | peak RSS, main process MiB | rel. diff vs pydeseq2 (max/median) | calls differing at padj<0.05 |",
        "|---|---|---|---|---|---|---|",
    ]
    for shape, method, r, diff, calls in rows:
        runs = r.get("all", [r["seconds"]])
        wall = f"{r['seconds']:.1f}" + (
            f" (runs: {', '.join(f'{t:.1f}' for t in runs)})" if len(runs) > 1 else ""
        )
        lines.append(
            f"| {shape} | {method} | {wall} | {r['tree_rss']:,.0f} | {r['self_rss']:,.0f} | {diff} | {calls} |"
        )
    body = "\n".join(lines) + (
        f"\n\nDesign `{DESIGN}`, contrast dex trt vs untrt, simulated NB counts (10% DE genes, cell batch). "
        f"{args.workers} worker processes for both (gexplain: Dask LocalCluster, 1 thread each; pydeseq2: "
        "n_cpus). Wall time excludes data generation; gexplain's includes reading the Zarr store, pydeseq2's "
        f"starts from the dense in-memory matrix; both-method shapes run {args.repeats} times, alternating "
        "gexplain and pydeseq2 (the machine is shared), and report the fastest run. Tree RSS sums the parent and all worker processes "
        "(sampled every 50 ms); it includes the interpreter, imports and idle Dask workers."
    )
    name = "de_big" if args.big_only else "de"
    return write_result(name, "DESeq2: gexplain per gene block vs pydeseq2", body, quick=args.quick)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--big", default="10000x20000", help="gexplain-only shape SAMPLESxGENES ('' to skip)")
    parser.add_argument(
        "--big-only", action="store_true", help="only the gexplain-only big shape (results: de_big.md)"
    )
    parser.add_argument("--big-blocks", default="2048", help="comma-separated gene blocks for the big shape")
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs per method on the shared shapes (fastest kept)"
    )
    parser.add_argument("--workers", type=int, default=_cores(), help="worker processes (default: cores)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, store, out, *rest = args.child
        if kind == "gexplain":
            measured = child_gexplain(store, out, int(rest[0]), int(rest[1]))
        else:
            measured = child_pydeseq2(store, out, int(rest[0]))
        print(json.dumps(measured))
        return

    both = [(200, 500), (400, 200)] if args.quick else [(1000, 5000), (4000, 1000)]
    if args.big_only:
        both = []
    big = [] if not args.big else [tuple(int(v) for v in args.big.split("x"))]
    blocks = [int(b) for b in args.big_blocks.split(",")]
    if args.quick:
        big, blocks = [(500, 1500)], [512, 128]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="gexplain-de-bench-"))
    try:
        for n, g in both:
            store = str(tmp / f"sim_{n}x{g}.zarr")
            simulate_store(store, n, g, seed=n + g)
            ours, theirs = str(tmp / "ours.npz"), str(tmp / "theirs.npz")
            runs_ours, runs_py = [], []
            for _ in range(args.repeats):  # alternated, so load from other users hits both alike
                runs_ours.append(run_child(["gexplain", store, ours, "2048", str(args.workers)]))
                runs_py.append(run_child(["pydeseq2", store, theirs, str(args.workers)]))
            r_ours, r_py = fastest(runs_ours), fastest(runs_py)
            diff, calls = compare(ours, theirs)
            rows.append((f"{n:,} x {g:,}", "gexplain deseq2 (block 2048, Zarr)", r_ours, diff, calls))
            rows.append((f"{n:,} x {g:,}", "pydeseq2 (in memory)", r_py, "reference", 0))
            report(rows, args)
        for n, g in big:
            store = str(tmp / f"sim_{n}x{g}.zarr")
            simulate_store(store, n, g, seed=n + g)
            for block in blocks:
                out = str(tmp / f"big_{block}.npz")
                r = run_child(["gexplain", store, out, str(block), str(args.workers)])
                dense = n * g * 8 / 2**20
                rows.append(
                    (
                        f"{n:,} x {g:,}",
                        f"gexplain deseq2 (block {block}, Zarr)",
                        r,
                        f"dense float64 matrix {dense:,.0f} MiB",
                        0,
                    )
                )
                report(rows, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(Path(report(rows, args)).read_text())


if __name__ == "__main__":
    main()
