"""Sabbatini & Manganaro's Figure 2 with both DE methods: which ground-truth variables each calls.

Question: on datasets A-D (``simulate sabbatini``, 2,000 points, seed 0), which variables do
DESeq2 and edgeR call at padj < 0.05, against the truth (the significant pair, or D's 10)? edgeR
runs as the paper's "edgeR-GLM" (McCarthy et al. 2012: ``glmFit`` + ``glmLRT``, ``test = "lrt"``),
as edgeR's current QL F test (``test = "ql"``), each with its TMM normalisation, and the LRT with
DESeq2's size factors (``size_factors = "ratio"``). The paper reports the pair of A called by both
methods (p < 0.001) and nothing in B, C or D. Not a timing benchmark.

Usage::

    python benchmarks/de_sabbatini.py               # A-D, 1,000 points per group (the paper's size)
    python benchmarks/de_sabbatini.py --quick       # A and B only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import write_result  # noqa: E402

METHODS = {
    "DESeq2": ("deseq2", {}),
    "edgeR LRT (TMM)": ("edger", {"test": "lrt"}),
    "edgeR QL (TMM)": ("edger", {"test": "ql"}),
    "edgeR LRT (DESeq2 size factors)": ("edger", {"test": "lrt", "size_factors": "ratio"}),
}


def _row(dataset: str, method: str, padj: np.ndarray, truth: np.ndarray, genes: np.ndarray) -> str:
    called = np.nan_to_num(padj, nan=1.0) < 0.05
    names = ", ".join(genes[called]) or "none"
    return (
        f"| {dataset} | {method} | {int((called & truth).sum())} of {int(truth.sum())} | "
        f"{int((called & ~truth).sum())} of {int((~truth).sum())} | {np.nanmax(padj[truth]):.1e} | {names} |"
    )


def main() -> None:
    """Run every method on every dataset and write benchmarks/results/de_sabbatini.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="datasets A and B only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from gexplain.pipelines.de.deseq2.driver import run_deseq2
    from gexplain.pipelines.de.edger.driver import run_edger
    from gexplain.pipelines.simulate.sabbatini import simulate_sabbatini
    from gexplain.storage.store import open_store

    runners = {"deseq2": run_deseq2, "edger": run_edger}
    rows = [
        "| dataset | method | true called | noise called | max padj of the truth | called |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in ("A", "B") if args.quick else ("A", "B", "C", "D"):
            url = simulate_sabbatini(f"{tmp}/{dataset}.zarr", dataset=dataset, seed=args.seed)
            ds = open_store(url)
            truth = np.asarray(ds["truth_informative"].values, dtype=bool)
            genes = np.asarray(ds["gene"].values, dtype=str)
            for method, (kind, options) in METHODS.items():
                fit = runners[kind](ds, "~ group", [("group", "group_1", "group_0")], **options)
                padj = np.asarray(next(iter(fit.values()))["padj"].values, dtype=np.float64)
                rows.append(_row(dataset, method, padj, truth, genes))
    body = "\n".join(
        [f"Seed {args.seed}, 1,000 points per group, `~ group`, group_1 vs group_0, padj < 0.05.", "", *rows]
    )
    print(body)
    write_result("de_sabbatini", "Sabbatini & Manganaro Figure 2: DESeq2 and edgeR", body, quick=args.quick)


if __name__ == "__main__":
    main()
