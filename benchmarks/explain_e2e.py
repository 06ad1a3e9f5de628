"""Attribution engine end to end: actor scaling and a full-size run with peak memory.

Question: how fast does ``run_explain`` go on this machine with 1 and 2 actors, compared with the
same work done by ``explain_block`` in one process (what a user would script without the
engine), and what does the paper-size run (2,000 samples x 19,241 genes x 5 models x 10 repeats
x 10 references, MLP 19,241 -> 128 -> 82) cost in time and peak memory (driver + Ray actors,
psutil over the process tree)?

The models are random-init MLPs at the paper's width (cost does not depend on training). The
end-to-end run is measured on a fraction of the samples (``--e2e-samples``, default 128 of
2,000) and extrapolated linearly: the work is per sample, blocks are independent, and memory is
bounded by the block size, not by the cohort.

Usage::

    python benchmarks/explain_e2e.py            # paper sizes (minutes on 2 cores)
    python benchmarks/explain_e2e.py --quick    # tiny smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gexplain.cluster.runtime import start_runtime  # noqa: E402
from gexplain.pipelines.explain.compute import compute_reference_stats, explain_block  # noqa: E402
from gexplain.pipelines.explain.engine import run_explain  # noqa: E402
from gexplain.pipelines.explain.params import ExplainParams  # noqa: E402
from gexplain.pipelines.memory import tree_rss  # noqa: E402
from gexplain.pipelines.models.architectures import MLP  # noqa: E402
from gexplain.pipelines.models.load import load_models  # noqa: E402
from gexplain.pipelines.models.persist import save_model, state_bytes  # noqa: E402
from gexplain.storage.store import create_store, open_store  # noqa: E402
from machine import write_result  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """Benchmark sizes."""

    samples: int
    genes: int
    classes: int
    models: int
    repeats: int
    references: int
    scaling_samples: int
    e2e_samples: int
    sample_block: int


FULL = Sizes(2000, 19241, 82, 5, 10, 10, scaling_samples=128, e2e_samples=128, sample_block=64)
QUICK = Sizes(96, 500, 5, 2, 2, 3, scaling_samples=32, e2e_samples=96, sample_block=16)


class Peak:
    """Peak RSS of this process and of its whole process tree (driver + raylet + actors)."""

    def __init__(self) -> None:
        self.driver = 0
        self.tree = 0
        self._cpu: dict[int, float] = {}
        self._start = 0.0
        self.wall = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample_cpu(self, me: psutil.Process) -> None:
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                self._cpu[p.pid] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue

    def _run(self) -> None:
        me = psutil.Process()
        self._sample_cpu(me)
        self._base = dict(self._cpu)
        while not self._stop.wait(0.2):
            self.driver = max(self.driver, me.memory_info().rss)
            self.tree = max(self.tree, tree_rss(me))
            self._sample_cpu(me)

    @property
    def cores(self) -> float:
        """CPU seconds used by the process tree per wall second (last sample of each process)."""
        used = sum(v - self._base.get(pid, 0.0) for pid, v in self._cpu.items())
        return used / max(self.wall, 1e-9)

    def __enter__(self) -> Peak:
        self._start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.wall = time.perf_counter() - self._start


def build_store(root: Path, sizes: Sizes, n_samples: int, tag: str) -> str:
    """Write a synthetic log-expression store and ``sizes.models`` random MLPs at the paper's width."""
    rng = np.random.default_rng(0)
    url = str(root / f"{tag}.zarr")
    labels = np.array([f"c{i % sizes.classes}" for i in range(n_samples)])
    genes = np.array([f"g{j}" for j in range(sizes.genes)])
    writer = create_store(
        url,
        sample_ids=np.array([f"s{i}" for i in range(n_samples)]),
        gene_ids=genes,
        coords={"sample_tissue": ("sample", labels)},
        layers={"log_expr": "float32"},
        chunks={"sample": sizes.sample_block, "gene": 2048},
    )
    for start in range(0, n_samples, 256):
        stop = min(start + 256, n_samples)
        block = rng.gamma(2.0, 1.5, size=(stop - start, sizes.genes)).astype(np.float32)
        writer.write_block({"sample": slice(start, stop)}, {"log_expr": block})
    writer.commit()
    for k in range(sizes.models):
        torch.manual_seed(100 + k)
        model = MLP(sizes.genes, sizes.classes, hidden=128, dropout=0.25).eval()
        meta = {
            "arch": "mlp",
            "genes": genes.tolist(),
            "classes": sorted(set(labels.tolist()), key=lambda c: int(c[1:])),
            "hyperparameters": model.hyperparameters(),
            "standardize": False,
            "layer": "log_expr",
            "label": "sample_tissue",
            "seed": 100 + k,
            "metrics": {},
        }
        save_model(url, "default", k, state_bytes(model), meta)
    return url


