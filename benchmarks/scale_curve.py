"""Scale curve on a loopback Ray cluster: explain and train with 1, 2 and 3 worker processes (issue 19 item 6).

A token-authenticated Ray head with 0 CPUs and N worker nodes of 1 CPU each (each its own
``--temp-dir``, all on 127.0.0.1) is started for N = 1, 2, 3; ``gexplain run`` connects to it as a
user would and trains ``replicates`` models and explains the cohort with N actors. The store is
simulated once, locally, before the clusters start. Per N the table gives the train and explain
stages' wall time and the driver's peak RSS (the manifest's ``peak_rss_mb``: with an external
cluster the driver's process tree is the driver alone), plus the speed-up over N = 1.

Usage (on a quiet machine with >= 4 cores; the 2-core CI machine oversubscribes N = 3)::

    nice -n 10 python benchmarks/scale_curve.py                          # 4,000 x 2,000, 3 replicates
    nice -n 10 python benchmarks/scale_curve.py --samples 400 --genes 600 --workers 1 2 --epochs 1   # smoke

Results go to benchmarks/results/scale_curve.md with the machine, date and load average before
and after. Only the processes the script started are stopped, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from cluster_procs import BIN, ray_head, ray_worker_node, short_tmpdir  # noqa: E402
from machine import machine_line, write_result  # noqa: E402

JOB = """
[run]
name = "scale{n}"
out = "{out}"
store = "{store}"
seed = 5

[[stage]]
kind = "train"
[stage.params]
model_set = "scale{n}"
replicates = {replicates}
max_epochs = {epochs}
batch_size = 128

[[stage]]
kind = "explain"
[stage.params]
model_set = "scale{n}"
explainers = ["integrated_gradients"]
references = "universal:10"
repeats = 4
n_steps = 32
actors = {n}
cpus_per_actor = 1
sample_block = 128
"""


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def gexplain(args: list[str], env: dict[str, str]) -> None:
    """Run the CLI; fail with its output when it fails."""
    result = subprocess.run([str(BIN / "gexplain"), *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"gexplain {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    print(machine_line(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="gx-scale-"))
    store = tmp / "cohort.zarr"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", HOME=str(tmp))
    before = load()
    gexplain(
        ["simulate", "cohort", "--out", str(store), "--samples", str(args.samples), "--genes",
         str(args.genes), "--classes", "8", "--chunk-samples", "256"],
        env,
    )  # fmt: skip
    rows, base = [], None
    for n in args.workers:
        token = secrets.token_hex(32)
        head, address = ray_head(short_tmpdir("gx-sh-"), num_cpus=0, token=token, env={"HOME": str(tmp)})
        nodes = []
        try:
            for _ in range(n):
                nodes.append(ray_worker_node(address, "gx-sw-", num_cpus=1, token=token))
            cfg = tmp / f"scale{n}.toml"
            out = tmp / f"run{n}"
            cfg.write_text(
                textwrap.dedent(JOB).format(
                    n=n, out=out, store=store, replicates=args.replicates, epochs=args.epochs
                )
            )
            run_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
            gexplain(["run", str(cfg), "--cluster", address, "--force"], run_env)
        finally:
            for node in reversed(nodes):
                node.stop()
            head.stop()
        stages = {s["kind"]: s for s in json.loads((out / "manifest.json").read_text())["stages"]}
        train, explain = stages["train"], stages["explain"]
        base = base or (train["wall_s"], explain["wall_s"])
        rows.append(
            f"| {n} | {train['wall_s']:.1f} | {base[0] / train['wall_s']:.2f} | {train['peak_rss_mb']:.0f} | "
            f"{explain['wall_s']:.1f} | {base[1] / explain['wall_s']:.2f} | {explain['peak_rss_mb']:.0f} |"
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"{args.samples:,} x {args.genes:,} cohort store (chunk 256 samples); train: {args.replicates} MLP "
            f"replicates x {args.epochs} epochs, 1 thread each; explain: IG, 10 universal references, 4 repeats, "
            "32 steps, one 1-CPU actor per worker node. Head: 0 CPUs; N worker nodes x 1 CPU on 127.0.0.1.",
            "",
            "| worker processes | train s | train speed-up | train driver peak MiB | explain s | "
            "explain speed-up | explain driver peak MiB |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Load average before: {before}; after: {load()}.",
        ]
    )
    print(body)
    quick = args.samples < 4000
    print(f"wrote {write_result('scale_curve', 'Scale curve on a loopback Ray cluster', body, quick=quick)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
