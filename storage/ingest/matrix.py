"""Generic expression matrices: CSV, TSV (plain or gzip) and Parquet, in either orientation.

Genes x samples (rows are genes; an optional second column of symbols named ``Description``,
``gene_name``, ``gene_symbol`` or ``symbol``) or samples x genes (rows are samples). The
orientation is detected from which side's ids match the sample sheet, else from which side looks
like Ensembl ids; it can always be given explicitly.

Memory: text tables are read one block of rows at a time. Parquet is read batch by batch with
``ParquetFile.iter_batches``, but Arrow decodes a whole row group's column chunk at once, so
memory is bounded by the file's row-group size: write large matrices with row groups of a few
thousand rows (``pyarrow.parquet.write_table(..., row_group_size=2048)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.common import Block, Source, check_file, looks_ensembl, open_text, sha256_file
from gexplain.storage.ingest.firehose import firehose_scan, is_firehose
from gexplain.storage.ingest.text_table import scan_text, split_fields, text_blocks

Orientation = Literal["auto", "genes-x-samples", "samples-x-genes"]
ORIENTATIONS: tuple[str, ...] = ("auto", "genes-x-samples", "samples-x-genes")
SYMBOL_COLUMNS = ("description", "gene_name", "gene_symbol", "symbol")


def _detect(
    path: Path, row_ids: np.ndarray, col_ids: np.ndarray, sheet_ids: set[str] | None, has_symbols: bool
) -> Orientation:
    if has_symbols:
        return "genes-x-samples"
    if sheet_ids:
        in_rows = sum(str(r) in sheet_ids for r in row_ids)
        in_cols = sum(str(c) in sheet_ids for c in col_ids)
        if in_rows != in_cols:
            return "samples-x-genes" if in_rows > in_cols else "genes-x-samples"
    ens_rows = float(looks_ensembl(row_ids).mean()) if row_ids.size else 0.0
    ens_cols = float(looks_ensembl(col_ids).mean()) if col_ids.size else 0.0
    if max(ens_rows, ens_cols) >= 0.5 and ens_rows != ens_cols:
        return "genes-x-samples" if ens_rows > ens_cols else "samples-x-genes"
    raise InputError(
        f"{path}: cannot tell whether rows are genes or samples (no ids match the sample sheet and "
        "neither side looks like Ensembl ids); pass --orientation genes-x-samples or samples-x-genes"
    )


def _separator(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return ","
    if name.endswith((".tsv", ".txt", ".tab")):
        return "\t"
    text, _ = open_text(path)
    with text:
        first = text.readline()
    return "\t" if "\t" in first else ","


def _source(
    path: Path,
    orientation: Orientation,
    row_ids: np.ndarray,
    col_ids: np.ndarray,
    symbols: np.ndarray | None,
    blocks: Callable[[int], Iterator[Block]],
    sha: str,
    row_where: Callable[[int], str],
    col_where: Callable[[int], str],
    attrs: dict[str, object] | None = None,
) -> Source:
    genes_rows = orientation == "genes-x-samples"
    return Source(
        fmt="matrix",
        path=str(path),
        sample_ids=col_ids if genes_rows else row_ids,
        gene_ids=row_ids if genes_rows else col_ids,
        gene_symbols=symbols,
        rows="gene" if genes_rows else "sample",
        read_blocks=blocks,
        hashes={str(path): sha},
        gene_where=row_where if genes_rows else col_where,
        sample_where=col_where if genes_rows else row_where,
        attrs={"orientation": orientation, **(attrs or {})},
    )


def scan_text_matrix(
    path: Path, *, orientation: Orientation = "auto", sheet_ids: set[str] | None = None
) -> Source:
    """Scan a CSV/TSV matrix (plain or gzip).

    Parameters
    ----------
    path
        The table; the first column holds row ids, the header holds column ids.
    orientation
        ``auto``, ``genes-x-samples`` or ``samples-x-genes``.
    sheet_ids
        Sample ids of the sample sheet, used to detect the orientation.
    """
    check_file(path, "matrix")
    sep = _separator(path)
    text, _ = open_text(path)
    with text:
        header = [h.strip().strip('"').lower() for h in split_fields(text.readline().rstrip("\r\n"), sep)]
    has_symbols = len(header) > 2 and header[1] in SYMBOL_COLUMNS and orientation != "samples-x-genes"
    n_id = 2 if has_symbols else 1
    scan = scan_text(path, sep=sep, n_id=n_id, what="matrix")
    attrs: dict[str, object] = {}
    if is_firehose(scan):
        text, _ = open_text(path)
        with text:
            text.readline()
            quantities = split_fields(text.readline().rstrip("\r\n"), sep)
        scan, col_ids = firehose_scan(scan, quantities)
        orientation = "genes-x-samples"
        attrs["firehose_quantity"] = quantities[scan.value_columns(n_id)[0]]
    else:
        col_ids = np.array(scan.header[n_id:], dtype=object)
    row_ids = scan.ids[:, 0]
    chosen = orientation if orientation != "auto" else _detect(path, row_ids, col_ids, sheet_ids, has_symbols)
    col_kind = "sample" if chosen == "genes-x-samples" else "gene"
    return _source(
        path,
        chosen,
        row_ids,
        col_ids,
        scan.ids[:, 1] if has_symbols else None,
        lambda block_rows: text_blocks(scan, n_id=n_id, block_rows=block_rows, col_kind=col_kind),
        scan.sha256,
        lambda i: f"{path}: line {scan.first_data_line + i}, column 1",
        lambda j: f"{path}: line 1, column {scan.value_columns(n_id)[j] + 1}",
        attrs,
    )


def scan_parquet_matrix(
    path: Path, *, orientation: Orientation = "auto", sheet_ids: set[str] | None = None
) -> Source:
    """Scan a Parquet matrix: a string id column (or the pandas index) and numeric value columns.

    Parameters
    ----------
    path
        The Parquet file.
    orientation, sheet_ids
        As for :func:`scan_text_matrix`.
    """
    check_file(path, "matrix")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc}); re-export it") from exc
    schema = pf.schema_arrow
    names = list(schema.names)
    doubled = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if doubled is not None:
        raise InputError(
            f"{path}: column '{doubled}' appears {names.count(doubled)} times (columns "
            f"{[i + 1 for i, n in enumerate(names) if n == doubled]}); column names must be unique — "
            "rename or drop the copies and write the file again"
        )
    meta = schema.pandas_metadata or {}
    index_cols = [c for c in meta.get("index_columns", []) if isinstance(c, str) and c in names]
    string_cols = [
        n
        for n in names
        if pa.types.is_string(schema.field(n).type) or pa.types.is_large_string(schema.field(n).type)
    ]
    id_col = index_cols[0] if index_cols else (string_cols[0] if string_cols else None)
    if id_col is None:
        raise InputError(
            f"{path}: no string id column found (columns: {names[:10]}); add a column of row ids"
        )
    symbol_col = next(
        (
            n
            for n in string_cols
            if n != id_col and n.lower() in SYMBOL_COLUMNS and orientation != "samples-x-genes"
        ),
        None,
    )
    value_cols = [n for n in names if n not in (id_col, symbol_col)]
    non_numeric = [
        n
        for n in value_cols
        if not (pa.types.is_integer(schema.field(n).type) or pa.types.is_floating(schema.field(n).type))
    ]
    if non_numeric:
        raise InputError(
            f"{path}: column '{non_numeric[0]}' has type {schema.field(non_numeric[0]).type}, expected numbers; "
            "drop or convert the non-numeric columns"
        )
    if pf.metadata.num_rows == 0 or not value_cols:
        raise InputError(
            f"{path}: the Parquet matrix is empty ({pf.metadata.num_rows} rows, {len(value_cols)} value columns)"
        )
    ids_table = pf.read(columns=[c for c in (id_col, symbol_col) if c])
    row_ids = np.array(ids_table.column(id_col).to_pylist(), dtype=object)
    symbols = np.array(ids_table.column(symbol_col).to_pylist(), dtype=object) if symbol_col else None
    col_ids = np.array(value_cols, dtype=object)
    chosen = (
        orientation
        if orientation != "auto"
        else _detect(path, row_ids, col_ids, sheet_ids, symbol_col is not None)
    )
    col_kind = "sample" if chosen == "genes-x-samples" else "gene"

    def blocks(block_rows: int) -> Iterator[Block]:
        start = 0
        for batch in pf.iter_batches(batch_size=max(1, block_rows), columns=value_cols):
            values = np.empty((batch.num_rows, len(value_cols)), dtype=np.float64)
            for j in range(len(value_cols)):
                values[:, j] = batch.column(j).to_numpy(zero_copy_only=False)

            def where(i: int, j: int, start: int = start) -> str:
                return f"{path}: row {start + i + 1} (id '{row_ids[start + i]}'), column '{value_cols[j]}' ({col_kind})"

            yield Block(start=start, values=values, where=where)
            start += batch.num_rows

    return _source(
        path,
        chosen,
        row_ids,
        col_ids,
        symbols,
        blocks,
        sha256_file(path),
        lambda i: f"{path}: row {i + 1} of column '{id_col}'",
        lambda j: f"{path}: column '{value_cols[j]}'",
    )


def scan_matrix(
    path: Path, *, orientation: Orientation = "auto", sheet_ids: set[str] | None = None
) -> Source:
    """Scan a generic matrix, choosing the Parquet or text reader by file name."""
    if orientation not in ORIENTATIONS:
        raise InputError(f"--orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}")
    if path.name.lower().endswith((".parquet", ".pq")):
        return scan_parquet_matrix(path, orientation=orientation, sheet_ids=sheet_ids)
    return scan_text_matrix(path, orientation=orientation, sheet_ids=sheet_ids)
