"""Gene annotation tables: genomic position (chromosome, start), length and symbol per gene.

Two inputs are accepted:

* a **table** (TSV, or CSV when the name ends with ``.csv``; gzip allowed) with a header naming a
  gene id column (``gene_id``, ``ensembl_gene_id``, ``gene``, ``id``, ``name``), a chromosome
  column (``chrom``, ``chr``, ``chromosome``, ``seqname``, ``seqnames``), a start column
  (``start``, ``gene_start``, ``start_position``) and optionally ``end``, ``length`` and a symbol
  column (``gene_name``, ``symbol``, ``gene_symbol``, ``hgnc_symbol``). Headers are matched case-
  insensitively. Without a length column but with an end column, length = end - start + 1 (bp,
  1-based inclusive coordinates as in GTF and Ensembl BioMart);
* a **GTF** (``.gtf`` / ``.gtf.gz``): only ``gene`` feature lines are read, with the
  ``gene_id`` and ``gene_name`` attributes; length = end - start + 1 (bp).

Gene ids are matched with their Ensembl version suffix stripped (:func:`strip_versions`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.common import check_file, open_text, strip_versions

ID_COLUMNS = ("gene_id", "ensembl_gene_id", "gene", "id", "name")
CHROM_COLUMNS = ("chrom", "chr", "chromosome", "chromosome_name", "seqname", "seqnames", "seqid")
START_COLUMNS = ("start", "gene_start", "start_position", "txstart")
END_COLUMNS = ("end", "gene_end", "end_position", "txend")
LENGTH_COLUMNS = ("length", "gene_length", "width")
SYMBOL_COLUMNS = ("gene_name", "symbol", "gene_symbol", "hgnc_symbol", "external_gene_name")

_GTF_ATTR = re.compile(r'(\S+)\s+"([^"]*)"')


@dataclass
class GeneAnnotation:
    """Per-gene annotation read from one file.

    Attributes
    ----------
    path
        The file read.
    ids
        (n,) str: gene ids with the version suffix stripped, unique.
    chrom
        (n,) str: chromosome ('' when the row has none).
    start
        (n,) float64: start position in bp (1-based for GTF).
    length
        (n,) float64: gene length in bp (NaN when the file has none).
    symbol
        (n,) str: gene symbol ('' when the file has none).
    """

    path: Path
    ids: np.ndarray
    chrom: np.ndarray
    start: np.ndarray
    length: np.ndarray
    symbol: np.ndarray

    def align(self, gene_ids: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Align the annotation to a store's genes.

        Parameters
        ----------
        gene_ids
            (gene,) stripped gene ids of the store.

        Returns
        -------
        (columns, unmatched)
            ``columns``: ``gene_chrom`` and ``gene_symbol`` (gene,) str ('' when unmatched),
            ``gene_start`` and ``gene_length`` (gene,) float64 bp (NaN when unmatched);
            ``unmatched``: (gene,) bool, True for genes absent from the annotation.
        """
        position = {str(g): i for i, g in enumerate(self.ids)}
        where = np.array([position.get(str(g), -1) for g in gene_ids], dtype=np.int64)
        unmatched = where < 0
        take = np.where(unmatched, 0, where)

        def pick(values: np.ndarray, missing: object) -> np.ndarray:
            out = values[take].astype(object if values.dtype == object else np.float64)
            out[unmatched] = missing
            return out

        columns = {
            "gene_chrom": pick(self.chrom, ""),
            "gene_start": pick(self.start, np.nan),
            "gene_length": pick(self.length, np.nan),
            "gene_symbol": pick(self.symbol, ""),
        }
        return columns, unmatched


def is_gtf(path: Path) -> bool:
    """Return True when ``path`` is named like a GTF file (``.gtf``, ``.gtf.gz``)."""
    return path.name.lower().removesuffix(".gz").endswith(".gtf")


def read_gene_annotation(path: str | Path) -> GeneAnnotation:
    """Read a gene annotation table or GTF (see the module docstring for the accepted layouts).

    Parameters
    ----------
    path
        TSV/CSV table or GTF, plain or gzip.

    Returns
    -------
    GeneAnnotation

    Raises
    ------
    InputError
        Missing id/chromosome/start column, a malformed number, a duplicated gene id or a GTF
        line without ``gene_id``; the message names the file, line and column.
    """
    path = check_file(Path(path), "gene annotation")
    rows = _read_gtf(path) if is_gtf(path) else _read_table(path)
    if not rows:
        raise InputError(f"{path}: the gene annotation has no gene rows; check the file (GTF: 'gene' lines)")
    ids = strip_versions(np.array([r[1] for r in rows], dtype=object))
    first_line: dict[str, int] = {}
    for (line, _, *_rest), gid in zip(rows, ids, strict=True):
        if str(gid) in first_line:
            raise InputError(
                f"{path}: line {line}: gene id {gid!r} (version stripped) already given on line "
                f"{first_line[str(gid)]}; keep one row per gene"
            )
        first_line[str(gid)] = line
    return GeneAnnotation(
        path=path,
        ids=ids,
        chrom=np.array([r[2] for r in rows], dtype=object),
        start=np.array([r[3] for r in rows], dtype=np.float64),
        length=np.array([r[4] for r in rows], dtype=np.float64),
        symbol=np.array([r[5] for r in rows], dtype=object),
    )


