"""Shared pieces of the ingest readers: value types, file opening, checks and the source model.

Every reader works in two passes over its input so that memory stays bounded and nothing is
written for structurally bad input:

1. *scan*: read only ids and structure (row lengths, header, gzip integrity) and return a
   :class:`Source` that knows the sample ids, gene ids and annotations;
2. *blocks*: stream row blocks of values (float64, one block of at most ``block_rows`` rows at a
   time), which :func:`gexplain.storage.ingest.api.ingest` checks and writes into the store.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import numpy as np
from gexplain.storage.errors import InputError
from gexplain.storage.paths import exists, filesystem, is_local
from gexplain.storage.store import StoreWriter

ValueType = Literal["counts", "expected_counts", "tpm", "cpm", "log_expr", "expr"]
VALUE_TYPES: tuple[str, ...] = ("counts", "expected_counts", "tpm", "cpm", "log_expr", "expr")
LAYER_DTYPES: dict[str, str] = {
    "counts": "int32",
    "expected_counts": "float32",
    "tpm": "float32",
    "cpm": "float32",
    "log_expr": "float32",
    "expr": "float32",
}
NONNEGATIVE: frozenset[str] = frozenset({"counts", "expected_counts", "tpm", "cpm"})
ROUNDING = (
    "counts = expected_counts rounded to the nearest integer, halves to even (R's round(), as "
    "tximport's DESeqDataSetFromTximport does)"
)
INT32_MAX = np.iinfo(np.int32).max

_ENSEMBL = re.compile(r"^(ENS[A-Z]*[GT]\d{6,})(\.\d+)?(_PAR_Y)?$")

Locator = Callable[[int, int], str]
"""Maps (row in block, column in block) to a human-readable location: file, line, column."""


@dataclass
class Block:
    """One block of values read from a source.

    Attributes
    ----------
    start
        Index of the block's first row along the source's row dim.
    values
        float64 array (rows in block, columns); rows are genes or samples as
        :attr:`Source.rows` says.
    where
        Locates a cell of the block in the input, for error messages.
    """

    start: int
    values: np.ndarray
    where: Locator


@dataclass
class Source:
    """A scanned input: ids, annotations and a block iterator over its values.

    Attributes
    ----------
    fmt
        Reader name (``gct``, ``gdc``, ``matrix``, ``h5ad``).
    path
        The input path as given.
    sample_ids
        (sample,) str: sample ids in input order.
    gene_ids
        (gene,) str: gene ids exactly as read (versioned Ensembl ids or symbols).
    gene_symbols
        (gene,) str or None when the input carries no symbols.
    rows
        ``"gene"`` when the input's rows are genes (blocks are gene blocks), else ``"sample"``.
    read_blocks
        ``read_blocks(block_rows)`` yields :class:`Block` s in row order.
    sample_vars, gene_vars
        Extra 1-d annotations carried by the input (name -> values), already named
        ``sample_*``/``gene_*``.
    hashes
        File path -> sha256 hex digest of every file read.
    default_values
        Value type assumed when the caller declares none.
    label_column
        Default label column the input implies (e.g. ``sample_tissue``), or None.
    gene_where, sample_where
        Map a gene or sample index to its location in the input (for messages).
    attrs
        Extra provenance to record in the store's attrs (e.g. the GDC gene model).
    """

    fmt: str
    path: str
    sample_ids: np.ndarray
    gene_ids: np.ndarray
    gene_symbols: np.ndarray | None
    rows: Literal["gene", "sample"]
    read_blocks: Callable[[int], Iterator[Block]]
    sample_vars: dict[str, np.ndarray] = field(default_factory=dict)
    gene_vars: dict[str, np.ndarray] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    default_values: ValueType = "counts"
    label_column: str | None = None
    gene_where: Callable[[int], str] = lambda i: f"gene #{i + 1}"
    sample_where: Callable[[int], str] = lambda j: f"sample #{j + 1}"
    attrs: dict[str, object] = field(default_factory=dict)


class HashingReader(io.RawIOBase):
    """A binary reader that feeds every byte it returns into a sha256 digest.

    Parameters
    ----------
    raw
        The underlying binary file.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.digest.update(data)
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def is_gzip(path: Path) -> bool:
    """Return True when ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def check_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a non-empty file, else raise an InputError naming it."""
    if not path.exists():
        raise InputError(f"{path}: {what} not found; check the path")
    if path.is_dir():
        raise InputError(f"{path}: expected a {what} file, found a directory")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the {what} is empty (0 bytes); re-download or re-export it")
    return path


