"""Label-permutation calibration of DE calls (``calibrate = N`` in the ``de`` stage).

Li et al. (2022, Genome Biology 23:79) found that DESeq2 and edgeR often exceed 20 % actual FDR
at a 5 % target in population-scale cohorts (heterogeneous, outlier-rich samples) while the
Wilcoxon rank-sum test stayed calibrated; their check was to permute the condition labels, under
which every call is false. This module does that check for every method and contrast of a DE run:

* for permutation ``p`` (generator ``(seed, p)``), the contrast's own samples (test and reference
  groups together) have their labels shuffled, group sizes kept (for a per-group contrast, only
  inside its group; for one-vs-rest, the level against the rest); covariates stay with their
  samples;
* the method reruns on the permuted labels with the same options, and the genes with
  ``padj < alpha`` are counted: all of them are false calls.

Summary per (method, contrast): ``observed`` calls on the real labels, ``perm_mean`` /
``perm_max`` calls under permutation, ``perm_any`` the fraction of permutations with at least one
call (a family-wise error rate; about ``alpha`` or less for a calibrated BH procedure when no gene
is truly DE), and ``fdr_estimate = min(1, perm_mean / observed)``, the permutation estimate of the
FDR of the real calls (Storey & Tibshirani 2003 with pi0 = 1; NaN without calls).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.de import contrasts as cx
from gexplain.pipelines.de.analysis import Plan, execute
from gexplain.pipelines.progress import SILENT, Progress
from gexplain.storage.errors import InputError
from gexplain.storage.schema import SAMPLE
from gexplain.storage.store import list_results, read_result, write_result

RESULT_GROUP = "calibration/de"
PERMUTATION_STREAM = 11


def permute_contrast(
    ds: xr.Dataset, contrast: cx.Contrast, rng: np.random.Generator
) -> tuple[xr.Dataset, cx.Contrast]:
    """Shuffle the labels of a contrast's samples (group sizes kept).

    Parameters
    ----------
    ds
        The store Dataset.
    contrast
        The contrast; its test and reference samples exchange labels at random.
    rng
        Generator of the shuffle.

    Returns
    -------
    tuple
        The Dataset with the contrast's column permuted over those samples, and the contrast
        with the matching test and reference sample positions.
    """
    column = cx.column_name(ds, contrast.factor)
    rows = np.concatenate([contrast.test_index, contrast.ref_index])
    shuffled = rng.permutation(rows)
    values = np.asarray(ds[column].values).copy()
    values[rows] = values[shuffled]
    was_test = np.isin(shuffled, contrast.test_index)
    permuted = replace(contrast, test_index=np.sort(rows[was_test]), ref_index=np.sort(rows[~was_test]))
    return ds.assign({column: (SAMPLE, values)}), permuted


def _called(result: xr.Dataset, alpha: float) -> int:
    return int((np.nan_to_num(np.asarray(result["padj"].values, dtype=np.float64), nan=1.0) < alpha).sum())


def calibrate(
    ds: xr.Dataset,
    checked: Plan,
    observed: dict[str, xr.Dataset],
    n_permutations: int,
    seed: int,
    *,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Rerun a checked DE request on permuted labels; one row per (contrast, permutation).

    Parameters
    ----------
    ds
        The store Dataset.
    checked
        The checked request (:func:`gexplain.pipelines.de.analysis.plan`).
    observed
        Its results on the real labels, by contrast name.
    n_permutations
        Permutations per contrast (at least 1).
    seed
        Seed; permutation ``p`` of every contrast uses generator ``(seed, PERMUTATION_STREAM, p)``.
    progress
        Progress reporting: one step per (contrast, permutation); the reruns themselves are silent.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``contrast``, ``permutation``, ``n_called`` (padj < alpha under
        permuted labels), ``observed`` (calls on the real labels), ``alpha``, ``n_genes``.
    """
    if n_permutations < 1:
        raise InputError(f"calibrate = {n_permutations}: give a positive number of permutations")
    req = checked.request
    rows = []
    todo = len(checked.contrasts) * n_permutations
    with (progress or SILENT).task(f"de calibration: {req.method} permutations", todo) as task:
        for contrast, p in ((c, p) for c in checked.contrasts for p in range(n_permutations)):
            rng = np.random.default_rng([seed, PERMUTATION_STREAM, p])
            data, permuted = permute_contrast(ds, contrast, rng)
            (result,) = execute(data, replace(checked, contrasts=[permuted])).values()
            task.advance()
            rows.append(
                {
                    "method": req.method,
                    "contrast": contrast.name,
                    "permutation": p,
                    "n_called": _called(result, req.alpha),
                    "observed": _called(observed[contrast.name], req.alpha),
                    "alpha": req.alpha,
                    "n_genes": int(result["padj"].size),
                }
            )
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (method, contrast): observed calls, permuted-call mean / max / any, FDR estimate.

    Parameters
    ----------
    table
        Rows of :func:`calibrate` (several requests may be concatenated).
    """
    out = []
    for (method, contrast), t in table.groupby(["method", "contrast"], sort=True):
        observed = int(t["observed"].iloc[0])
        mean = float(t["n_called"].mean())
        out.append(
            {
                "method": method,
                "contrast": contrast,
                "alpha": float(t["alpha"].iloc[0]),
                "permutations": int(t.shape[0]),
                "observed": observed,
                "perm_mean": mean,
                "perm_max": int(t["n_called"].max()),
                "perm_any": float((t["n_called"] > 0).mean()),
                "fdr_estimate": min(1.0, mean / observed) if observed else np.nan,
            }
        )
    return pd.DataFrame(out)


def save_calibration(store_url: str, summary: pd.DataFrame) -> str:
    """Write the summary table to the store as ``results/calibration/de`` (one row per entry)."""
    data = xr.Dataset(
        {c: ("row", summary[c].to_numpy()) for c in summary.columns},
        attrs={"source": "label permutation (pipelines/de/calibration.py)"},
    )
    return write_result(store_url, RESULT_GROUP, data)


def write_calibration(store_url: str, folder: Path, tables: list[pd.DataFrame]) -> dict[str, Any]:
    """Summarise permutation tables, store the summary and write both as CSV.

    Parameters
    ----------
    store_url
        The store (summary under ``results/calibration/de``).
    folder
        Run folder for ``calibration.csv`` (summary) and ``calibration_permutations.csv``.
    tables
        Outputs of :func:`calibrate`.

    Returns
    -------
    dict
        ``store_group``, ``table``, ``permutations_table`` and the summary rows (manifest).
    """
    every = pd.concat(tables, ignore_index=True)
    summary = summarize(every)
    folder.mkdir(parents=True, exist_ok=True)
    every.to_csv(folder / "calibration_permutations.csv", index=False)
    summary.to_csv(folder / "calibration.csv", index=False)
    return {
        "store_group": save_calibration(store_url, summary),
        "table": str(folder / "calibration.csv"),
        "permutations_table": str(folder / "calibration_permutations.csv"),
        "summary": summary.to_dict(orient="records"),
    }


def read_calibration(store_url: str) -> pd.DataFrame | None:
    """The stored calibration summary, or ``None`` when the DE stage ran without ``calibrate``."""
    if RESULT_GROUP not in list_results(store_url, "calibration"):
        return None
    data = read_result(store_url, RESULT_GROUP)
    return pd.DataFrame({c: np.asarray(data[c].values) for c in data.data_vars})