def in_process(url: str, spec: ExplainParams, repeats: int, models: list[int]) -> float:
    """Seconds for the same work as the engine, by ``explain_block`` in this process (1 thread)."""
    torch.set_num_threads(1)
    ds = open_store(url)
    loaded = [m for m in load_models(url, "default") if m.replicate in models]
    classes = list(loaded[0].classes)
    targets = np.array([classes.index(v) for v in ds["sample_tissue"].values])
    x = ds["log_expr"].values
    start = time.perf_counter()
    stats = compute_reference_stats(x, targets)
    for m in loaded:
        explain_block(
            [m.module], [m.replicate], x, targets, np.arange(len(x)), range(repeats), stats, spec, 0
        )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument(
        "--e2e-samples", type=int, default=None, help="samples of the measured end-to-end run"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    e2e_samples = args.e2e_samples or sizes.e2e_samples
    spec = ExplainParams(
        explainers=["integrated_gradients", "deeplift"],
        references=f"universal_range:{sizes.references}",
        reference_scope="sample",
        repeat_mode="explicit",
        repeats=sizes.repeats,
    )
    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="gexplain-e2e-"))
    runtime = start_runtime(num_cpus=2)
    rows: list[str] = []
    try:
        runtime.ensure_ray()
        # -- scaling: one model, all repeats and references, a few sample blocks ----------------
        url = build_store(root, sizes, sizes.scaling_samples, "scaling")
        pairs = sizes.scaling_samples * sizes.repeats * sizes.references
        base = in_process(url, spec, sizes.repeats, [0])
        rows.append(
            f"| `explain_block` in one process, 1 thread (reference) | 1 | {base:.1f} | 0 | "
            f"{sizes.scaling_samples / base:.2f} | {pairs / base:.0f} | - | - |"
        )
        for actors in (1, 2):
            with Peak() as peak:
                summary = run_explain(
                    url,
                    spec.model_copy(
                        update={"models": [0], "actors": actors, "sample_block": sizes.sample_block // 2}
                    ),
                    name=f"scaling{actors}",
                )
            work_s = summary.wall_s - summary.pool_start_s
            print(rows[-1], flush=True)
            rows.append(
                f"| `run_explain` on the actor pool | {actors} | {summary.wall_s:.1f} | {summary.pool_start_s:.1f} | "
                f"{sizes.scaling_samples / work_s:.2f} | {pairs / work_s:.0f} | {peak.cores:.2f} | "
                f"{peak.tree / 2**20:.0f} |"
            )
        # -- end to end --------------------------------------------------------------------
        url = build_store(root, sizes, e2e_samples, "e2e")
        with Peak() as peak:
            summary = run_explain(
                url, spec.model_copy(update={"actors": 2, "sample_block": sizes.sample_block}), name="e2e"
            )
        scale = sizes.samples / e2e_samples
        full_blocks = -(-sizes.samples // sizes.sample_block)
        e2e_pairs = e2e_samples * sizes.models * sizes.repeats * sizes.references
        load = os.getloadavg()[0]
    finally:
        runtime.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    table = [
        f"Explainers integrated_gradients (50 steps, exact MLP fast path) + deeplift; mode mc_dropout; "
        f"universal references; MLP {sizes.genes} -> 128 -> {sizes.classes}; float32; torch threads = 1 per actor; "
        f"embedded Ray with 2 CPUs. 1-minute load average {load_start:.1f} at the start, {load:.1f} at the end "
        "(this 2-core machine is shared with other jobs: timings are upper bounds, and 2 actors can only "
        "beat 1 when a second core is actually free).",
        "",
        f"### Scaling: {sizes.scaling_samples} samples x 1 model x {sizes.repeats} repeats x "
        f"{sizes.references} references",
        "",
        "| how | actors | wall s | of which actor start-up s | samples/s (after start-up) | "
        "sample-reference pairs/s (after start-up) | cores used (CPU-s per wall-s, whole tree) | "
        "peak RSS tree MiB |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"### End to end: {sizes.samples} samples x {sizes.genes} genes x {sizes.models} models x "
        f"{sizes.repeats} repeats x {sizes.references} references (2 actors)",
        "",
        "| quantity | measured | extrapolated to full size |",
        "|---|---|---|",
        f"| samples | {e2e_samples} | {sizes.samples} |",
        f"| (sample, model, repeat, reference) values per explainer | {e2e_pairs:,} | {int(e2e_pairs * scale):,} |",
        f"| wall time | {summary.wall_s:.1f} s (actor start-up {summary.pool_start_s:.1f} s; "
        f"{peak.cores:.2f} cores used) | "
        f"{((summary.wall_s - summary.pool_start_s) * scale + summary.pool_start_s) / 60:.1f} min "
        "(compute linear in samples) |",
        f"| blocks written (one task each) | {summary.blocks_written} | {full_blocks} |",
        f"| peak RSS, driver | {peak.driver / 2**20:.0f} MiB | expected the same: bounded by the sample block "
        f"({sizes.sample_block}) and tasks in flight, not by the cohort |",
        f"| peak RSS, driver + raylet + actors | {peak.tree / 2**20:.0f} MiB | expected the same (as above) |",
    ]
    body = "\n".join(table)
    print(body)
    out = write_result("explain_e2e", "Attribution engine: scaling and end to end", body, quick=args.quick)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
