"""GDC STAR gene-count files: one ``*.rna_seq.augmented_star_gene_counts.tsv`` per sample.

Each file::

    # gene-model: GENCODE v36
    gene_id  gene_name  gene_type  unstranded  stranded_first  stranded_second  tpm_unstranded ...
    N_unmapped ...          (the four STAR summary rows are dropped)
    ENSG00000000003.15  TSPAN6  protein_coding  2045 ...

Files are matched to samples through the GDC sample sheet (``File Name`` -> ``Sample ID``) and
read in sample blocks: memory holds one block of samples x all genes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.common import Block, Source, ValueType, binary_control, check_file, not_text
from gexplain.storage.ingest.samplesheet import GDC_FILE, SampleSheet, sample_variables

SUFFIXES = (".rna_seq.augmented_star_gene_counts.tsv", ".rna_seq.augmented_star_gene_counts.tsv.gz")
STAR_SUMMARY = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")
ANNOTATION_COLUMNS = ("gene_id", "gene_name", "gene_type")


@dataclass
class _Table:
    comments: list[str]
    frame: pd.DataFrame
    lines: np.ndarray  # 1-based file line of each kept row
    sha256: str


def _decoded(path: Path) -> tuple[bytes, str]:
    """Return the file's (decompressed) bytes and the sha256 of its raw bytes, reading it once."""
    check_file(path, "GDC gene-count file")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if raw[:2] != b"\x1f\x8b":
        return raw, digest
    try:
        return gzip.decompress(raw), digest
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise InputError(
            f"{path}: the gzip stream is truncated or corrupt ({exc}); re-download the file "
            "(check it with `gzip -t`)"
        ) from exc


