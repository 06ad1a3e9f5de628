"""Where the time of the fast signed-mean run goes: a per-phase breakdown at 2,000 x 19,241.

Question (issue 17 item 3): for the Zhao-sized collapsed run (IG, ``universal:60`` cohort
references, 40 MC-dropout repeats collapsed into one mean-mask pass, one MLP 19,241 -> 128 -> 82),
how long does each phase take -- imports, runtime start, reads, reference statistics and draws,
building the reference-weight chunks, the contraction, the repeat spread, writes -- against the
whole command measured in the same run, and what share of the fp32 matmul peak is the whole?

Each phase is timed with the functions the engine calls, in this process (one thread: the work
of one actor), on the same data; the whole command is ``gexplain explain`` in a subprocess.

Usage::

    python benchmarks/explain_phases.py           # 2,000 x 19,241 (quiet machine)
    python benchmarks/explain_phases.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from explain_e2e import Sizes, build_store  # noqa: E402
from explain_exact import HIDDEN, matmul_peak  # noqa: E402
from machine import write_result  # noqa: E402


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201 - benchmark helper
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    cores = len(os.sched_getaffinity(0))
    sizes = (
        Sizes(64, 500, 5, 1, 4, 6, scaling_samples=0, e2e_samples=64, sample_block=32)
        if args.quick
        else Sizes(2000, 19241, 82, 1, 40, 60, scaling_samples=0, e2e_samples=2000, sample_block=256)
    )
    n, genes, k, r = sizes.samples, sizes.genes, sizes.repeats, sizes.references
    phases: dict[str, float] = {}
    root = Path(tempfile.mkdtemp(prefix="gx-phases-"))
    try:
        url = build_store(root, sizes, n, "phases")
        _, phases["imports (python -c import engine)"] = timed(
            subprocess.run,
            [sys.executable, "-c", "import gexplain.pipelines.explain.engine"],
            check=True,
        )
        from gexplain.cluster.runtime import start_runtime
        from gexplain.pipelines.explain.backends import MLPBackend
        from gexplain.pipelines.explain.fastpath import (
            MLPFastPath,
            contract_references,
            head,
            path_weights,
            unit_terms,
        )
        from gexplain.pipelines.explain.modes import mean_dropout_mask
        from gexplain.pipelines.explain.params import ExplainParams
        from gexplain.pipelines.explain.references import compute_reference_stats, draw_reference_sets
        from gexplain.pipelines.explain.registry import EXPLAINERS
        from gexplain.pipelines.models.load import load_models
        from gexplain.storage.store import create_result, open_store, write_result_region

        runtime = start_runtime(num_cpus=cores)
        _, phases["runtime start (embedded Ray)"] = timed(runtime.ensure_ray)
        runtime.shutdown()
        torch.set_num_threads(1)
        ds = open_store(url)
        x, phases["reads (whole layer)"] = timed(lambda: np.asarray(ds["log_expr"].values, dtype=np.float32))
        labels = np.arange(n) % sizes.classes
        stats, phases["reference statistics (class medians)"] = timed(compute_reference_stats, x, labels)
        sets, phases["reference draws"] = timed(
            draw_reference_sets, "universal", r, stats, 0, sizes.classes, genes
        )
        model = load_models(url, "default")[0].module.eval()
        params = ExplainParams(references=f"universal:{r}", repeats=k)
        backend = MLPBackend(EXPLAINERS["integrated_gradients"], model, params, 128 * 2**20)
        fast: MLPFastPath = backend.fast
        xt = torch.from_numpy(x)
        refs = torch.from_numpy(np.array(sets.values[0]))
        targets = torch.from_numpy(labels)
        block = sizes.sample_block
        weight_s = contract_s = spread_s = mask_s = 0.0
        out = np.zeros((n, genes), dtype=np.float32)
        with torch.no_grad():
            h_ref = fast.hidden(refs)
            for s0 in range(0, n, block):
                rows = slice(s0, min(s0 + block, n))
                t = time.perf_counter()
                masks = torch.from_numpy(
                    np.stack(
                        [
                            mean_dropout_mask(0, 0, i, range(k), 0, (HIDDEN,), 0.25)
                            for i in range(rows.start, rows.stop)
                        ]
                    )
                ).float()
                mask_s += time.perf_counter() - t
                t = time.perf_counter()
                h = fast.hidden(xt[rows])
                w = path_weights(fast, "integrated_gradients", h, h_ref, 50, "gausslegendre")
                gamma = w * (head(fast, targets[rows]) * masks)[:, None, :]
                weight_s += time.perf_counter() - t
                t = time.perf_counter()
                out[rows] = contract_references(fast, xt[rows], refs, gamma, 128 * 2**20).numpy()
                contract_s += time.perf_counter() - t
                if s0 == 0:  # the spread of one block, scaled to all blocks
                    t = time.perf_counter()
                    unit_terms(fast, xt[rows], refs, w, targets[rows], True)
                    spread_s = (time.perf_counter() - t) * -(-n // block)
        phases["mean dropout masks (K per sample)"] = mask_s
        phases["hidden activations + reference weights"] = weight_s
        phases["contraction (GEMM)"] = contract_s
        phases["repeat spread (repeat_std, extrapolated)"] = spread_s
        template = open_store(url)[["log_expr"]].rename({"log_expr": "attr"})
        create_result(url, "explain/phases", template)
        t = time.perf_counter()
        for s0 in range(0, n, block):
            write_result_region(
                url,
                "explain/phases",
                {"sample": slice(s0, min(s0 + block, n))},
                {"attr": out[s0 : s0 + block]},
            )
        phases["writes"] = time.perf_counter() - t
        cli = shutil.which("gexplain") or str(Path(sys.executable).parent / "gexplain")
        cmd = [cli, "explain", url, "--references", f"universal:{r}", "--repeats", str(k), "--no-repeat-std"]
        cmd += ["--sample-block", str(block), "--name", "whole"]
        done, whole = timed(subprocess.run, cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:])
            return 1
        peak = matmul_peak(genes, r, cores)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    useful = 2.0 * r * HIDDEN * genes * n / whole / 1e9
    lines = ["| phase | s (one thread) |", "|---|---|"]
    lines += [f"| {name} | {sec:.2f} |" for name, sec in phases.items()]
    lines += [
        f"| **whole `gexplain explain` ({cores} actors)** | **{whole:.2f}** |",
        "",
        f"{n} x {genes}, IG, universal:{r}, {k} repeats collapsed, H {HIDDEN}: useful {useful:.1f} GFLOP/s = "
        f"{100 * useful / peak:.1f} % of the fp32 peak ({peak:.1f} GFLOP/s on {cores} cores).",
        f"Load average before {load_before[0]:.2f} / {load_before[1]:.2f}, after {os.getloadavg()[0]:.2f} / "
        f"{os.getloadavg()[1]:.2f} (1 / 5 min).",
    ]
    table = "\n".join(lines)
    print(table)
    print(
        f"written {write_result('explain_phases', 'Per-phase breakdown of the fast run', table, quick=args.quick)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