def not_text(path: Path, line: int, exc: Exception | None = None) -> InputError:
    """The error for a file that is not UTF-8 text (binary garbage, a spreadsheet, an R/HDF5 file)."""
    detail = f" ({exc})" if exc is not None else ""
    return InputError(
        f"{path}: line {line} is not UTF-8 text{detail}; this looks like a binary file (a spreadsheet, "
        ".rds, .h5, or a damaged download), not a delimited text table. Export the table as CSV/TSV "
        "(plain or gzip), pass a .h5ad/.parquet file by its proper name, or re-download it"
    )


def sniff_text(path: Path, size: int = 1 << 16) -> None:
    """Raise an InputError when the first ``size`` bytes (decompressed) of ``path`` are not text.

    Text means UTF-8 with few control bytes (:data:`CONTROL_FRACTION`; one stray NUL is not
    binary); a multi-byte character cut at the end of the sample is allowed.
    """
    try:
        with open(path, "rb") as raw:
            head = gzip.GzipFile(fileobj=raw).read(size) if is_gzip(path) else raw.read(size)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
        return  # a short or damaged gzip stream is reported, with its line, by the readers
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            raise not_text(path, head.count(b"\n", 0, exc.start) + 1, exc) from exc
    first = binary_control(head)
    if first is not None:
        raise not_text(path, head.count(b"\n", 0, first) + 1)


CONTROL_FRACTION = 0.1
"""Share of control bytes (NUL and C0 codes other than tab, newline, carriage return, form feed)
above which a UTF-8 sample is binary (as Perl's -B test, which allows 30% odd bytes): a stray NUL in a text table is a damaged value, reported
with its line by the readers, while UTF-16 text, archives and HDF5/R files are far above it."""

_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\f")


def binary_control(head: bytes) -> int | None:
    """Offset of the first control byte when ``head`` has too many of them to be text, else None."""
    count = len(head) - len(head.translate(None, _CONTROL))
    if count == 0 or count <= CONTROL_FRACTION * len(head):
        return None
    return next(i for i, b in enumerate(head) if b in _CONTROL)


def open_text(path: Path) -> tuple[IO[str], HashingReader]:
    """Open a plain or gzip text file for streaming, hashing the raw bytes as they are read.

    Raises
    ------
    InputError
        When the file's start is not UTF-8 text (see :func:`sniff_text`).

    Returns
    -------
    (text stream, hashing reader)
        ``hashing.digest.hexdigest()`` is the file's sha256 once the stream was read to its end.
    """
    sniff_text(path)
    hashing = HashingReader(open(path, "rb"))
    raw: IO[bytes] = io.BufferedReader(hashing, buffer_size=1 << 20)
    if is_gzip(path):
        raw = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    return io.TextIOWrapper(raw, encoding="utf-8", newline=""), hashing


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its end-of-line) of a plain or gzip text file.

    Raises
    ------
    InputError
        When a gzip file is truncated or corrupt (names the file and the last good line).
    """
    text, _ = open_text(path)
    n = 0
    try:
        with text:
            for n, line in enumerate(text, start=1):  # noqa: B007
                yield n, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise not_text(path, n + 1, exc) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise InputError(
            f"{path}: the gzip stream is truncated or corrupt after line {n} ({exc}); "
            "re-download the file (check it with `gzip -t`)"
        ) from exc


def sha256_file(path: Path) -> str:
    """Return the sha256 hex digest of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def looks_ensembl(ids: np.ndarray) -> np.ndarray:
    """Return a bool mask of the ids that look like Ensembl gene/transcript ids."""
    return np.array([bool(_ENSEMBL.match(str(i))) for i in ids], dtype=bool)


def strip_versions(ids: np.ndarray) -> np.ndarray:
    """Strip the ``.N`` version suffix from Ensembl ids; other ids are returned unchanged.

    ``ENSG00000223972.5`` -> ``ENSG00000223972``; ``ENSG00000002586.20_PAR_Y`` ->
    ``ENSG00000002586_PAR_Y`` (pseudo-autosomal copies stay distinct).

    Parameters
    ----------
    ids
        (gene,) str.
    """
    out = []
    for raw in ids:
        text = str(raw)
        m = _ENSEMBL.match(text)
        out.append(m.group(1) + (m.group(3) or "") if m else text)
    return np.array(out, dtype=object)


