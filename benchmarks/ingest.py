"""Ingest and simulation at scale: wall time, throughput and peak RSS versus the dense matrix size.

Question: does ingest stream (peak RSS far below the dense matrix) and how fast is it, compared
with what a user would otherwise do (``pandas.read_csv`` of the whole file, then ``to_zarr``)?
And does the cohort simulator reach the paper's shape (27,417 x 19,241) in bounded memory?

Every measurement runs in a fresh child process that reports its own peak RSS
(``resource.getrusage``), so imports and earlier runs do not leak into the numbers.

Usage::

    python benchmarks/ingest.py            # 5,000 x 60,000 GCT.gz; simulate 27,417 x 19,241
    python benchmarks/ingest.py --quick    # tiny smoke run
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import write_result  # noqa: E402

MiB = 2**20


def generate_gct(path: Path, n_samples: int, n_genes: int, seed: int, block: int = 256) -> None:
    """Write a GTEx-like GCT.gz of negative-binomial counts, block of genes by block (bounded memory).

    Parameters
    ----------
    path
        Output ``.gct.gz`` (gzip level 1: generation speed; decompression speed barely depends on it).
    n_samples, n_genes
        Matrix shape (the file is genes x samples).
    seed
        Seed of the counts.
    block
        Genes generated and formatted at a time.
    """
    rng = np.random.default_rng(seed)
    tokens = np.array([str(i) for i in range(1 << 16)], dtype=object)
    depth = rng.lognormal(0.0, 0.3, n_samples)
    with gzip.open(path, "wt", compresslevel=1) as fh:
        fh.write(f"#1.2\n{n_genes}\t{n_samples}\nName\tDescription\t")
        fh.write("\t".join(f"GTEX-{j:05d}-0001-SM-{j:05d}" for j in range(n_samples)) + "\n")
        for start in range(0, n_genes, block):
            stop = min(n_genes, start + block)
            mean = rng.lognormal(2.0, 2.0, stop - start)[:, None] * depth[None, :]
            counts = np.minimum(rng.negative_binomial(2.0, 2.0 / (2.0 + mean)), (1 << 16) - 1)
            lines = [
                f"ENSG{start + i:011d}.{i % 9 + 1}\tGENE{start + i}\t" + "\t".join(tokens[row].tolist())
                for i, row in enumerate(counts)
            ]
            fh.write("\n".join(lines) + "\n")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_gexplain(source: str, out: str) -> dict:
    """Ingest ``source`` with gexplain (streaming) and return timing and peak RSS."""
    from gexplain.storage.ingest import ingest

    base = _peak_rss_mib()
    t0 = time.perf_counter()
    report = ingest(source, out)
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss_mib": _peak_rss_mib(),
        "import_rss_mib": base,
        "n": [report.n_samples, report.n_genes],
    }


def child_pandas(source: str, out: str) -> dict:
    """The naive reference: ``pandas.read_csv`` the whole file, then write it with xarray."""
    import pandas as pd
    import xarray as xr

    base = _peak_rss_mib()
    t0 = time.perf_counter()
    frame = pd.read_csv(source, sep="\t", skiprows=2, index_col=0)
    frame = frame.drop(columns="Description")
    ds = xr.Dataset(
        {"counts": (("sample", "gene"), frame.to_numpy().T.astype(np.int32))},
        coords={"sample": frame.columns.to_numpy(dtype=str), "gene": frame.index.to_numpy(dtype=str)},
    )
    ds.chunk({"sample": 2048, "gene": 2048}).to_zarr(out, mode="w", zarr_format=3, consolidated=False)
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss_mib": _peak_rss_mib(),
        "import_rss_mib": base,
        "n": [int(frame.shape[1]), int(frame.shape[0])],
    }


def child_simulate(out: str, n_samples: int, n_genes: int) -> dict:
    """Simulate a cohort with ``gexplain.pipelines.simulate.cohort.simulate_cohort``."""
    from gexplain.pipelines.simulate.cohort import simulate_cohort

    base = _peak_rss_mib()
    t0 = time.perf_counter()
    simulate_cohort(out, n_samples=n_samples, n_genes=n_genes, n_classes=10, seed=0)
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss_mib": _peak_rss_mib(),
        "import_rss_mib": base,
        "n": [n_samples, n_genes],
    }


def run_child(*args: str) -> dict:
    """Run one measurement in a fresh interpreter (nice'd by the caller) and parse its JSON line."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _du_mib(path: Path) -> float:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MiB
        if path.is_dir()
        else path.stat().st_size / MiB
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--ingest-size", nargs=2, type=int, metavar=("SAMPLES", "GENES"), default=None)
    parser.add_argument("--pandas-size", nargs=2, type=int, metavar=("SAMPLES", "GENES"), default=None)
    parser.add_argument("--simulate-size", nargs=2, type=int, metavar=("SAMPLES", "GENES"), default=None)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = {
            "gexplain": lambda: child_gexplain(*rest),
            "pandas": lambda: child_pandas(*rest),
            "simulate": lambda: child_simulate(rest[0], int(rest[1]), int(rest[2])),
        }[kind]()
        print(json.dumps(result))
        return 0
    ingest_size = args.ingest_size or ((200, 2000) if args.quick else (5000, 60000))
    pandas_size = args.pandas_size or ((200, 2000) if args.quick else (1000, 60000))
    sim_size = args.simulate_size or ((300, 1000) if args.quick else (27417, 19241))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gexplain-bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        sizes = sorted({tuple(pandas_size), tuple(ingest_size)})
        for n_s, n_g in sizes:
            gct = work / f"gct_{n_s}x{n_g}.gct.gz"
            t0 = time.perf_counter()
            generate_gct(gct, n_s, n_g, seed=0)
            print(
                f"generated {gct.name} ({_du_mib(gct):.0f} MiB) in {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
            methods = ["gexplain"] + (["pandas"] if (n_s, n_g) == tuple(pandas_size) else [])
            for method in methods:
                out = work / f"{method}_{n_s}x{n_g}.zarr"
                r = run_child(method, str(gct), str(out))
                values = n_s * n_g
                dense = values * 4 / MiB
                rows.append(
                    {
                        "what": "ingest GCT.gz",
                        "method": "gexplain ingest (streaming)"
                        if method == "gexplain"
                        else "pandas.read_csv whole + to_zarr",
                        "shape": f"{n_s:,} x {n_g:,}",
                        "input MiB": _du_mib(gct),
                        "dense int32 MiB": dense,
                        "wall s": r["seconds"],
                        "Mvalues/s": values / r["seconds"] / 1e6,
                        "input MiB/s": _du_mib(gct) / r["seconds"],
                        "peak RSS MiB": r["peak_rss_mib"],
                        "RSS after imports MiB": r["import_rss_mib"],
                    }
                )
                print(rows[-1], flush=True)
                shutil.rmtree(out, ignore_errors=True)
            gct.unlink()
        out = work / "cohort.zarr"
        r = run_child("simulate", str(out), str(sim_size[0]), str(sim_size[1]))
        values = sim_size[0] * sim_size[1]
        rows.append(
            {
                "what": "simulate cohort",
                "method": "simulate_cohort (counts+tpm+log_expr)",
                "shape": f"{sim_size[0]:,} x {sim_size[1]:,}",
                "input MiB": float("nan"),
                "dense int32 MiB": values * 4 * 3 / MiB,
                "wall s": r["seconds"],
                "Mvalues/s": values / r["seconds"] / 1e6,
                "input MiB/s": float("nan"),
                "peak RSS MiB": r["peak_rss_mib"],
                "RSS after imports MiB": r["import_rss_mib"],
            }
        )
        print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(c.replace("nan", "-") for c in cells) + " |")
    body = (
        "\n".join(lines)
        + "\n\nDense size: samples x genes x 4 bytes per layer (the simulator writes three layers). "
        "Peak RSS is the child process's `ru_maxrss`, including the interpreter and imports "
        "(the 'after imports' column). Throughput counts matrix values; input MiB/s is the "
        "compressed GCT.gz read rate. Generated files: negative-binomial counts, gzip level 1."
    )
    path = write_result("ingest", "Ingest and simulation: throughput and peak memory", body, quick=args.quick)
    print(body)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
