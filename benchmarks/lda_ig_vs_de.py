"""IG vs DE on the IG-limitations study's LDA cohort: precision@k and AUROC of the informative genes.

Question (Bontonou et al.): on a simulated cohort whose informative genes are known (33 classes,
15,000 genes in 1,500 pathways of 10, 37 up-weighted pathways per class, ~1.5 M reads per sample,
9,900 samples: ``simulate lda --preset bontonou``), how well do integrated gradients of a trained
MLP and a differential-expression test rank the truly informative genes? And is a ranking on its
own evidence? (A control with permuted labels: the model, and so IG, still produces a confident
top-k, which recovers the informative genes no better than chance.)

Pipeline: ``simulate_lda(structure="pathways")`` -> train one MLP replicate (gexplain defaults,
``max_epochs`` below) on log2(CPM+1) -> IG with the explain engine (zero baseline, 32 Gauss-Legendre
steps, deterministic mode, all samples, the sample's own class) -> gene score = mean |IG| over
samples; DE: Welch one-vs-rest per class on log2(CPM+1), gene score = max over classes of
-log10 p. Precision@k is the fraction of the top-k genes that are informative; AUROC is sklearn's
``roc_auc_score`` of the score against ``truth_informative``.

Usage::

    python benchmarks/lda_ig_vs_de.py                      # the study's size (9,900 x 15,000)
    python benchmarks/lda_ig_vs_de.py --samples 1980       # fewer samples (same genes / pathways)
    python benchmarks/lda_ig_vs_de.py --quick              # 330 samples x 1,500 genes (150 pathways)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import write_result  # noqa: E402

KS = (100, 1000)


def _scores_de(ds) -> np.ndarray:  # noqa: ANN001
    from gexplain.pipelines.de.analysis import execute, plan
    from gexplain.pipelines.de.stage import DeTest, OneVsRest

    req = DeTest(method="welch", one_vs_rest=OneVsRest(column="tissue"), layer="log_expr")
    results = execute(ds, plan(ds, req))
    p = np.stack(
        [np.nan_to_num(np.asarray(r["pvalue"].values, dtype=np.float64), nan=1.0) for r in results.values()]
    )
    return -np.log10(np.maximum(p.min(axis=0), 1e-300))


def _metrics(score: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    order = np.argsort(-score, kind="stable")
    out = {f"precision@{k}": float(truth[order[:k]].mean()) for k in KS}
    out["auroc"] = float(roc_auc_score(truth, score))
    return out


def _ig_scores(url: str, name: str, label: str, epochs: int, runtime) -> tuple[np.ndarray, float]:  # noqa: ANN001
    from gexplain.pipelines.explain.engine import run_explain
    from gexplain.pipelines.explain.params import ExplainParams
    from gexplain.pipelines.models.stage import TrainStageParams, run_training
    from gexplain.storage.store import read_result

    trained = run_training(
        url,
        TrainStageParams(label=label, model_set=name, replicates=1, max_epochs=epochs, overwrite=True),
        0,
        runtime=None,
    )
    spec = ExplainParams(
        explainers=["integrated_gradients"],
        references="zero:1",
        mode="deterministic",
        n_steps=32,
        repeats=1,
        actors=1,
        model_set=name,
        overwrite=True,
    )
    run_explain(url, spec, name=name, seed=0)
    attr = np.abs(np.asarray(read_result(url, f"explain/{name}")["attr_integrated_gradients"].values))
    return attr.mean(axis=0), float(trained["test_accuracy"][0])


def main() -> None:
    """Run the benchmark and write benchmarks/results/lda_ig_vs_de.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=9900)
    parser.add_argument("--pathways", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.pathways, args.epochs = 330, 150, 20
    from gexplain.cluster.runtime import start_runtime
    from gexplain.pipelines.simulate.lda import PRESETS, simulate_lda
    from gexplain.storage.store import open_store

    preset = dict(PRESETS["bontonou"])
    genes = args.pathways * int(preset["genes_per_pathway"])
    # 37 of 1,500 pathways per class at the study's size; the same fraction on fewer pathways
    upweighted = max(1, round(int(preset["upweighted_per_class"]) * args.pathways / 1500))
    load = os.getloadavg()
    runtime = start_runtime(num_cpus=2)
    runtime.ensure_ray()
    times: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            url = simulate_lda(
                str(Path(tmp) / "lda.zarr"),
                n_samples=args.samples,
                n_genes=genes,
                n_classes=int(preset["n_classes"]),
                seed=0,
                structure="pathways",
                n_pathways=args.pathways,
                genes_per_pathway=int(preset["genes_per_pathway"]),
                upweighted_per_class=upweighted,
                upweight=float(preset["upweight"]),
                pathway_concentration=float(preset["pathway_concentration"]),
                within_concentration=float(preset["within_concentration"]),
                min_share=float(preset["min_share"]),
                pathway_layout=str(preset["pathway_layout"]),  # type: ignore[arg-type]
                library_mean=float(preset["reads_per_sample"]),
                library_sd=float(preset["library_sd"]),
            )
            times["simulate"] = time.perf_counter() - start
            ds = open_store(url)
            truth = np.asarray(ds["truth_informative"].values, dtype=bool)
            start = time.perf_counter()
            de = _scores_de(ds)
            times["DE (33 Welch one-vs-rest)"] = time.perf_counter() - start
            start = time.perf_counter()
            ig, accuracy = _ig_scores(url, "ig", "tissue", args.epochs, runtime)
            times["train + IG"] = time.perf_counter() - start
            # control: the same counts with permuted labels
            labels = np.asarray(ds["sample_tissue"].values)
            from gexplain.storage.store import create_store

            perm = np.random.default_rng(1).permutation(labels)
            null_url = str(Path(tmp) / "null.zarr")
            writer = create_store(
                null_url,
                sample_ids=ds["sample"].values,
                gene_ids=ds["gene"].values,
                coords={"sample_tissue": ("sample", perm.astype(object))},
                layers={"log_expr": "float32"},
                chunks={"sample": 1024, "gene": 4096},
            )
            for s in range(0, args.samples, 1024):
                rows = slice(s, min(s + 1024, args.samples))
                writer.write_block({"sample": rows}, {"log_expr": ds["log_expr"].isel(sample=rows).values})
            writer.commit()
            start = time.perf_counter()
            ig_null, accuracy_null = _ig_scores(null_url, "ig", "tissue", args.epochs, runtime)
            times["train + IG (permuted labels)"] = time.perf_counter() - start
    finally:
        runtime.shutdown()
    rows = [
        ("IG (mean abs, trained MLP)", _metrics(ig, truth), f"{accuracy:.3f}"),
        ("DE (Welch one-vs-rest, max -log10 p)", _metrics(de, truth), "-"),
        ("IG, model trained on permuted labels", _metrics(ig_null, truth), f"{accuracy_null:.3f}"),
    ]
    lines = [
        "| gene ranking | " + " | ".join(f"precision@{k}" for k in KS) + " | AUROC | model test accuracy |",
        "|---|" + "---|" * (len(KS) + 2),
    ]
    for name, m, acc in rows:
        lines.append(
            f"| {name} | "
            + " | ".join(f"{m[f'precision@{k}']:.3f}" for k in KS)
            + f" | {m['auroc']:.3f} | {acc} |"
        )
    base = truth.mean()
    full = args.samples == 9900 and args.pathways == 1500
    size = "the study's size" if full else "REDUCED size (not the study's 9,900 x 15,000)"
    body = "\n".join(lines) + (
        f"\n\n{args.samples:,} samples x {genes:,} genes ({args.pathways:,} pathways of 10), 33 classes, "
        f"{upweighted} up-weighted pathways per class (Dirichlet concentration {preset['upweight']:g} against "
        f"{preset['pathway_concentration']:g}, disjoint consecutive blocks), gene shares Dirichlet("
        f"{preset['within_concentration']:g}) with every share >= {preset['min_share']:g}, a constant "
        f'{float(preset["reads_per_sample"]):,.0f} reads per sample (`preset = "bontonou"`, the authors\' simulator): {size}. '
        f"{int(truth.sum()):,} informative genes (base rate {base:.3f}: the precision of a random ranking). "
        f"MLP: gexplain defaults, {args.epochs} epochs max. "
        "Wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ". "
        f"Load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; at the end "
        + " / ".join(f"{v:.1f}" for v in os.getloadavg())
        + "."
    )
    path = write_result(
        "lda_ig_vs_de", "IG vs DE on the LDA cohort of the IG-limitations study", body, quick=args.quick
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
