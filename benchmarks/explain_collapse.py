"""Exact attribution at cohort scale (issue 9): whole-CLI throughput vs Captum, the contraction's
GFLOP/s vs the machine's matmul peak, and the full-cohort run.

Parts (``--part``):

* ``peak``: GFLOP/s of :func:`gexplain.pipelines.explain.fastpath.contract_references` (256 samples x 60
  references x 128 hidden units x 19,241 genes, float32, 2 n R H G flops) against the measured
  float32 ``torch.matmul`` peak (4096^3, best of 3), with 1 and 2 torch threads.
* ``cli``: ``gexplain run`` of the Zhao protocol (integrated gradients, universal:60, 40 repeats,
  50 steps, one MLP 19,241 -> 128 -> 82) on a simulated 2,000 x 19,241 cohort; the explain stage's
  wall time comes from the run manifest. Against it: Captum float32 doing the same work one call
  per (reference, repeat) on batches of 64 samples (the dropout mask applied after the ReLU, as
  the repeat's mask), timed on a few calls and extrapolated to 2,000 x 60 x 40.
* ``cohort``: ``gexplain run pipelines/configs/cohort.toml`` (or ``--samples N`` for a measured
  partial run on the first N samples), with the peak resident memory of the whole process tree
  (driver, Ray actors, Dask) sampled every second; per-stage wall time and driver peak from the
  manifest.

Usage: ``nice -n 10 python benchmarks/explain_collapse.py --part peak|cli|cohort [--samples N]``.
Results go to benchmarks/results/explain_collapse_<part>.md with the machine, date and load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gexplain.pipelines.explain.fastpath import MLPFastPath, contract_references  # noqa: E402
from machine import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GENES, HIDDEN, CLASSES = 19241, 128, 82
REFS, REPEATS, STEPS, CAPTUM_BATCH = 60, 40, 50, 64


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def matmul_peak(threads: int, n: int = 4096) -> float:
    """Best-of-3 GFLOP/s of an n^3 float32 torch.matmul with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def part_peak() -> str:
    from gexplain.pipelines.models.architectures import MLP

    torch.manual_seed(0)
    fast = MLPFastPath(MLP(GENES, CLASSES, hidden=HIDDEN).eval())
    n = 256
    x = torch.rand(n, GENES) * 5
    refs = torch.rand(REFS, GENES) * 5
    gamma = torch.rand(n, REFS, HIDDEN)
    flops = 2 * n * REFS * HIDDEN * GENES
    rows = []
    for threads in (1, 2):
        peak = matmul_peak(threads)
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            with torch.no_grad():
                contract_references(fast, x, refs, gamma, 128 * 2**20)
            best = min(best, time.perf_counter() - t)
        rate = flops / best / 1e9
        rows.append(
            f"| {threads} | {peak:.1f} | {best:.2f} | {rate:.1f} | {100 * rate / peak:.0f}% | {load()} |"
        )
    return (
        "Contraction (256 samples x 60 references x 128 units x 19,241 genes, float32, "
        f"{flops / 1e9:.1f} GFLOP per call, includes building M in reference chunks of 128 MiB)\n\n"
        "| threads | matmul peak GFLOP/s (4096^3) | contraction s | contraction GFLOP/s | of peak | load (1, 5, 15 min) |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def run_config(config: Path, out_dir: Path) -> tuple[dict, float, float]:
    """Run ``gexplain run CONFIG``; return (manifest, wall s, peak tree RSS MiB)."""
    cmd = [
        sys.executable,
        "-c",
        "import sys; from gexplain.pipelines.cli.main import main; sys.exit(main(sys.argv[1:]))",
    ]
    cmd += ["run", str(config)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0.0]

    def sample() -> None:
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                procs = [parent, *parent.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20)
            except psutil.Error:
                pass
            time.sleep(1.0)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    watcher.join(timeout=5)
    if proc.returncode != 0:
        raise SystemExit(f"gexplain run failed ({proc.returncode}):\n{output[-4000:]}")
    manifests = sorted(out_dir.rglob("manifest.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(manifests[-1].read_text()), wall, peak[0]


def stage_rows(manifest: dict) -> list[str]:
    rows = []
    for stage in manifest["stages"]:
        rows.append(
            f"| {stage.get('name', stage.get('kind'))} | {stage.get('wall_s', float('nan')):.1f} | "
            f"{stage.get('peak_rss_mb', float('nan')):.0f} |"
        )
    return rows


def explain_seconds(manifest: dict) -> float:
    return float(next(s["wall_s"] for s in manifest["stages"] if s.get("kind") == "explain"))


CLI_CONFIG = """
[run]
name = "throughput"
out = "{out}"
store = "cohort.zarr"
seed = 0

[[stage]]
kind = "simulate"
[stage.params]
simulator = "cohort"
n_samples = {samples}
n_genes = 19241
n_classes = 82
chunk_samples = 256

[[stage]]
kind = "train"
[stage.params]
replicates = 1
max_epochs = 1

[[stage]]
kind = "explain"
name = "zhao"
[stage.params]
explainers = ["integrated_gradients"]
references = "universal:60"
repeats = 40
n_steps = 50
repeat_std = false
cpus_per_actor = 1
"""


def captum_seconds_per_call(store: str, calls: int) -> float:
    """Seconds of one Captum float32 IG call (batch 64, 50 steps, one reference, one mask)."""
    from captum.attr import IntegratedGradients
    from gexplain.pipelines.models.load import load_models
    from gexplain.storage.store import open_store

    torch.set_num_threads(1)
    model = load_models(store, "default")[0].module.eval()
    ds = open_store(store)
    x = torch.from_numpy(np.asarray(ds["log_expr"][:CAPTUM_BATCH].values, dtype=np.float32))
    targets = torch.arange(CAPTUM_BATCH) % CLASSES
    gen = torch.Generator().manual_seed(0)

    def masked(mask: torch.Tensor):  # noqa: ANN202 - the model with one repeat's dropout mask
        def forward(v: torch.Tensor) -> torch.Tensor:
            z = model.act(model.bn(model.fc1(model.standardize(v))))
            return model.fc2(z * mask)

        return forward

    times = []
    for _ in range(calls):
        mask = (torch.rand(HIDDEN, generator=gen) >= 0.25).float() / 0.75
        ref = torch.rand(1, GENES, generator=gen) * 5
        t = time.perf_counter()
        IntegratedGradients(masked(mask)).attribute(x, baselines=ref, target=targets, n_steps=STEPS)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def part_cli(samples: int, calls: int) -> str:
    out = Path(tempfile.mkdtemp(prefix="gexplain-throughput-"))
    config = out / "run.toml"
    config.write_text(CLI_CONFIG.format(out=out / "run", samples=samples))
    load_before = load()
    manifest, wall, peak = run_config(config, out)
    seconds = explain_seconds(manifest)
    store = str(out / "run" / "cohort.zarr")
    if not Path(store).exists():
        store = str(next(out.rglob("cohort.zarr")))
    per_call = captum_seconds_per_call(store, calls)
    total_calls = -(-samples // CAPTUM_BATCH) * REFS * REPEATS
    captum = per_call * total_calls
    pairs = samples * REFS * REPEATS
    return (
        f"Zhao protocol, {samples} samples x 19,241 genes, one MLP (128 hidden, 82 classes), integrated "
        f"gradients, universal:60, {REPEATS} repeats, {STEPS} steps.\n\n"
        "| method | seconds | sample-reference-repeats / s | speed-up |\n|---|---|---|---|\n"
        f"| Captum float32, one call per (reference, repeat), batch {CAPTUM_BATCH} (extrapolated from {calls} "
        f"calls of {per_call:.2f} s x {total_calls} calls) | {captum:.0f} | {pairs / captum:.0f} | 1x |\n"
        f"| `gexplain run` explain stage (2 actors x 1 thread, collapsed repeats, cohort references) | "
        f"{seconds:.1f} | {pairs / seconds:.0f} | {captum / seconds:.0f}x |\n\n"
        f"Whole `gexplain run` (simulate + train 1 epoch + explain): {wall:.0f} s, peak process-tree RSS "
        f"{peak:.0f} MiB. Per stage:\n\n| stage | wall s | driver peak RSS MiB |\n|---|---|---|\n"
        + "\n".join(stage_rows(manifest))
        + f"\n\nLoad before: {load_before}; after: {load()} (shared machine)."
    )


def part_cohort(samples: int | None) -> str:
    base = ROOT / "pipelines" / "configs" / "cohort.toml"
    out = Path(tempfile.mkdtemp(prefix="gexplain-cohort-"))
    text = base.read_text().replace('out = "runs/cohort"', f'out = "{out / "run"}"')
    if samples:
        text = text.replace("n_samples = 27417", f"n_samples = {samples}")
    config = out / "cohort.toml"
    config.write_text(text)
    cfg = tomllib.loads(text)
    n = next(s["params"]["n_samples"] for s in cfg["stage"] if s["kind"] == "simulate")
    load_before = load()
    manifest, wall, peak = run_config(config, out)
    seconds = explain_seconds(manifest)
    lines = [
        f"`gexplain run pipelines/configs/cohort.toml` on {n} x 19,241 samples"
        + (" (measured partial run: `n_samples` lowered; the full cohort is 27,417)" if samples else "")
        + ".\n",
        "| stage | wall s | driver peak RSS MiB |",
        "|---|---|---|",
        *stage_rows(manifest),
        "",
        f"Whole run {wall:.0f} s; peak RSS of the process tree (driver + Ray actors) {peak:.0f} MiB.",
        f"Explain stage: {seconds:.1f} s for {n} samples x 2 models x 2 explainers "
        f"({n * 2 / seconds:.1f} sample-models/s).",
    ]
    if samples:
        lines.append(
            f"Extrapolated (linear in samples, labelled as an extrapolation): explain stage for 27,417 samples "
            f"about {seconds * 27417 / n / 60:.1f} min."
        )
    lines.append(f"Load before: {load_before}; after: {load()} (shared machine).")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("peak", "cli", "cohort"), required=True)
    parser.add_argument(
        "--samples", type=int, default=None, help="cli: cohort size (2000); cohort: partial run"
    )
    parser.add_argument("--calls", type=int, default=4, help="cli: timed Captum calls")
    args = parser.parse_args()
    if args.part == "peak":
        body = part_peak()
    elif args.part == "cli":
        body = part_cli(args.samples or 2000, args.calls)
    else:
        body = part_cohort(args.samples)
    print(body)
    path = write_result(
        f"explain_collapse_{args.part}", f"Exact attribution at cohort scale: {args.part}", body, quick=False
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
