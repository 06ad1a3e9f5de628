"""Which chunk shape serves both gene-block and sample-block work?

Differential expression reads gene blocks (all samples x 2048 genes); attribution reads sample
blocks (2048 samples x all genes). For each candidate chunk shape this script writes the same
float32 matrix (default 8,000 samples x 20,000 genes, 610 MiB dense) through
``gexplain.storage.store.create_store`` and measures, for one gene block and one sample block (both at
2048-aligned offsets, as the stages iterate them):

* read time through zarr (median of 3 reads; the page cache is warm, so this is decompression
  plus copying, the floor of what a local disk gives),
* bytes read: compressed size of the chunk objects touched (what an object store would transfer),
* amplification: uncompressed bytes of the chunks touched / bytes requested.

Usage::

    python benchmarks/chunking.py            # 8,000 x 20,000 (a few minutes, ~4 GB of scratch)
    python benchmarks/chunking.py --quick    # 1,000 x 2,500 smoke run
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gexplain.storage.store import create_store  # noqa: E402
from machine import write_result  # noqa: E402

MiB = 2**20
LAYER = "log_expr"


def candidate_shapes(n_samples: int, n_genes: int, block: int) -> list[tuple[str, int, int]]:
    """Chunk shapes to compare: (label, sample chunk, gene chunk), scaled by ``block`` (2048)."""
    return [
        ("square = block (default)", block, block),
        ("square, half block", block // 2, block // 2),
        ("square, 2 x block", 2 * block, 2 * block),
        ("wide (block/4 x 4 block)", block // 4, 4 * block),
        ("sample rows (block/8 x all genes)", block // 8, n_genes),
        ("gene columns (all samples x block/8)", n_samples, block // 8),
    ]


def write_store(path: Path, n_samples: int, n_genes: int, chunk_s: int, chunk_g: int, seed: int) -> None:
    """Write a log-expression-like float32 matrix, strip by chunk-aligned strip (bounded memory)."""
    writer = create_store(
        str(path),
        sample_ids=np.array([f"S{i}" for i in range(n_samples)], dtype=object),
        gene_ids=np.array([f"G{i}" for i in range(n_genes)], dtype=object),
        layers={LAYER: "float32"},
        chunks={"sample": chunk_s, "gene": chunk_g},
    )
    gene_mean = np.random.default_rng(seed).lognormal(1.0, 1.5, n_genes)
    if chunk_s >= chunk_g:  # strips of whole gene-chunk columns
        for g0 in range(0, n_genes, chunk_g):
            g1 = min(n_genes, g0 + chunk_g)
            rng = np.random.default_rng([seed, 0, g0])
            x = np.log2(rng.gamma(2.0, gene_mean[g0:g1] / 2.0, size=(n_samples, g1 - g0)) + 1.0)
            writer.write_block({"gene": slice(g0, g1)}, {LAYER: x.astype(np.float32)})
    else:  # strips of whole sample-chunk rows
        for s0 in range(0, n_samples, chunk_s):
            s1 = min(n_samples, s0 + chunk_s)
            rng = np.random.default_rng([seed, 1, s0])
            x = np.log2(rng.gamma(2.0, gene_mean / 2.0, size=(s1 - s0, n_genes)) + 1.0)
            writer.write_block({"sample": slice(s0, s1)}, {LAYER: x.astype(np.float32)})
    writer.commit()


def _touched(arr: zarr.Array, rows: slice, cols: slice) -> list[tuple[int, int]]:
    cs, cg = arr.chunks
    return [
        (i, j)
        for i in range(rows.start // cs, math.ceil(rows.stop / cs))
        for j in range(cols.start // cg, math.ceil(cols.stop / cg))
    ]


def measure(path: Path, rows: slice, cols: slice) -> dict[str, float]:
    """Read ``[rows, cols]`` of the layer; return seconds, compressed MiB read and amplification."""
    arr = zarr.open_array(str(path / LAYER), mode="r")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        block = arr[rows, cols]
        times.append(time.perf_counter() - t0)
    touched = _touched(arr, rows, cols)
    stored = sum((path / LAYER / "c" / str(i) / str(j)).stat().st_size for i, j in touched)
    cs, cg = arr.chunks
    return {
        "seconds": statistics.median(times),
        "mib_read": stored / MiB,
        "amplification": len(touched) * cs * cg * 4 / block.nbytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--genes", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    n_samples = args.samples or (1000 if args.quick else 8000)
    n_genes = args.genes or (2500 if args.quick else 20000)
    block = 256 if args.quick else 2048
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gexplain-bench-chunking-"))
    work.mkdir(parents=True, exist_ok=True)
    gene_block = (slice(0, n_samples), slice(block, 2 * block))
    sample_block = (slice(block, 2 * block), slice(0, n_genes))
    rows = []
    try:
        for label, cs, cg in candidate_shapes(n_samples, n_genes, block):
            path = work / f"c{cs}x{cg}.zarr"
            t0 = time.perf_counter()
            write_store(path, n_samples, n_genes, cs, cg, seed=0)
            write_s = time.perf_counter() - t0
            g = measure(path, *gene_block)
            full_s = 30000 if cs == n_samples else cs  # "all samples" layouts span the whole dim
            full_g = 60000 if cg == n_genes else cg
            s = measure(path, *sample_block)
            rows.append(
                [
                    label,
                    f"{cs} x {cg}",
                    f"{cs * cg * 4 / MiB:.1f}",
                    f"{math.ceil(30000 / full_s) * math.ceil(60000 / full_g):,}",
                    f"{write_s:.1f}",
                    f"{g['seconds']:.2f}",
                    f"{g['mib_read']:.0f}",
                    f"{g['amplification']:.1f}",
                    f"{s['seconds']:.2f}",
                    f"{s['mib_read']:.0f}",
                    f"{s['amplification']:.1f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = [
        "layout",
        "chunk (sample x gene)",
        "chunk MiB",
        "chunks at 30k x 60k",
        "write s",
        "gene block s",
        "gene block MiB read",
        "gene block amplif.",
        "sample block s",
        "sample block MiB read",
        "sample block amplif.",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    requested = n_samples * block * 4 / MiB, block * n_genes * 4 / MiB
    body = (
        f"Store: {n_samples:,} samples x {n_genes:,} genes float32 ({n_samples * n_genes * 4 / MiB:,.0f} MiB "
        f"dense), default zarr v3 compression. Gene block = all samples x {block} genes "
        f"({requested[0]:.0f} MiB requested); sample block = {block} samples x all genes "
        f"({requested[1]:.0f} MiB requested); both start at offset {block}. Read time is the median of "
        "3 warm-cache reads through zarr; MiB read is the compressed size of the chunk objects touched "
        "(what an object store transfers); amplification = uncompressed bytes of the chunks touched / "
        "bytes requested (1.0 is ideal).\n\n" + "\n".join(lines)
    )
    path = write_result(
        "chunking", "Chunk shape: gene-block versus sample-block reads", body, quick=args.quick
    )
    print(body)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
