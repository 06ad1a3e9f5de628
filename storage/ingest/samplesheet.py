"""Sample sheets: GTEx SampleAttributesDS, GDC sample sheets and generic CSV/TSV tables.

Every column becomes a per-sample variable ``sample_<lower-cased name>``; GTEx's ``SMTS`` and
``SMTSD`` are also exposed as ``sample_tissue`` and ``sample_tissue_detail``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.common import check_file, not_text, open_text, sanitize_name, sha256_file

GTEX_ID = "SAMPID"
GTEX_ALIASES = {"SMTS": "sample_tissue", "SMTSD": "sample_tissue_detail"}
GDC_ID = "Sample ID"
GDC_FILE = "File Name"
_GENERIC_IDS = ("sample", "sample_id", "sampleid", "sample_name", "id", "barcode")


@dataclass
class SampleSheet:
    """A parsed sample sheet.

    Attributes
    ----------
    path
        The file.
    kind
        ``"gtex"``, ``"gdc"`` or ``"generic"``.
    id_column
        Name of the column holding sample ids.
    frame
        The table as read (one row per sheet row, strings for missing entries are ``""``).
    sha256
        Digest of the file.
    explicit
        True when the caller named the id column; otherwise :func:`resolve_id_column` picks the
        column whose values match the matrix's sample ids.
    """

    path: Path
    kind: str
    id_column: str
    frame: pd.DataFrame
    sha256: str
    explicit: bool = True

    def all_values(self) -> set[str]:
        """Every value of every column (to tell a matrix's orientation before the id column is known)."""
        if self.explicit:
            return {str(s) for s in self.ids}
        return {str(v).strip() for c in self.frame.columns for v in self.frame[c].to_numpy(dtype=object)}

    @property
    def ids(self) -> np.ndarray:
        """(rows,) str: the sample id of every row."""
        return self.frame[self.id_column].to_numpy(dtype=object)

    def line_of(self, row: int) -> int:
        """Return the 1-based file line of data row ``row`` (the header is line 1)."""
        return row + 2

    @property
    def label_column(self) -> str | None:
        """The natural label column of this kind of sheet."""
        return {"gtex": "sample_tissue", "gdc": "sample_sample_type"}.get(self.kind)


def read_sample_sheet(path: Path, *, id_column: str | None = None) -> SampleSheet:
    """Read a sample sheet (CSV or TSV, plain or gzip; GTEx, GDC or generic).

    Parameters
    ----------
    path
        The sheet.
    id_column
        Column holding the sample ids. Default: ``Sample ID`` for a GDC sheet (files map to
        samples through ``File Name``); otherwise the column whose values match the matrix's
        sample ids, chosen by :func:`resolve_id_column` once the matrix is scanned.

    Raises
    ------
    InputError
        Empty sheet, unknown ``id_column``, missing or duplicate ids (naming their lines).
    """
    check_file(path, "sample sheet")
    text, _ = open_text(path)
    with text:
        sep = "\t" if "\t" in text.readline() else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: the sample sheet is empty; export it again with a header row") from exc
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: cannot parse the sample sheet ({exc}); fix the ragged row") from exc
    except UnicodeDecodeError as exc:
        raise not_text(path, 1, exc) from exc
    if frame.empty:
        raise InputError(f"{path}: the sample sheet has a header but no rows")
    columns = [str(c) for c in frame.columns]
    explicit = id_column is not None
    if id_column is None:
        if GTEX_ID in columns:
            id_column = GTEX_ID
        elif GDC_ID in columns:
            id_column = GDC_ID
        else:
            lowered = {c.lower(): c for c in reversed(columns)}
            id_column = next((lowered[n] for n in _GENERIC_IDS if n in lowered), columns[0])
    if id_column not in columns:
        raise InputError(
            f"{path}: no column '{id_column}' in the sample sheet (columns: {', '.join(columns[:20])}); "
            "pass --sample-id-column with one of them"
        )
    kind = _kind(id_column, columns)
    explicit = explicit or kind == "gdc"
    frame = frame.fillna("")
    if explicit:
        _check_ids(path, frame, id_column, kind)
    return SampleSheet(
        path=path, kind=kind, id_column=id_column, frame=frame, sha256=sha256_file(path), explicit=explicit
    )


def _kind(id_column: str, columns: list[str]) -> str:
    if id_column == GTEX_ID:
        return "gtex"
    return "gdc" if id_column == GDC_ID and GDC_FILE in columns else "generic"


def _check_ids(path: Path, frame: pd.DataFrame, id_column: str, kind: str) -> None:
    """Strip the id column in place; raise on empty or (outside GDC sheets) duplicate ids."""
    ids = frame[id_column].astype(str).str.strip()
    missing = np.flatnonzero((ids == "").to_numpy())
    if missing.size:
        raise InputError(
            f"{path}: line {missing[0] + 2}, column '{id_column}': empty sample id; fill it or drop the row"
        )
    frame[id_column] = ids
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any() and kind != "gdc":
        rows = np.flatnonzero(dup)
        first_id = ids.iloc[rows[0]]
        lines = [int(r) + 2 for r in rows if ids.iloc[r] == first_id]
        raise InputError(
            f"{path}: duplicate sample id '{first_id}' in column '{id_column}' on lines "
            f"{', '.join(map(str, lines[:5]))}; keep one row per sample"
        )


def resolve_id_column(sheet: SampleSheet, sample_ids: np.ndarray, *, matrix: str) -> SampleSheet:
    """Choose the sheet's sample-id column by matching its values to the matrix's sample ids.

    Parameters
    ----------
    sheet
        A sheet read without an explicit id column (an explicit one is returned unchanged).
    sample_ids
        (sample,) str: the matrix's sample ids.
    matrix
        The matrix file, for messages.

    Returns
    -------
    SampleSheet
        The sheet with ``id_column`` set to the one column holding every matrix sample id (when
        none does, the column chosen by name, so that :func:`match_samples` names the missing ids).

    Raises
    ------
    InputError
        When several columns hold every sample id on different rows (listing them, fix:
        ``--sample-id-column``), or the chosen column has empty or duplicate ids. Columns that
        hold the ids on the same rows (airway's ``sample`` and ``Run``) are one choice: the column
        chosen by name if it is one of them, else the first.
    """
    if sheet.explicit:
        return sheet
    wanted = {str(s) for s in sample_ids}
    full: list[str] = []
    for column in sheet.frame.columns:
        values = set(sheet.frame[column].astype(str).str.strip())
        if wanted <= values:
            full.append(str(column))
    if len(full) > 1 and _same_mapping(sheet.frame, full, wanted):
        full = [sheet.id_column if sheet.id_column in full else full[0]]  # any choice maps alike
    if len(full) > 1:
        raise InputError(
            f"{sheet.path}: columns {', '.join(repr(c) for c in full)} all hold the {len(wanted)} sample ids "
            f"of {matrix}; pass --sample-id-column with the one that names the samples"
        )
    column = full[0] if full else sheet.id_column
    frame = sheet.frame.copy()
    kind = _kind(column, [str(c) for c in frame.columns])
    _check_ids(sheet.path, frame, column, kind)
    return SampleSheet(
        path=sheet.path, kind=kind, id_column=column, frame=frame, sha256=sheet.sha256, explicit=True
    )


def _same_mapping(frame: pd.DataFrame, columns: list[str], wanted: set[str]) -> bool:
    """True when every column in ``columns`` puts each id of ``wanted`` on the same sheet row(s),
    as airway's ``sample`` and ``Run`` do: then the choice of id column changes nothing."""

    def rows(column: str) -> dict[str, tuple[int, ...]]:
        ids = frame[column].astype(str).str.strip().to_numpy()
        out: dict[str, list[int]] = {}
        for row, sid in enumerate(ids):
            if sid in wanted:
                out.setdefault(sid, []).append(row)
        return {sid: tuple(r) for sid, r in out.items()}

    first = rows(columns[0])
    return all(rows(column) == first for column in columns[1:])


def sample_variables(sheet: SampleSheet, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Turn the sheet's columns into ``sample_*`` variables for the given sheet rows.

    Parameters
    ----------
    sheet
        The sheet.
    rows
        (sample,) int: the sheet row of each store sample, in store order.

    Returns
    -------
    dict
        ``sample_<name>`` -> (sample,) values: float64 when every non-empty entry is numeric
        (and none is a zero-padded code such as ``0002190``), else str. The id column is skipped (it is the ``sample`` coordinate).
    """
    out: dict[str, np.ndarray] = {}
    for column in sheet.frame.columns:
        if column == sheet.id_column:
            continue
        raw = sheet.frame[column].iloc[rows]
        numeric = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
        filled = raw != ""
        codes = raw.str.match(r"^-?0\d").any()  # ids such as UBERON '0002190' stay strings
        if filled.any() and numeric[filled].notna().all() and not codes:
            values: np.ndarray = numeric.to_numpy(dtype=np.float64)
        else:
            values = raw.to_numpy(dtype=object).astype(str).astype(object)
        name = "sample_" + sanitize_name(str(column))
        out[name] = values
        alias = GTEX_ALIASES.get(str(column)) if sheet.kind == "gtex" else None
        if alias:
            out[alias] = values
    return out


def match_samples(
    sheet: SampleSheet, sample_ids: np.ndarray, *, matrix: str, ignore_extra: bool
) -> np.ndarray:
    """Return the sheet row of every matrix sample, checking that sheet and matrix agree.

    Parameters
    ----------
    sheet
        The sheet.
    sample_ids
        (sample,) str: the matrix's sample ids.
    matrix
        The matrix file, for messages.
    ignore_extra
        Allow sheet rows whose id is not in the matrix (e.g. GTEx's SampleAttributesDS lists
        every sample of the release).

    Raises
    ------
    InputError
        Naming the matrix samples missing from the sheet, or the sheet rows (with lines) that
        match no matrix sample, and the fix.
    """
    index = {sid: i for i, sid in enumerate(sheet.ids)}
    missing = [str(s) for s in sample_ids if str(s) not in index]
    if missing:
        raise InputError(
            f"{sheet.path}: {len(missing)} sample(s) of {matrix} have no row in the sample sheet "
            f"(column '{sheet.id_column}'; no column holds them all), e.g. {missing[:10]}; add their rows, "
            "check that the sheet belongs to this matrix, or pass --sample-id-column"
        )
    if not ignore_extra:
        wanted = {str(s) for s in sample_ids}
        extra = [i for i, sid in enumerate(sheet.ids) if sid not in wanted]
        if extra:
            shown = ", ".join(f"line {sheet.line_of(i)} ('{sheet.ids[i]}')" for i in extra[:10])
            raise InputError(
                f"{sheet.path}: {len(extra)} sample-sheet row(s) match no sample of {matrix}: {shown}; "
                "remove them, or pass --ignore-extra-sheet-rows when the sheet deliberately covers "
                "more samples (as GTEx's SampleAttributesDS does)"
            )
    return np.array([index[str(s)] for s in sample_ids], dtype=np.int64)
