"""What the fast variants give up: agreement with Zhao et al.'s aggregation on the same trained models.

Question (issue 17 item 8): on the same trained MLPs, how close are the rankings of

* ``paper``: ``preset = "zhao"`` (|attribution| -> median over the 64 references of each repeat,
  drawn from a pool of 128 -> mean over repeats and models);
* ``signed``: the signed mean over references and repeats (the collapsed fast path of
  ``cohort.toml``), ranked by its absolute value;
* ``expected``: ``mode = "expected"`` (dropout off: the exact infinite-repeat limit of ``signed``),
  ranked by its absolute value;

per sample and per class (the class mean of the scores), as Spearman's rho and the overlap of the
top 100 genes? The cohort is simulated (``simulate cohort``), the models trained with the Zhao
preset; explanations run in this process (``explain_block``, one block per class group).

Usage::

    python benchmarks/explain_variants.py            # 2,000 x 5,000, 10 classes, 2 models (quiet machine)
    python benchmarks/explain_variants.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gexplain.pipelines.explain.compute import compute_reference_stats, explain_block  # noqa: E402
from gexplain.pipelines.explain.engine import model_set_info, sample_targets  # noqa: E402
from gexplain.pipelines.explain.params import ExplainParams  # noqa: E402
from gexplain.pipelines.models.load import load_models  # noqa: E402
from gexplain.pipelines.models.stage import TrainStageParams, run_training  # noqa: E402
from gexplain.pipelines.simulate.cohort import simulate_cohort  # noqa: E402
from gexplain.storage.store import open_store  # noqa: E402
from machine import write_result  # noqa: E402

TOP = 100


def variants(n_refs: int, pool: int, repeats: int) -> dict[str, ExplainParams]:
    """The three estimators, integrated gradients, on universal references."""
    common = {"explainers": ["integrated_gradients"], "n_steps": 50, "memory_budget_mb": 256}
    return {
        "paper": ExplainParams(
            preset="zhao", references=f"universal:{n_refs}", reference_pool=pool, repeats=repeats, **common
        ),
        "signed": ExplainParams(
            references=f"universal:{n_refs}", repeats=repeats, repeat_std=False, **common
        ),
        "expected": ExplainParams(
            references=f"universal:{n_refs}", repeats=1, mode="expected", repeat_std=False, **common
        ),
    }


def top_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of the top-k genes of ``a`` that are in the top-k of ``b`` (rows)."""
    ta = np.argpartition(-a, k - 1, axis=-1)[..., :k]
    tb = np.argpartition(-b, k - 1, axis=-1)[..., :k]
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(ta, tb, strict=True)]))


def agreement(a: np.ndarray, b: np.ndarray, classes: np.ndarray, k: int) -> tuple[float, float, float, float]:
    """(median per-sample rho, mean per-sample top-k overlap, mean per-class rho, mean per-class overlap)."""
    rho = [spearmanr(x, y)[0] for x, y in zip(a, b, strict=True)]
    ca = np.stack([a[classes == c].mean(0) for c in np.unique(classes)])
    cb = np.stack([b[classes == c].mean(0) for c in np.unique(classes)])
    crho = [spearmanr(x, y)[0] for x, y in zip(ca, cb, strict=True)]
    return float(np.median(rho)), top_overlap(a, b, k), float(np.mean(crho)), top_overlap(ca, cb, k)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.quick:
        n, genes, classes, models, epochs, explained, n_refs, pool, repeats, k = (
            300,
            300,
            3,
            2,
            3,
            30,
            8,
            16,
            4,
            20,
        )
    else:
        n, genes, classes, models, epochs, explained, n_refs, pool, repeats, k = (
            2000,
            5000,
            10,
            2,
            100,
            200,
            64,
            128,
            40,
            TOP,
        )
    root = Path(tempfile.mkdtemp(prefix="gx-variants-"))
    try:
        url = simulate_cohort(str(root / "c.zarr"), n_samples=n, n_genes=genes, n_classes=classes, seed=0)
        train = TrainStageParams(preset="zhao", replicates=models, max_epochs=epochs, ray=False)
        fit = run_training(url, train, 0, runtime=None)
        ds = open_store(url)
        info = model_set_info(url, "default", None)
        targets = sample_targets(ds, info)
        x_all = np.asarray(ds[info.layer].values, dtype=np.float32)
        stats = compute_reference_stats(x_all, targets)
        rows = np.linspace(0, n - 1, explained).astype(np.int64)
        loaded = load_models(url, "default", genes=ds.gene.values)
        out: dict[str, np.ndarray] = {}
        for name, params in variants(n_refs, pool, repeats).items():
            partial = explain_block(
                [m.module for m in loaded],
                [m.replicate for m in loaded],
                x_all[rows],
                targets[rows],
                rows,
                range(params.repeats),
                stats,
                params,
                0,
            )
            out[name] = np.abs(partial.finalize()["integrated_gradients"][0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    lines = [
        f"{explained} samples of a simulated {n} x {genes} cohort, {classes} classes, {models} MLPs "
        f"(preset zhao, {epochs} epochs; test accuracy {', '.join(f'{a:.3f}' for a in fit['test_accuracy'])}); "
        f"IG, universal:{n_refs}, {repeats} repeats; top {k}.",
        "",
        "| pair | per-sample Spearman (median) | per-sample top-k overlap | per-class Spearman | per-class top-k overlap |",
        "|---|---|---|---|---|",
    ]
    for a, b in (("paper", "signed"), ("paper", "expected"), ("signed", "expected")):
        rho, top, crho, ctop = agreement(out[a], out[b], targets[rows], k)
        lines.append(f"| {a} vs {b} | {rho:.3f} | {top:.3f} | {crho:.3f} | {ctop:.3f} |")
    lines += [
        "",
        f"Load average before {load_before[0]:.2f} / {load_before[1]:.2f}, after {load_after[0]:.2f} / "
        f"{load_after[1]:.2f} (1 / 5 min). signed and expected ranked by |score|.",
    ]
    table = "\n".join(lines)
    print(table)
    print(
        f"written {write_result('explain_variants', 'What the fast variants give up', table, quick=args.quick)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
