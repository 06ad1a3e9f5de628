"""Training read from the store by chunk vs from memory (issue 19 item 2).

Parts
-----
* ``epoch``: one training epoch (``train_model`` with ``max_epochs=1``: standardisation pass,
  one pass of minibatch updates, the validation pass, the test pass) of the MLP on a simulated
  store, read (a) into memory first (``read_training_data``, the old path) and (b) streamed from
  the store (``open_training_data``, ``buffer_mb`` as given). Each path runs in its own process,
  so its peak RSS is its own; load time (reading the matrix) is reported apart from epoch time.
* ``cohort``: ``gexplain run pipelines/configs/cohort.toml`` (27,417 x 19,241: simulate, train,
  explain) with the peak RSS of the whole process tree (driver, embedded Ray, its workers)
  sampled every second, and each stage's wall time from the manifest. Goal: <= 6 GiB.

Usage (on a quiet machine)::

    nice -n 10 python benchmarks/train_stream.py --part epoch                          # 27,417 x 19,241
    nice -n 10 python benchmarks/train_stream.py --part epoch --samples 2000 --genes 2000   # smoke size
    nice -n 10 python benchmarks/train_stream.py --part cohort [--samples N]

Results go to benchmarks/results/train_stream_<part>.md with the machine, date and load average
before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_line, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import numpy as np
from gexplain.pipelines.models.data import open_training_data, read_training_data, stratified_split
from gexplain.pipelines.models.train import TrainParams, train_model

store, mode, buffer_mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
t0 = time.perf_counter()
if mode == "memory":
    data = read_training_data(store, None)
else:
    data = open_training_data(store, None, buffer_mb=buffer_mb)
load_s = time.perf_counter() - t0
split = stratified_split(data.y, 0.1, 0.1, seed=0)
params = TrainParams(max_epochs=1, batch_size=256, hidden=128)
t1 = time.perf_counter()
result = train_model(data.x, data.y, split, data.classes, params, seed=1)
epoch_s = time.perf_counter() - t1
reads = getattr(data.x, "chunk_reads", None)
print(json.dumps({"load_s": load_s, "epoch_s": epoch_s, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "chunk_reads": reads, "val_loss": result.metrics["best_val_loss"]}))
"""


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def simulate(store: Path, samples: int, genes: int, chunk_samples: int) -> None:
    """Write a cohort store with the CLI (log_expr layer, sample_tissue labels)."""
    cmd = [
        sys.executable, "-c", "import sys; from gexplain.pipelines.cli.main import main; sys.exit(main(sys.argv[1:]))",
        "simulate", "cohort", "--out", str(store), "--samples", str(samples), "--genes", str(genes),
        "--classes", str(82 if genes >= 19241 else 8), "--chunk-samples", str(chunk_samples),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT)


def part_epoch(samples: int, genes: int, buffer_mb: float, chunk_samples: int) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="gx-stream-"))
    store = tmp / "s.zarr"
    before = load()
    simulate(store, samples, genes, chunk_samples)
    rows = []
    for mode in ("memory", "stream"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(store), mode, str(buffer_mb)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(
            f"| {mode} | {r['load_s']:.1f} | {r['epoch_s']:.1f} | {r['peak_mb']:.0f} | "
            f"{r['chunk_reads'] if r['chunk_reads'] is not None else '-'} | {r['val_loss']:.6f} |"
        )
    return "\n".join(
        [
            f"{samples:,} x {genes:,} float32 (`log_expr`), stored sample chunk {chunk_samples}; MLP 128 hidden, "
            f"batch 256, 1 torch thread; streaming buffer_mb = {buffer_mb:g}.",
            "",
            "| path | load s | epoch s (stats + train + val + test) | peak RSS MiB | chunk reads | val loss |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Load average before: {before}; after: {load()}.",
        ]
    )


def part_cohort(samples: int | None) -> str:
    from explain_collapse import run_config, stage_rows

    base = ROOT / "pipelines" / "configs" / "cohort.toml"
    out = Path(tempfile.mkdtemp(prefix="gx-cohort-"))
    text = base.read_text().replace('out = "runs/cohort"', f'out = "{out / "run"}"')
    if samples:
        text = text.replace("n_samples = 27417", f"n_samples = {samples}")
    config = out / "cohort.toml"
    config.write_text(text)
    before = load()
    manifest, wall, peak = run_config(config, out)
    return "\n".join(
        [
            "`gexplain run pipelines/configs/cohort.toml`"
            + (f" with n_samples = {samples} (partial run)" if samples else " (27,417 x 19,241)")
            + "; training streams from the store.",
            "",
            "| stage | wall s | driver peak RSS MiB |",
            "|---|---|---|",
            *stage_rows(manifest),
            "",
            f"Whole run {wall:.0f} s; peak RSS of the process tree {peak:.0f} MiB ({peak / 1024:.2f} GiB; goal <= 6 GiB).",
            f"Load average before: {before}; after: {load()}.",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("epoch", "cohort"), required=True)
    parser.add_argument(
        "--samples", type=int, default=None, help="epoch: default 27,417; cohort: partial run"
    )
    parser.add_argument("--genes", type=int, default=19241)
    parser.add_argument("--buffer-mb", type=float, default=1024.0)
    parser.add_argument("--chunk-samples", type=int, default=256, help="as in pipelines/configs/cohort.toml")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    if args.part == "epoch":
        body = part_epoch(args.samples or 27417, args.genes, args.buffer_mb, args.chunk_samples)
    else:
        body = part_cohort(args.samples)
    print(body)
    quick = args.part == "epoch" and (args.samples or 27417) < 27417
    path = write_result(
        f"train_stream_{args.part}", f"Training from the store: {args.part}", body, quick=quick
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
