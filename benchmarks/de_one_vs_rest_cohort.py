"""DESeq2 ``~ tissue`` one tissue vs the rest on a full cohort (issue 22: goal <= 60 s, memory bounded by the block).

Question: how long and how much memory does ``gexplain de STORE --method deseq2 --one-vs-rest
tissue --level LEVEL`` take on a GTEx-sized store (27,417 samples x 19,241 genes)? Give
``--store`` (a real ingest with ``sample_tissue``) or let the script simulate one (NB counts,
30 tissues, a tissue effect on 10 % of genes). The CLI runs in a child process; wall time and
the peak summed RSS of its process tree are measured from outside, with the load average before
and after (record numbers only from a quiet machine). ``--backend`` picks the deseq2 kernels
(``numpy``, or ``torch``: float64, on CUDA when a GPU is available, else the CPU); the result
names the torch device.

Usage::

    python benchmarks/de_one_vs_rest_cohort.py                       # simulated 27,417 x 19,241
    python benchmarks/de_one_vs_rest_cohort.py --store gtex.zarr --level Lung
    python benchmarks/de_one_vs_rest_cohort.py --backend torch       # the torch kernels (GPU if any)
    python benchmarks/de_one_vs_rest_cohort.py --quick               # 300 x 400 smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from de_cli_vs_pydeseq2 import _measure, _torch_device  # noqa: E402
from machine import machine_line, write_result  # noqa: E402


def simulate(url: str, n_samples: int, n_genes: int, n_tissues: int, seed: int, block: int = 2048) -> None:
    """NB counts (sample, gene) int32 with a ``tissue`` column, written one gene block at a time."""
    from gexplain.storage.store import create_store

    rng = np.random.default_rng(seed)
    tissue = np.array([f"T{t:02d}" for t in rng.integers(0, n_tissues, n_samples)])
    codes = np.unique(tissue, return_inverse=True)[1]
    sf = rng.lognormal(0, 0.25, n_samples)
    writer = create_store(
        url,
        sample_ids=np.array([f"S{i:06d}" for i in range(n_samples)]),
        gene_ids=np.array([f"G{j:06d}" for j in range(n_genes)]),
        coords={"sample_tissue": ("sample", tissue)},
        layers={"counts": "int32"},
        chunks={"sample": 4096, "gene": block},
        overwrite=True,
    )
    for start in range(0, n_genes, block):
        stop = min(n_genes, start + block)
        g = np.random.default_rng([seed, start])
        base = g.lognormal(3.0, 1.5, stop - start)
        effect = np.where(
            g.random((n_tissues, stop - start)) < 0.1, g.normal(0, 1.0, (n_tissues, stop - start)), 0
        )
        disp = 0.05 + 2.0 / base
        mu = sf[:, None] * base * np.exp(effect[codes])
        writer.write_block(
            {"gene": slice(start, stop)},
            {"counts": g.negative_binomial(1 / disp, 1 / (1 + mu * disp)).astype(np.int32)},
        )
    writer.commit()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="300 x 400 smoke run")
    parser.add_argument("--store", help="an existing store with counts and sample_tissue (else simulated)")
    parser.add_argument("--level", default="T00", help="the tissue tested against the rest")
    parser.add_argument("--samples", type=int, default=27417)
    parser.add_argument("--genes", type=int, default=19241)
    parser.add_argument("--gene-block", type=int, default=2048)
    parser.add_argument(
        "--backend", choices=("numpy", "torch"), default="numpy", help="deseq2 kernels (default numpy)"
    )
    args = parser.parse_args()
    n, g = (300, 400) if args.quick else (args.samples, args.genes)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="gexplain-de-ovr-"))
    try:
        store = args.store or str(tmp / "cohort.zarr")
        if args.store is None:
            simulate(store, n, g, 30, seed=22)
        gexplain = shutil.which("gexplain") or str(Path(sys.executable).with_name("gexplain"))
        cmd = [
            gexplain, "de", store, "--method", "deseq2", "--one-vs-rest", "tissue", "--level", args.level,
            "--gene-block", str(args.gene_block), "--backend", args.backend, "--run-dir", str(tmp / "run"), "--out", str(tmp / "ovr.csv"),
        ]  # fmt: skip
        seconds, peak = _measure(cmd)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    what = f"store {args.store}" if args.store else f"simulated {n:,} samples x {g:,} genes, 30 tissues"
    device = f" (device {_torch_device()})" if args.backend == "torch" else ""
    body = "\n".join(
        [
            f"{what}; `--one-vs-rest tissue --level {args.level}`, gene block {args.gene_block}, "
            f"`--backend {args.backend}`{device}.",
            f"Load average before {load_before[0]:.2f} / {load_before[1]:.2f}, after {load_after[0]:.2f} / {load_after[1]:.2f}.",
            "",
            "| wall s | peak tree RSS MiB |",
            "|---|---|",
            f"| {seconds:.1f} | {peak:.0f} |",
            "",
            "Goal: <= 60 s on the 2-core machine, memory set by the gene block.",
        ]
    )
    print(machine_line())
    print(body)
    name = "de_one_vs_rest_cohort" + ("_torch" if args.backend == "torch" else "")
    write_result(
        name, f"DESeq2 ({args.backend}): one tissue vs the rest on the cohort", body, quick=args.quick
    )


if __name__ == "__main__":
    main()
