"""Evaluation tables: kept in the store as ``results/evaluate/<name>/<table>`` and as CSV files.

A table is a pandas DataFrame; in the store it is a Dataset over one dim ``row`` with one
variable per column (strings as variable-length strings, missing numbers as NaN).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.storage.paths import atomic_write_bytes
from gexplain.storage.store import (
    begin_result_set,
    list_results,
    mark_result_complete,
    read_result,
    write_result,
)

ROW = "row"
PREFIX = "evaluate"


def table_to_dataset(df: pd.DataFrame, **attrs: object) -> xr.Dataset:
    """Convert a table to a Dataset over ``row`` (object columns become strings).

    Parameters
    ----------
    df
        The table.
    attrs
        Dataset attrs (JSON-serialisable), e.g. ``columns`` order is added automatically.
    """
    data = {}
    for col in df.columns:
        values = df[col].to_numpy()
        if values.dtype == object:
            nums = pd.to_numeric(df[col], errors="coerce")
            if df[col].isna().equals(nums.isna()):  # numbers with None
                values = nums.to_numpy(dtype=np.float64)
            else:
                values = df[col].astype(str).to_numpy(dtype=object)
        data[str(col)] = (ROW, values)
    return xr.Dataset(data, attrs={**attrs, "columns": [str(c) for c in df.columns]})


def dataset_to_table(ds: xr.Dataset) -> pd.DataFrame:
    """Inverse of :func:`table_to_dataset` (column order restored)."""
    cols = list(ds.attrs.get("columns", [str(v) for v in ds.data_vars]))
    return pd.DataFrame({c: np.asarray(ds[c].values) for c in cols})


def begin_evaluation(store_url: str, name: str) -> None:
    """Open evaluation ``name``: its tables stay unlisted until :func:`finish_evaluation` (one flag)."""
    begin_result_set(store_url, f"{PREFIX}/{name}")


def finish_evaluation(store_url: str, name: str) -> None:
    """Flag evaluation ``name`` complete once every table is written."""
    mark_result_complete(store_url, f"{PREFIX}/{name}")


def write_table(store_url: str, name: str, table: str, df: pd.DataFrame, csv_dir: Path | None = None) -> str:
    """Write a table into the store and, when ``csv_dir`` is given, as ``<csv_dir>/<table>.csv``.

    Parameters
    ----------
    store_url
        The store.
    name
        Evaluation name (``results/evaluate/<name>``).
    table
        Table name, e.g. ``"ground_truth"``.
    df
        The table.
    csv_dir
        Folder for the CSV copy.

    Returns
    -------
    str
        The result group, ``evaluate/<name>/<table>``.
    """
    group = f"{PREFIX}/{name}/{table}"
    write_result(store_url, group, table_to_dataset(df, table=table))
    if csv_dir is not None:
        atomic_write_bytes(str(Path(csv_dir) / f"{table}.csv"), df.to_csv(index=False).encode())
    return group


def read_tables(store_url: str, name: str | None = None) -> dict[str, pd.DataFrame]:
    """Read every stored evaluation table.

    Parameters
    ----------
    store_url
        The store.
    name
        Only this evaluation's tables; None reads all.

    Returns
    -------
    dict
        ``"<name>/<table>"`` -> table.
    """
    prefix = f"{PREFIX}/{name}" if name else PREFIX
    out = {}
    for group in list_results(store_url, prefix):
        out[group[len(PREFIX) + 1 :]] = dataset_to_table(read_result(store_url, group).load())
    return out