def check_unique(ids: np.ndarray, what: str, where: Callable[[int], str]) -> None:
    """Raise an InputError naming the first empty id, or the first duplicated id and both of its
    locations.

    Parameters
    ----------
    ids
        The ids in input order.
    what
        ``"sample"`` or ``"gene"``.
    where
        Maps an index into ``ids`` to its location in the input (file, line, column).
    """
    seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        key = "" if value is None else str(value)
        if not key.strip() or key in ("nan", "None"):
            raise InputError(f"empty {what} id at {where(i)}; give every {what} an id, or drop the row")
        if key in seen:
            raise InputError(
                f"duplicate {what} id '{key}': {where(seen[key])} and {where(i)}; "
                f"{what} ids must be unique — remove or rename one of them"
            )
        seen[key] = i


def sanitize_name(name: str) -> str:
    """Lower-case a column name and replace runs of non-alphanumerics by ``_``."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_") or "unnamed"


def layers_of(value_type: str) -> dict[str, str]:
    """Return the layers (name -> dtype) an ingest of ``value_type`` writes.

    ``expected_counts`` writes the rounded integer ``counts`` layer that count models need and
    keeps the raw values as ``expected_counts`` (float32); every other type writes one layer of
    its own name.
    """
    if value_type == "expected_counts":
        return {"counts": LAYER_DTYPES["counts"], "expected_counts": LAYER_DTYPES["expected_counts"]}
    return {value_type: LAYER_DTYPES[value_type]}


def checked_values(block: Block, value_type: str) -> dict[str, np.ndarray]:
    """Check one block's values against the declared value type and cast to the layer dtypes.

    Parameters
    ----------
    block
        Values (rows, columns) float64 as read.
    value_type
        One of :data:`VALUE_TYPES`.

    Returns
    -------
    dict
        Layer name -> array of the block's shape in the layer's dtype (see :func:`layers_of`);
        ``expected_counts`` gives ``counts`` (rounded half to even, int32) and
        ``expected_counts`` (float32, as read).

    Raises
    ------
    InputError
        At the first NaN/infinite value, negative value (counts, expected_counts, tpm, cpm),
        non-integer count, or count overflowing int32, naming the file, line, column and fix.
    """
    v = block.values
    bad = ~np.isfinite(v)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(
            f"{block.where(int(i), int(j))}: value {float(v[i, j])} is missing or not finite; "
            "fill or remove that entry (expression values must be finite numbers)"
        )
    if value_type in NONNEGATIVE:
        neg = v < 0
        if neg.any():
            i, j = np.argwhere(neg)[0]
            raise InputError(
                f"{block.where(int(i), int(j))}: negative value {v[i, j]:g} where {value_type} are "
                f"declared; fix the value, or declare the values as log_expr/expr "
                "(--values) if negative values are expected"
            )
    if value_type == "counts":
        frac = v != np.floor(v)
        if frac.any():
            i, j = np.argwhere(frac)[0]
            raise InputError(
                f"{block.where(int(i), int(j))}: non-integer value {v[i, j]:g} where counts are "
                "declared; ingest raw read counts, declare RSEM/Salmon estimated counts with "
                "--values expected_counts (rounded into counts as tximport does), or declare the "
                "values (--tpm, or --values cpm/log_expr/expr)"
            )
    counts = np.rint(v) if value_type == "expected_counts" else v
    if value_type in ("counts", "expected_counts"):
        big = counts > INT32_MAX
        if big.any():
            i, j = np.argwhere(big)[0]
            raise InputError(
                f"{block.where(int(i), int(j))}: count {v[i, j]:g} exceeds the int32 range of the "
                "counts layer; check the file"
            )
    if value_type == "expected_counts":
        return {"counts": counts.astype(np.int32), "expected_counts": v.astype(np.float32)}
    return {value_type: v.astype(LAYER_DTYPES[value_type])}


def discard(writer: StoreWriter) -> None:
    """Remove a failed store: its local temporary directory, or the partial store at a remote URL.

    Remote stores are written in place (``create_store`` has no temporary location there), so a
    failed ingest removes what it wrote; an existing store being replaced was already removed by
    ``create_store(..., overwrite=True)``.
    """
    writer.abort()
    if writer.write_url == writer.url and not is_local(writer.url) and exists(writer.url):
        fs, path = filesystem(writer.url)
        fs.rm(path, recursive=True)