Row = tuple[int, str, str, float, float, str]
"""(line number, gene id, chromosome, start bp, length bp, symbol)."""


def _number(path: Path, line: int, column: str, text: str, *, positive: bool) -> float:
    """Parse a bp coordinate or length; raise an InputError naming file, line and column."""
    try:
        value = float(text)
    except ValueError:
        value = np.nan
    if not np.isfinite(value) or value < (1 if positive else 0) or value != int(value):
        need = "a positive whole number of bp" if positive else "a whole number of bp >= 0"
        raise InputError(
            f"{path}: line {line}, column '{column}': {text!r} is not {need}; fix or remove the row"
        )
    return value


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _read_table(path: Path) -> list[Row]:
    sep = "," if path.name.lower().removesuffix(".gz").endswith(".csv") else "\t"
    stream, _ = open_text(path)
    with stream:
        reader = csv.reader(stream, delimiter=sep)
        header = next(reader, [])
        required = {"gene id": ID_COLUMNS, "chromosome": CHROM_COLUMNS, "start": START_COLUMNS}
        found: dict[str, int] = {}
        for what, names in required.items():
            index = _find(header, names)
            if index is None:
                raise InputError(
                    f"{path}: line 1: no {what} column in the header {header}; name it one of "
                    f"{', '.join(names)} (a GTF must end with .gtf or .gtf.gz)"
                )
            found[what] = index
        i_id, i_chrom, i_start = found["gene id"], found["chromosome"], found["start"]
        i_end, i_len, i_sym = (_find(header, n) for n in (END_COLUMNS, LENGTH_COLUMNS, SYMBOL_COLUMNS))
        rows: list[Row] = []
        for number, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise InputError(
                    f"{path}: line {number}: {len(fields)} fields but the header has {len(header)}; "
                    "fix the row's separators"
                )
            gid = fields[i_id].strip()
            if not gid:
                raise InputError(f"{path}: line {number}, column '{header[i_id]}': empty gene id")
            start = _number(path, number, header[i_start], fields[i_start].strip(), positive=False)
            if i_len is not None:
                length = _number(path, number, header[i_len], fields[i_len].strip(), positive=True)
            elif i_end is not None:
                end = _number(path, number, header[i_end], fields[i_end].strip(), positive=False)
                if end < start:
                    raise InputError(
                        f"{path}: line {number}, column '{header[i_end]}': end {fields[i_end]!r} is before "
                        f"start {fields[i_start]!r}; fix the row"
                    )
                length = end - start + 1
            else:
                length = np.nan
            symbol = fields[i_sym].strip() if i_sym is not None else ""
            rows.append((number, gid, fields[i_chrom].strip(), start, length, symbol))
    return rows


def _read_gtf(path: Path) -> list[Row]:
    stream, _ = open_text(path)
    rows: list[Row] = []
    with stream:
        for number, text in enumerate(stream, start=1):
            if text.startswith("#") or not text.strip():
                continue
            head = text.split("\t", 3)
            if len(head) > 2 and head[2] != "gene":
                continue  # transcripts, exons...: only gene lines are read, whole
            fields = text.rstrip("\r\n").split("\t")
            if len(fields) != 9:
                raise InputError(
                    f"{path}: line {number}: {len(fields)} tab-separated fields, a GTF line has 9; fix the line"
                )
            start = _number(path, number, "4 (start)", fields[3], positive=True)
            end = _number(path, number, "5 (end)", fields[4], positive=True)
            if end < start:
                raise InputError(
                    f"{path}: line {number}, column 5 (end): {fields[4]!r} is before start {fields[3]!r}"
                )
            attrs = dict(_GTF_ATTR.findall(fields[8]))
            if "gene_id" not in attrs:
                raise InputError(
                    f"{path}: line {number}, column 9 (attributes): no gene_id attribute; fix the line"
                )
            rows.append(
                (number, attrs["gene_id"], fields[0], start, end - start + 1, attrs.get("gene_name", ""))
            )
    return rows
