"""AnnData ``.h5ad`` files: X or a named layer (dense, CSR or CSC), read in blocks through h5py.

``obs`` rows are samples and ``var`` rows are genes. Dense and CSR matrices are streamed in
sample blocks (rows of X), CSC matrices in gene blocks (columns of X); only one block is in
memory at a time. ``obs`` columns become ``sample_*`` variables and ``var`` columns ``gene_*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anndata.io
import h5py
import numpy as np
import pandas as pd
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.common import (
    Block,
    Source,
    check_file,
    looks_ensembl,
    sanitize_name,
    sha256_file,
)

_SYMBOL_VARS = ("gene_symbol", "gene_symbols", "symbol", "gene_name", "feature_name")
_ID_VARS = ("gene_ids", "gene_id", "ensembl_id", "gene_ids-0")


def _annotations(frame: pd.DataFrame, prefix: str, skip: set[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for column in frame.columns:
        if column in skip:
            continue
        series = frame[column]
        name = sanitize_name(str(column))
        name = name if name.startswith(prefix) else prefix + name
        if name in ("gene_id_versioned", "gene_symbol", "gene_length"):
            name = prefix + "var_" + name.removeprefix(prefix)
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            out[name] = series.to_numpy()
        else:
            out[name] = series.astype(object).where(series.notna(), "").astype(str).to_numpy(dtype=object)
    return out


def _matrix(path: Path, handle: h5py.File, layer: str | None) -> h5py.Dataset | h5py.Group:
    key = "X" if layer is None else f"layers/{layer}"
    if key not in handle:
        have = list(handle["layers"].keys()) if "layers" in handle else []
        raise InputError(
            f"{path}: no {'X matrix' if layer is None else f'layer {layer!r}'} in the file; "
            f"choose --layer from {have or 'none (use X: omit --layer)'}"
        )
    return handle[key]


def scan_h5ad(path: Path, *, layer: str | None = None) -> Source:
    """Scan an ``.h5ad`` file: ids and annotations now, matrix blocks later.

    Parameters
    ----------
    path
        The file.
    layer
        Layer holding the values; None reads ``X``.
    """
    check_file(path, "h5ad file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5/h5ad file ({exc}); re-export it with AnnData") from exc
    with handle:
        obs = anndata.io.read_elem(handle["obs"])
        var = anndata.io.read_elem(handle["var"])
        mat = _matrix(path, handle, layer)
        encoding = str(mat.attrs.get("encoding-type", "array"))
        shape = tuple(int(n) for n in (mat.shape if isinstance(mat, h5py.Dataset) else mat.attrs["shape"]))
    if encoding not in ("array", "csr_matrix", "csc_matrix"):
        raise InputError(
            f"{path}: matrix encoding {encoding!r} is not supported; store X as dense, CSR or CSC"
        )
    if shape != (len(obs), len(var)):
        raise InputError(f"{path}: matrix shape {shape} does not match obs ({len(obs)}) x var ({len(var)})")
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"{path}: the AnnData matrix is empty (shape {shape})")
    var_index = np.asarray(var.index, dtype=object)
    id_col = next((c for c in _ID_VARS if c in var.columns), None)
    symbols: np.ndarray | None = None
    if id_col is not None and looks_ensembl(var[id_col].to_numpy()).mean() > looks_ensembl(var_index).mean():
        gene_ids = var[id_col].astype(str).to_numpy(dtype=object)
        symbols = var_index
    else:
        gene_ids = var_index
        id_col = None
    sym_col = next((c for c in _SYMBOL_VARS if c in var.columns), None)
    if symbols is None and sym_col is not None:
        symbols = (
            var[sym_col].astype(object).where(var[sym_col].notna(), "").astype(str).to_numpy(dtype=object)
        )
    rows = "gene" if encoding == "csc_matrix" else "sample"
    key = "X" if layer is None else f"layers/{layer}"

    def blocks(block_rows: int) -> Iterator[Block]:
        n = shape[1] if rows == "gene" else shape[0]
        step = max(1, block_rows)
        with h5py.File(path, "r") as fh:
            m = fh[key]
            for start in range(0, n, step):
                stop = min(n, start + step)
                if encoding == "array":
                    values = np.asarray(m[start:stop, :], dtype=np.float64)
                else:
                    indptr = m["indptr"][start : stop + 1]
                    lo, hi = int(indptr[0]), int(indptr[-1])
                    data = np.asarray(m["data"][lo:hi], dtype=np.float64)
                    idx = m["indices"][lo:hi]
                    values = np.zeros((stop - start, shape[0] if rows == "gene" else shape[1]))
                    row_of = np.repeat(np.arange(stop - start), np.diff(indptr))
                    values[row_of, idx] = data

                def where(i: int, j: int, start: int = start) -> str:
                    s, g = (j, start + i) if rows == "gene" else (start + i, j)
                    return f"{path}: {key}[{s}, {g}] (obs '{obs.index[s]}', var '{var_index[g]}')"

                yield Block(start=start, values=values, where=where)

    return Source(
        fmt="h5ad",
        path=str(path),
        sample_ids=np.asarray(obs.index, dtype=object),
        gene_ids=gene_ids,
        gene_symbols=symbols,
        rows=rows,  # type: ignore[arg-type]
        read_blocks=blocks,
        sample_vars=_annotations(obs, "sample_", set()),
        gene_vars=_annotations(var, "gene_", {c for c in (id_col, sym_col) if c}),
        hashes={str(path): sha256_file(path)},
        default_values="counts",
        gene_where=lambda i: f"{path}: var row {i} ('{var_index[i]}')",
        sample_where=lambda j: f"{path}: obs row {j} ('{obs.index[j]}')",
        attrs={"h5ad_matrix": key, "h5ad_encoding": encoding},
    )
