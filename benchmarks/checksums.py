"""What do verified reads cost: the crc32c codec on write and read, and writing empty chunks?

Since issue 20 every array carries Zarr v3's ``crc32c`` codec after ``zstd`` and every chunk is
written, including chunks holding only the fill value, so a missing chunk is damage. This script
writes the same float32 matrix (default 8,192 samples x 20,480 genes, 640 MiB dense, chunks
2048 x 2048) three ways and reads it back:

* ``zstd`` -- the codecs before issue 20 (plain zarr read);
* ``zstd + crc32c`` -- plain zarr read (the codec checks each chunk once);
* ``zstd + crc32c, gexplain`` -- read through :class:`gexplain.storage.integrity.GuardedStore`
  (the codec's check plus the wrapper's: missing, short or failing chunks named), plus the
  listing-based chunk-presence check ``open_store`` runs.

It also measures the alternative the issue names -- recording a chunk count instead of writing
empty chunks -- by writing a matrix whose chunks are ``--empty`` (default 50 %) all-fill, with and
without ``write_empty_chunks``: the extra bytes and time are what writing every chunk costs.

Times are medians of ``--repeats`` (3) runs with a warm page cache: codec cost, not disk speed.
Run on a quiet machine; the table states the load average before and after.

Usage::

    python benchmarks/checksums.py            # 8,192 x 20,480 (a few minutes, ~2 GB of scratch)
    python benchmarks/checksums.py --quick    # 1,024 x 2,048 smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gexplain.storage.integrity import codecs, guarded_store  # noqa: E402
from machine import write_result  # noqa: E402

MiB = 2**20


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write(path: Path, data: np.ndarray, chunk: int, compressors: tuple, empty_chunks: bool) -> None:
    if path.exists():
        shutil.rmtree(path)
    arr = zarr.create_array(
        store=str(path),
        shape=data.shape,
        chunks=(chunk, chunk),
        dtype=data.dtype,
        compressors=compressors,
        fill_value=0.0,
        zarr_format=3,
        config={"write_empty_chunks": empty_chunks},
    )
    arr[:] = data


def _present_chunks(path: Path) -> int:
    return sum(1 for p in (path / "c").rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--genes", type=int, default=20480)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument(
        "--empty", type=float, default=0.5, help="fraction of all-fill chunks (empty-chunk run)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,024 x 2,048, chunks 256: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.genes, args.chunk, args.repeats = 1024, 2048, 256, 1
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    # log-expression-like values: compressible, not trivially so
    data = np.log2(rng.negative_binomial(2, 0.05, size=(args.samples, args.genes)) + 1.0).astype("float32")
    dense_mib = data.nbytes / MiB
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="gx-checksums-"))
    try:
        plain_codecs = (ZstdCodec(level=0),)
        for label, comp, guarded in (
            ("zstd (before issue 20)", plain_codecs, False),
            ("zstd + crc32c", codecs(), False),
            ("zstd + crc32c, read through gexplain", codecs(), True),
        ):
            path = scratch / "a.zarr"
            t_write = _median_time(lambda c=comp, p=path: _write(p, data, args.chunk, c, True), args.repeats)
            if guarded:
                store = guarded_store(str(path))

                def read(s=store) -> np.ndarray:
                    return zarr.open_array(s, mode="r", zarr_format=3)[:]  # type: ignore[arg-type]
            else:

                def read(p=path) -> np.ndarray:
                    return zarr.open_array(str(p), mode="r", zarr_format=3)[:]

            t_read = _median_time(read, args.repeats)
            assert np.array_equal(read(), data)
            t_list = (
                _median_time(lambda p=path: _present_chunks(p), args.repeats) if guarded else float("nan")
            )
            rows.append(
                f"| {label} | {t_write:.2f} | {dense_mib / t_write:.0f} | {t_read:.2f} | {dense_mib / t_read:.0f} "
                f"| {_size(path) / MiB:.1f} | {'' if t_list != t_list else f'{t_list * 1e3:.1f}'} |"
            )
        # writing every chunk versus skipping all-fill ones
        sparse = data.copy()
        n_r, n_c = -(-args.samples // args.chunk), -(-args.genes // args.chunk)
        cells = [(i, j) for i in range(n_r) for j in range(n_c)]
        for i, j in rng.permutation(np.array(cells))[: int(round(args.empty * len(cells)))]:
            sparse[i * args.chunk : (i + 1) * args.chunk, j * args.chunk : (j + 1) * args.chunk] = 0.0
        empty_rows = []
        for label, every in (
            ("skip all-fill chunks (zarr default)", False),
            ("write every chunk (gexplain)", True),
        ):
            path = scratch / "b.zarr"
            t_write = _median_time(
                lambda e=every, p=path: _write(p, sparse, args.chunk, codecs(), e), args.repeats
            )
            empty_rows.append(
                f"| {label} | {_present_chunks(path)} of {len(cells)} | {t_write:.2f} | {_size(path) / MiB:.2f} |"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()
    body = f"""
Matrix {args.samples:,} x {args.genes:,} float32 ({dense_mib:.0f} MiB dense), chunks {args.chunk} x {args.chunk};
medians of {args.repeats} run(s), warm page cache. Load average (1, 5, 15 min) before:
{", ".join(f"{x:.2f}" for x in load_before)}; after: {", ".join(f"{x:.2f}" for x in load_after)}.

| codecs | write s | write MiB/s | read s | read MiB/s | stored MiB | presence check ms |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Writing every chunk, with {args.empty:.0%} of the chunks all-fill (the alternative: record chunk counts):

| chunks written | present | write s | stored MiB |
|---|---|---|---|
{chr(10).join(empty_rows)}
"""
    path = write_result("checksums", "Checksums: crc32c and empty chunks", body, quick=args.quick)
    print(body)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
