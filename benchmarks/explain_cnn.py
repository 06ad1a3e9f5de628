"""The CNN with the paper's aggregation: gexplain's explicit rows against a plain Captum loop.

Question (issue 17 item 4): samples per second of ``explain_block`` on Zhao et al.'s CNN (19,241
genes on a 144 x 144 grid, ``nn.Dropout2d``), integrated gradients with explicit MC-dropout
repeats, |attribution| -> median over references, against the same work written as a Captum loop
(one ``IntegratedGradients.attribute`` per (sample, repeat) with its references batched), in the
same run, one thread. The CNN has no closed form: both run Captum's backward passes; the
difference is gexplain's mask hooks and batching.

Usage::

    python benchmarks/explain_cnn.py           # 144 x 144 grid, 4 samples, K 2, R 4 (quiet machine)
    python benchmarks/explain_cnn.py --quick   # small grid
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gexplain.pipelines.explain.compute import explain_block  # noqa: E402
from gexplain.pipelines.explain.modes import dropout_mask  # noqa: E402
from gexplain.pipelines.explain.params import ExplainParams  # noqa: E402
from gexplain.pipelines.explain.references import draw_reference_sets  # noqa: E402
from gexplain.pipelines.models.architectures import CNN  # noqa: E402
from machine import write_result  # noqa: E402


class _Scale(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    torch.set_num_threads(1)
    genes, n, k, r, steps = (200, 2, 2, 2, 4) if args.quick else (19241, 4, 2, 4, 20)
    torch.manual_seed(0)
    cnn = CNN(genes, 82 if not args.quick else 3, channel_dropout=True).eval()
    x = np.random.default_rng(0).gamma(2.0, 1.5, size=(n, genes)).astype(np.float32)
    targets = np.zeros(n, dtype=np.int64)
    params = ExplainParams(
        explainers=["integrated_gradients"],
        references=f"normal:{r}",
        repeats=k,
        abs=True,
        reference_reduce="median",
        n_steps=steps,
        memory_budget_mb=2048,
    )
    start = time.perf_counter()
    explain_block([cnn], [0], x, targets, np.arange(n), range(k), None, params, 0)
    ours = time.perf_counter() - start
    refs = torch.from_numpy(draw_reference_sets("normal", r, None, 0, 1, genes).values[0])
    start = time.perf_counter()
    for rep in range(k):
        for i in range(n):
            plain = copy.deepcopy(cnn)
            mask = dropout_mask(0, 0, i, rep, 0, (256, 1, 1), cnn.dropout_p)
            plain.dropout = _Scale(torch.from_numpy(mask))
            out = IntegratedGradients(plain).attribute(
                torch.from_numpy(x[i : i + 1]).expand(r, -1), baselines=refs, target=0, n_steps=steps
            )
            np.median(out.abs().detach().numpy(), axis=0)
    captum = time.perf_counter() - start
    load_after = os.getloadavg()
    table = "\n".join(
        [
            "| genes | grid | samples | K | R | steps | gexplain s | samples/s | Captum loop s | samples/s | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {genes} | {cnn.grid} | {n} | {k} | {r} | {steps} | {ours:.1f} | {n / ours:.3f} | {captum:.1f} | "
            f"{n / captum:.3f} | {captum / ours:.2f} |",
            "",
            f"One thread, fp32, CPU. Load average before {load_before[0]:.2f} / {load_before[1]:.2f}, after "
            f"{load_after[0]:.2f} / {load_after[1]:.2f} (1 / 5 min).",
        ]
    )
    print(table)
    print(
        f"written {write_result('explain_cnn', 'CNN paper aggregation vs a Captum loop', table, quick=args.quick)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
