"""DESeq2 through the whole CLI vs pydeseq2, side by side (issue 22: goal <= 1/10 of pydeseq2's wall time).

Question: how long does ``gexplain de STORE --method deseq2`` take, start to finish (process
start, store read, size factors, both passes, independent filtering, table and volcano
written), against pydeseq2 (DeseqDataSet + DeseqStats, ``n_cpus`` = cores) on the same counts,
and do the two agree?

The CLI runs with each deseq2 backend (``--backend numpy``, and ``--backend torch`` when torch
is installed: on CUDA where there is a GPU, else the CPU). Every run is a fresh child process,
alternating, ``--repeats`` times each (fastest reported); wall time and the peak summed RSS of
the child's process tree are measured from outside. Machine, date and the load average before
and after are recorded: numbers are only meaningful on a quiet machine. The table goes to
``benchmarks/results/de_cli_vs_pydeseq2.md`` and stdout.

Expected run time on a quiet 2-core machine at the default size: about 4-5 min (simulating the
store ~15 s; pydeseq2 ~2-3 min; each CLI run well under 1 min). ``--repeats 2`` roughly doubles it.

Usage::

    python benchmarks/de_cli_vs_pydeseq2.py                 # 2,000 samples x 10,000 genes
    python benchmarks/de_cli_vs_pydeseq2.py --quick         # 200 x 500 smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from de import COLUMNS, CONTRAST, DESIGN, simulate_store  # noqa: E402
from machine import machine_line, write_result  # noqa: E402


def _measure(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS of its process tree in MiB)."""
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            total = 0
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    total += p.memory_info().rss
            except psutil.Error:
                pass
            peak = max(peak, total / 2**20)
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    rc = proc.wait()
    done.set()
    thread.join()
    if rc != 0:
        raise RuntimeError(f"{cmd[:3]} failed with exit code {rc}")
    return time.perf_counter() - t0, peak


def _torch_device() -> str:
    """The device the torch backend picks here (CUDA with the GPU's name, else the CPU)."""
    import torch

    return f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu (no GPU)"


def _pydeseq2_child(store: str, out: str, workers: int) -> None:
    from de import child_pydeseq2

    child_pydeseq2(store, out, workers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="200 x 500 smoke run")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--genes", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="pydeseq2 n_cpus (default 2)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _pydeseq2_child(args.child[0], args.child[1], int(args.child[2]))
        return
    n, g = (200, 500) if args.quick else (args.samples, args.genes)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="gexplain-de-cli-"))
    try:
        store = str(tmp / "cohort.zarr")
        simulate_store(store, n, g, seed=22)
        gexplain = shutil.which("gexplain") or str(Path(sys.executable).with_name("gexplain"))
        backends = ["numpy"] + (["torch"] if importlib.util.find_spec("torch") else [])
        commands = {
            f"gexplain de (CLI, {b})": [
                gexplain, "de", store, "--method", "deseq2", "--design", DESIGN, "--contrast", *CONTRAST,
                "--backend", b, "--run-dir", str(tmp / f"run-{b}"), "--out", str(tmp / f"cli-{b}.csv"),
            ]
            for b in backends
        }  # fmt: skip
        commands["pydeseq2"] = [
            sys.executable,
            __file__,
            "--child",
            store,
            str(tmp / "py.npz"),
            str(args.workers),
        ]
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                runs[name].append(_measure(cmd))
        tables = {b: pd.read_csv(tmp / f"cli-{b}.csv", index_col="gene") for b in backends}
        theirs = np.load(tmp / "py.npz")
        agree = {
            c: float(np.nanmedian(np.abs(tables["numpy"][c].to_numpy() - theirs[c]) / np.abs(theirs[c])))
            for c in COLUMNS[1:]
        }
        calls = int(((tables["numpy"]["padj"].to_numpy() < 0.05) != (theirs["padj"] < 0.05)).sum())
        backend_diff = {
            c: float(np.nanmax(np.abs(t[c].to_numpy() - tables["numpy"][c]) / np.abs(tables["numpy"][c])))
            for b, t in tables.items()
            if b != "numpy"
            for c in ("log2FoldChange", "padj")
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    best = {k: min(v) for k, v in runs.items()}
    lines = [
        f"{n:,} samples x {g:,} genes, design `{DESIGN}`; pydeseq2 n_cpus={args.workers}; "
        f"{args.repeats} run(s) each, alternating.",
        f"Load average before {load_before[0]:.2f} / {load_before[1]:.2f}, after {load_after[0]:.2f} / {load_after[1]:.2f}.",
        "",
        "| method | wall s (fastest) | all runs s | peak tree RSS MiB | / pydeseq2 |",
        "|---|---|---|---|---|",
    ]
    for name, rs in runs.items():
        ratio = best[name][0] / best["pydeseq2"][0]
        lines.append(
            f"| {name} | {best[name][0]:.1f} | {', '.join(f'{r[0]:.1f}' for r in rs)} | {best[name][1]:.0f} "
            f"| {ratio:.3f} |"
        )
    lines += [
        "",
        "Goal: gexplain / pydeseq2 wall time <= 0.1.",
        "Median relative difference of the numpy backend to pydeseq2 (which itself differs from R; gexplain "
        "follows R): "
        + ", ".join(f"{c} {v:.1e}" for c, v in agree.items())
        + f"; calls differing at padj < 0.05: {calls}.",
    ]
    if backend_diff:
        lines.append(f"torch backend device: {_torch_device()}.")
        lines.append(
            "torch vs numpy backend, max relative difference: "
            + ", ".join(f"{c} {v:.1e}" for c, v in backend_diff.items())
            + "."
        )
    body = "\n".join(lines)
    print(machine_line())
    print(body)
    write_result("de_cli_vs_pydeseq2", "DESeq2: whole CLI vs pydeseq2", body, quick=args.quick)


if __name__ == "__main__":
    main()