def _read(path: Path, columns: tuple[str, ...] | None = None, *, text: tuple[str, ...] = ()) -> _Table:
    """Parse one STAR gene-count file (all columns, or only ``gene_id`` plus ``columns``).

    Columns in ``text`` are kept as text (converted to numbers by the caller, which names the
    line of a bad entry), so that Arrow's per-block type inference never rejects a valid file.
    """
    data, digest = _decoded(path)
    first = binary_control(data[: 1 << 16])
    if first is not None:
        raise not_text(path, data.count(b"\n", 0, first) + 1)
    comments: list[str] = []
    pos = 0
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        try:
            comments.append(data[pos:end].decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise not_text(path, len(comments) + 1, exc) from exc
        pos = end + 1
    n_comment = len(comments)
    if pos >= len(data) or not data[pos:].strip():
        raise InputError(f"{path}: no header line after the '# gene-model' comment; the file is truncated")
    header = data[pos : data.find(b"\n", pos) if b"\n" in data[pos:] else len(data)]
    names = header.decode("utf-8", errors="replace").rstrip("\r").split("\t")
    if "gene_id" not in names:
        raise InputError(
            f"{path}: line {n_comment + 1} has no 'gene_id' column (found {names[:10]}); "
            "this is not a GDC STAR gene-count file"
        )
    wanted = [c for c in names if columns is None or c == "gene_id" or c in columns]
    try:
        table = pcsv.read_csv(
            io.BytesIO(data[pos:]),
            read_options=pcsv.ReadOptions(use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter="\t"),
            convert_options=pcsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: pa.string() for c in (*ANNOTATION_COLUMNS, *text) if c in wanted},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(
            f"{path}: cannot parse the table ({exc}; rows count from the header at line {n_comment + 1}); "
            "a ragged or damaged row: re-download the file"
        ) from exc
    frame = table.to_pandas()
    keep = ~frame["gene_id"].isin(STAR_SUMMARY).to_numpy()
    lines = np.flatnonzero(keep) + n_comment + 2
    return _Table(comments, frame.loc[keep].reset_index(drop=True), lines, digest)


def find_gdc_files(directory: Path) -> list[Path]:
    """Return the STAR gene-count files under ``directory`` (recursively), sorted by path."""
    if not directory.is_dir():
        raise InputError(f"{directory}: expected a directory of GDC *{SUFFIXES[0]} files")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    if not files:
        raise InputError(f"{directory}: no *{SUFFIXES[0]} files found; point at the GDC download directory")
    return files


def _match_sheet(files: list[Path], sheet: SampleSheet, directory: Path, ignore_extra: bool) -> np.ndarray:
    if GDC_FILE not in sheet.frame.columns:
        raise InputError(
            f"{sheet.path}: a GDC sample sheet needs a '{GDC_FILE}' column to map files to samples "
            f"(found {list(sheet.frame.columns)[:10]}); download the sample sheet from the GDC cart"
        )
    names = sheet.frame[GDC_FILE].to_numpy(dtype=object)
    index = {str(n).removesuffix(".gz"): i for i, n in enumerate(names)}
    unknown = [f.name for f in files if f.name.removesuffix(".gz") not in index]
    if unknown:
        raise InputError(
            f"{sheet.path}: {len(unknown)} file(s) in {directory} have no row in the sample sheet "
            f"(column '{GDC_FILE}'), e.g. {unknown[:10]}; use the sample sheet of this download"
        )
    rows = np.array([index[f.name.removesuffix(".gz")] for f in files], dtype=np.int64)
    if not ignore_extra and len(set(rows.tolist())) < len(names):
        extra = sorted(set(range(len(names))) - set(rows.tolist()))
        shown = ", ".join(f"line {sheet.line_of(i)} ('{names[i]}')" for i in extra[:10])
        raise InputError(
            f"{sheet.path}: {len(extra)} sample-sheet row(s) name files missing from {directory}: {shown}; "
            "download those files, remove the rows, or pass --ignore-extra-sheet-rows"
        )
    return rows


def scan_gdc(
    directory: Path,
    *,
    column: str = "unstranded",
    sheet: SampleSheet | None = None,
    ignore_extra: bool = False,
) -> Source:
    """Scan a GDC download directory; the first file fixes the gene list that every file must share.

    Parameters
    ----------
    directory
        Directory holding ``*.rna_seq.augmented_star_gene_counts.tsv`` files (any depth).
    column
        Value column to ingest, e.g. ``unstranded`` (counts) or ``tpm_unstranded``.
    sheet
        The GDC sample sheet; without one, sample ids are the files' name prefixes (file UUIDs).
    ignore_extra
        Allow sheet rows whose file is not in ``directory``.
    """
    files = find_gdc_files(directory)
    if sheet is not None:
        rows = _match_sheet(files, sheet, directory, ignore_extra)
        sample_ids = sheet.ids[rows]
        sample_vars = sample_variables(sheet, rows)
    else:
        sample_ids = np.array([f.name.split(".", 1)[0] for f in files], dtype=object)
        sample_vars = {"sample_file_name": np.array([f.name for f in files], dtype=object)}
    ref = _read(files[0], text=(column,))
    if column not in ref.frame.columns or column in ANNOTATION_COLUMNS:
        values = [c for c in ref.frame.columns if c not in ANNOTATION_COLUMNS]
        raise InputError(
            f"{files[0]}: line {len(ref.comments) + 1}: no value column '{column}'; choose --column from "
            f"{', '.join(values)}"
        )
    gene_ids = ref.frame["gene_id"].to_numpy(dtype=object)
    col_index = list(ref.frame.columns).index(column)
    hashes: dict[str, str] = {}

    def blocks(block_rows: int) -> Iterator[Block]:
        for start in range(0, len(files), max(1, block_rows)):
            chunk = files[start : start + block_rows]
            out = np.empty((len(chunk), gene_ids.size), dtype=np.float64)
            line_maps = []
            for k, path in enumerate(chunk):
                table = ref if start + k == 0 else _read(path, (column,), text=(column,))
                ids = table.frame["gene_id"].to_numpy(dtype=object)
                if ids.shape != gene_ids.shape or not np.array_equal(ids, gene_ids):
                    n = min(ids.size, gene_ids.size)
                    diff = np.flatnonzero(ids[:n] != gene_ids[:n])
                    j = int(diff[0]) if diff.size else n
                    raise InputError(
                        f"{path}: the gene list differs from {files[0]} (first difference at gene row "
                        f"{j + 1}: {ids.size} vs {gene_ids.size} genes); every file must come from the "
                        "same GDC workflow and gene model"
                    )
                if column not in table.frame.columns:
                    raise InputError(
                        f"{path}: no value column '{column}'; the file layout differs from {files[0]}"
                    )
                vals = pd.to_numeric(table.frame[column], errors="coerce")
                bad = vals.isna() & (table.frame[column].str.strip() != "")  # empty: reported as missing
                if bad.any():
                    j = int(np.flatnonzero(bad.to_numpy())[0])
                    raise InputError(
                        f"{path}: line {table.lines[j]}, column {col_index + 1} ('{column}'): "
                        f"'{table.frame[column].iloc[j]}' is not a number; re-download the file"
                    )
                out[k] = vals.to_numpy(dtype=np.float64)
                line_maps.append((path, table.lines))
                hashes[str(path)] = table.sha256

            def where(i: int, j: int, line_maps: list = line_maps) -> str:
                path, lines = line_maps[i]
                return f"{path}: line {lines[j]}, column {col_index + 1} ('{column}', gene '{gene_ids[j]}')"

            yield Block(start=start, values=out, where=where)

    default: ValueType = (
        "counts"
        if column in ("unstranded", "stranded_first", "stranded_second")
        else ("tpm" if column.startswith("tpm") else "expr")
    )
    return Source(
        fmt="gdc",
        path=str(directory),
        sample_ids=sample_ids,
        gene_ids=gene_ids,
        gene_symbols=ref.frame["gene_name"].fillna("").to_numpy(dtype=object)
        if "gene_name" in ref.frame
        else None,
        rows="sample",
        read_blocks=blocks,
        sample_vars=sample_vars,
        gene_vars={"gene_type": ref.frame["gene_type"].fillna("").to_numpy(dtype=object)}
        if "gene_type" in ref.frame
        else {},
        hashes=hashes,
        default_values=default,
        label_column=sheet.label_column if sheet is not None else None,
        gene_where=lambda i: f"{files[0]}: line {ref.lines[i]}, column 1 (gene_id)",
        sample_where=lambda j: f"{files[j]} (sample sheet {sheet.path if sheet else '-'})",
        attrs={"gene_model": " ".join(c.lstrip("#").strip() for c in ref.comments)},
    )
