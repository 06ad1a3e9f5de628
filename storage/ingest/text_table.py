"""Streaming delimited-text tables (GCT, CSV, TSV; plain or gzip): a structure scan and row blocks.

The scan reads the file once, keeping only the leading id fields of each row, and checks that
every row has as many fields as the header (ragged rows) and that a gzip stream is complete.
Values are then streamed in blocks of rows through numpy's C text parser (``numpy.loadtxt``).
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.common import Block, Locator, check_file, not_text, open_text


@dataclass
class TextScan:
    """Structure of a delimited text table.

    Attributes
    ----------
    path
        The file.
    sep
        Field separator.
    header
        Header fields (the id columns' names first; an R-style header without a name for the
        row-name column gets ``""`` prepended).
    first_data_line
        1-based line number of the first data row.
    ids
        (rows, n_id) str: the leading id fields of every data row.
    sha256
        Digest of the raw file bytes.
    columns
        0-based field indices of the value columns to read (None: every field after the ids).
    """

    path: Path
    sep: str
    header: list[str]
    first_data_line: int
    ids: np.ndarray
    sha256: str
    columns: list[int] | None = None

    def value_columns(self, n_id: int) -> list[int]:
        """0-based field indices of the value columns."""
        return self.columns if self.columns is not None else list(range(n_id, len(self.header)))

    @property
    def n_rows(self) -> int:
        """Number of data rows."""
        return int(self.ids.shape[0])


def split_fields(line: str, sep: str) -> list[str]:
    """Split one line into fields; a field in double quotes may hold ``sep`` (CSV quoting)."""
    if '"' not in line:
        return line.split(sep)
    return next(csv.reader([line], delimiter=sep, quotechar='"'))


def _unquote(field: str) -> str:
    field = field.strip()
    if len(field) >= 2 and field[0] == field[-1] and field[0] in "\"'":
        return field[1:-1]
    return field


def _raise_truncated(path: Path, line: int, exc: Exception) -> None:
    raise InputError(
        f"{path}: the gzip stream is truncated or corrupt after line {line} ({exc}); "
        "re-download the file (check it with `gzip -t`)"
    ) from exc


def scan_text(
    path: Path,
    *,
    sep: str,
    n_id: int,
    skip_lines: int = 0,
    what: str = "matrix",
    preamble: list[str] | None = None,
) -> TextScan:
    """Scan a delimited table: header, leading id fields of every row, row lengths, integrity.

    Parameters
    ----------
    path
        Plain or gzip text file.
    sep
        Field separator (``"\\t"`` or ``","``).
    n_id
        Number of leading id fields per row (e.g. 2 for GCT ``Name``/``Description``).
    skip_lines
        Lines before the header (e.g. 2 for GCT's ``#1.2`` and dimensions lines); their text is
        appended to ``preamble`` when given.
    what
        Name of the file's role, for messages.
    preamble
        Receives the skipped lines.

    Raises
    ------
    InputError
        Empty file, missing header or data rows, ragged rows, truncated gzip.
    """
    check_file(path, what)
    text, hashing = open_text(path)
    ids: list[list[str]] = []
    header: list[str] | None = None
    n_fields = 0
    first_data_line = 0
    lineno = 0
    try:
        with text:
            for lineno, raw in enumerate(text, start=1):
                line = raw.rstrip("\r\n")
                if lineno <= skip_lines:
                    if preamble is not None:
                        preamble.append(line)
                    continue
                if header is None:
                    header = [_unquote(f) for f in split_fields(line, sep)]
                    n_fields = len(header)
                    first_data_line = lineno + 1
                    continue
                if not line:
                    raise InputError(f"{path}: line {lineno} is empty; remove blank lines inside the table")
                fields = split_fields(line, sep)
                count = len(fields)
                if lineno == first_data_line and count == n_fields + 1:
                    header = ["", *header]  # R-style header: no name over the row-name column
                    n_fields += 1
                if count != n_fields:
                    raise InputError(
                        f"{path}: line {lineno} has {count} fields but the header (line "
                        f"{first_data_line - 1}) has {n_fields}; fix the ragged row (a missing or "
                        f"extra '{sep!s}' separator, or a truncated line)"
                    )
                ids.append([_unquote(f) for f in fields[:n_id]])
    except UnicodeDecodeError as exc:
        raise not_text(path, lineno + 1, exc) from exc
    except (EOFError, OSError, zlib.error) as exc:
        _raise_truncated(path, lineno, exc)
    if header is None:
        raise InputError(f"{path}: the {what} has no header line; it looks empty or truncated")
    if not ids:
        raise InputError(f"{path}: the {what} has a header but no data rows (line {first_data_line})")
    if n_fields <= n_id:
        raise InputError(
            f"{path}: line {first_data_line - 1} (header) has {n_fields} fields; expected "
            f"{n_id} id column(s) followed by value columns — check the separator"
        )
    return TextScan(
        path=path,
        sep=sep,
        header=header,
        first_data_line=first_data_line,
        ids=np.array(ids, dtype=object).reshape(len(ids), n_id),
        sha256=hashing.digest.hexdigest(),
    )


def _parse(lines: list[str], sep: str, columns: list[int], where: Locator) -> np.ndarray:
    """Parse the value fields ``columns`` of ``lines`` into float64 (rows, columns) with numpy's C parser."""
    try:
        return np.loadtxt(lines, delimiter=sep, usecols=columns, dtype=np.float64, ndmin=2, quotechar='"')
    except ValueError as exc:
        for i, line in enumerate(lines):
            fields = split_fields(line, sep)
            for j, token in enumerate(fields[c] for c in columns):
                try:
                    float(token.strip('"'))
                except ValueError:
                    raise InputError(
                        f"{where(i, j)}: {token!r} is not a number (missing values are not allowed); "
                        "fix or fill the entry"
                    ) from exc
        raise InputError(f"{where(0, 0)}: cannot parse this block of rows ({exc}); check the file") from exc


def text_blocks(scan: TextScan, *, n_id: int, block_rows: int, col_kind: str) -> Iterator[Block]:
    """Stream the value columns of a scanned table in blocks of rows.

    Memory holds the text of one block of rows and its float64 values.

    Parameters
    ----------
    scan
        Result of :func:`scan_text`.
    n_id
        Leading id fields to drop from each row.
    block_rows
        Rows per block.
    col_kind
        What the columns are (``"sample"`` or ``"gene"``), for messages.

    Yields
    ------
    Block
        float64 values (rows in block, value columns).
    """
    columns = scan.value_columns(n_id)
    names = [scan.header[c] for c in columns]
    step = max(1, block_rows)

    def locator(first_line: int) -> Locator:
        def where(i: int, j: int) -> str:
            return f"{scan.path}: line {first_line + i}, column {columns[j] + 1} ({col_kind} '{names[j]}')"

        return where

    text, _ = open_text(scan.path)
    with text:
        for _ in range(scan.first_data_line - 1):
            text.readline()
        start = 0
        lines: list[str] = []
        for raw in text:
            lines.append(raw.rstrip("\r\n"))
            if len(lines) == step:
                where = locator(scan.first_data_line + start)
                yield Block(start=start, values=_parse(lines, scan.sep, columns, where), where=where)
                start += len(lines)
                lines = []
        if lines:
            where = locator(scan.first_data_line + start)
            yield Block(start=start, values=_parse(lines, scan.sep, columns, where), where=where)
