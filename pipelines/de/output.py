"""DE result tables: the Dataset kept in the store, and CSV/Parquet exports.

A result is a Dataset over ``gene`` with pydeseq2's column names (``baseMean``,
``log2FoldChange``, ``lfcSE``, ``stat``, ``pvalue``, ``padj``; float64), coords ``gene`` and
``gene_symbol``, and attrs ``method``, ``contrast`` (``[factor, test, ref]``), ``design``,
``layer`` and ``within`` (per-group contrasts). It is stored under
``results/de/<method>/<contrast name>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.de.contrasts import Contrast
from gexplain.storage.errors import InputError
from gexplain.storage.schema import GENE
from gexplain.storage.store import begin_result_set, mark_result_complete, write_result

RESULT_COLUMNS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj")
FORMATS = (".csv", ".parquet")


def result_dataset(
    ds: xr.Dataset,
    *,
    base_mean: np.ndarray,
    log2_fold_change: np.ndarray,
    lfc_se: np.ndarray,
    stat: np.ndarray,
    pvalue: np.ndarray,
    padj: np.ndarray,
    method: str,
    contrast: Contrast,
    layer: str,
    design: str = "",
) -> xr.Dataset:
    """Assemble a DE result Dataset over the store's genes.

    Parameters
    ----------
    ds
        The store Dataset (for ``gene`` and ``gene_symbol``).
    base_mean, log2_fold_change, lfc_se, stat, pvalue, padj
        Dims (gene,), float64.
    method, contrast, layer, design
        Recorded in attrs.
    """
    genes = ds[GENE].values
    symbols = ds["gene_symbol"].values if "gene_symbol" in ds else np.full(genes.shape, "", dtype=object)
    columns = dict(
        zip(RESULT_COLUMNS, (base_mean, log2_fold_change, lfc_se, stat, pvalue, padj), strict=True)
    )
    attrs = {
        "method": method,
        "contrast": [contrast.factor, contrast.test, contrast.ref],
        "design": design,
        "layer": layer,
        "n_test": int(contrast.test_index.size),
        "n_ref": int(contrast.ref_index.size),
    }
    if contrast.within is not None:
        attrs["within"] = list(contrast.within)
    return xr.Dataset(
        {k: (GENE, np.asarray(v, dtype=np.float64)) for k, v in columns.items()},
        coords={GENE: genes, "gene_symbol": (GENE, symbols)},
        attrs=attrs,
    )


def result_group(method: str, name: str) -> str:
    """Store result group of a contrast: ``de/<method>/<name>``."""
    return f"de/{method}/{name}"


def begin_results(store_url: str, methods: set[str]) -> None:
    """Open each method's result set ``de/<method>``: its contrasts stay unlisted until :func:`finish_results`."""
    for method in sorted(methods):
        begin_result_set(store_url, f"de/{method}")


def finish_results(store_url: str, methods: set[str]) -> None:
    """Flag each method's result set complete once all its contrasts are written."""
    for method in sorted(methods):
        mark_result_complete(store_url, f"de/{method}")


def save_result(store_url: str, method: str, name: str, result: xr.Dataset) -> str:
    """Write a result into the store (atomically flagged complete); return its group path."""
    return write_result(store_url, result_group(method, name), result)


def to_frame(result: xr.Dataset) -> pd.DataFrame:
    """Return the result as a table: ``gene``, ``gene_symbol``, the six result columns and any
    extra per-gene variables (e.g. a preset's ``call``)."""
    frame = pd.DataFrame({"gene": result[GENE].values.astype(str)})
    frame["gene_symbol"] = result["gene_symbol"].values.astype(str) if "gene_symbol" in result.coords else ""
    extra = [str(n) for n in result.data_vars if str(n) not in RESULT_COLUMNS]
    for name in [*RESULT_COLUMNS, *extra]:
        frame[name] = result[name].values
    return frame


def check_table_path(path: str | Path) -> Path:
    """Validate an export path's suffix (``.csv`` or ``.parquet``) before any compute."""
    out = Path(path)
    if out.suffix.lower() not in FORMATS:
        raise InputError(
            f"--out {out}: unknown table format '{out.suffix}'; use a .csv or .parquet file name"
        )
    return out


def export_table(result: xr.Dataset, path: str | Path) -> Path:
    """Write the result table as CSV or Parquet (by suffix); return the path."""
    out = check_table_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = to_frame(result)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    return out
