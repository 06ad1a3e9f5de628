"""Do the streaming stages run in an address space smaller than the dense matrix?

Runs the slow tests ``pytest -m slow tests/test_memory_bounds.py``: ingest of a generated GCT.gz,
DESeq2 median-of-ratios size factors on a Dask array over a Zarr store, and the per-gene
Mann-Whitney U test, each in a child process capped with ``resource.setrlimit(RLIMIT_AS)`` at its
post-import virtual memory plus a fixed headroom. Every test checks its answer against an
independent reference (the generated values; numpy size factors; ``scipy.stats.mannwhitneyu``).
The table lists, per stage, the matrix, the cap and the child's peak virtual memory (``VmPeak``).
The same computation done densely would need at least the float64 matrix in memory, which is
larger than the whole cap. There is no side-by-side run of a dense reference here: under the cap
it can only fail with MemoryError (benchmarks/de_mannwhitney.py shows that for scipy).

Usage::

    python benchmarks/memory_bounds.py           # 2,000 samples x 96,000 genes (scale 1)
    python benchmarks/memory_bounds.py --quick   # 2,000 x 48,000 (scale 0.5)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MARK = "MEMORY_BOUNDS "


def run_tests(scale: float) -> tuple[int, float, list[dict[str, object]], str, str]:
    """Run the slow memory tests at ``scale``.

    Returns
    -------
    (exit code, wall s, per-test rows, pytest's summary line, output tail)
    """
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "slow",
            "tests/test_memory_bounds.py",
            "-s",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env={**os.environ, "GEXPLAIN_MEMORY_SCALE": str(scale)},
        capture_output=True,
        text=True,
    )
    # with -s a JSON line follows the progress dot of the previous test on the same line
    rows = [json.loads(line.split(MARK, 1)[1]) for line in done.stdout.splitlines() if MARK in line]
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return done.returncode, time.perf_counter() - started, rows, summary, (done.stdout + done.stderr)[-3000:]


def table(rows: list[dict[str, object]]) -> str:
    """Markdown table of the per-test rows."""
    head = (
        "| stage | shape (sample x gene) | dense int32 MiB | dense float64 MiB | input | child VM after imports MiB "
        "| headroom MiB | RLIMIT_AS cap MiB | child peak VM MiB | stage s | result |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        shape = r["shape"]
        assert isinstance(shape, list)
        extra = (
            f"GCT.gz {r['input_mib']:,.0f} MiB ({r['text_mib']:,.0f} MiB text)"
            if "input_mib" in r
            else "Zarr store"
        )
        lines.append(
            f"| {r['test']} | {shape[0]:,} x {shape[1]:,} | {r['dense_int32_mib']:,.0f} | "
            f"{r['dense_float64_mib']:,.0f} | {extra} | {r['baseline_vm_mib']:,.0f} | {r['headroom_mib']} | "
            f"{r['cap_mib']:,.0f} | {r['peak_vm_mib']:,.0f} | {r['seconds']:.1f} | matches reference |"
        )
    return head + "\n".join(lines)


def main() -> None:
    """Run the tests, print the table and write benchmarks/results/memory_bounds.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Half-size run (scale 0.5).")
    parser.add_argument("--scale", type=float, default=None, help="GEXPLAIN_MEMORY_SCALE (default 1).")
    args = parser.parse_args()
    scale = args.scale if args.scale is not None else (0.5 if args.quick else 1.0)
    code, wall, rows, summary, tail = run_tests(scale)
    if code != 0 or len(rows) != 3:
        print(tail)
        raise SystemExit(f"pytest -m slow tests/test_memory_bounds.py failed (exit {code})")
    body = (
        table(rows)
        + f"\n\n`pytest -m slow tests/test_memory_bounds.py` (GEXPLAIN_MEMORY_SCALE={scale}): {summary.strip('= ')}; "
        f"{wall:.0f} s wall including data generation and the reference checks.\n\n"
        "Each stage runs in a child process that imports only what it needs (no torch, no ray), then caps "
        "its address space (RLIMIT_AS) at its virtual memory after the imports plus the headroom; the child "
        "first checks the cap binds (a headroom-sized allocation must raise MemoryError). Virtual memory "
        "counts thread stacks and allocator arenas, so the child runs with MALLOC_ARENA_MAX=2, one BLAS "
        "thread and two Dask threads. Parameters: ingest buffer_bytes 16 MiB, parse_bytes 4 MiB, store "
        "chunks 500 samples x 1,000 genes; size factors block_bytes 32 MiB; Mann-Whitney gene_block 256, "
        "parallel 2. References: ingest, every value against the generated counts; size factors of the "
        "first 64 samples against a numpy median-of-ratios (rtol 1e-10); Mann-Whitney U and p-values of the "
        "first 200 genes against scipy.stats.mannwhitneyu(method='asymptotic') (rtol 1e-8).\n"
    )
    print(body)
    path = write_result(
        "memory_bounds", "Streaming stages under an address-space cap", body, quick=args.quick
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
