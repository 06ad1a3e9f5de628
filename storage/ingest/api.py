"""``ingest``: read one input (or several, merged) into a new expression store, streaming.

Memory holds one buffer of whole chunks along the input's row dim (at most ``buffer_bytes``) plus
one parsed block (at most ``parse_bytes`` of float64), whatever the cohort size. The store is
written to a temporary location and moved into place only when every value passed the checks.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.annotation import GeneAnnotation, read_gene_annotation
from gexplain.storage.ingest.common import (
    ROUNDING,
    VALUE_TYPES,
    Source,
    check_file,
    check_unique,
    checked_values,
    discard,
    layers_of,
    sha256_file,
    strip_versions,
)
from gexplain.storage.ingest.gct import scan_gct
from gexplain.storage.ingest.gdc import scan_gdc
from gexplain.storage.ingest.gene_ids import gene_name_variables
from gexplain.storage.ingest.h5ad import scan_h5ad
from gexplain.storage.ingest.matrix import ORIENTATIONS, Orientation, scan_matrix
from gexplain.storage.ingest.merge import merge_stores, parse_label_map
from gexplain.storage.ingest.provenance import source_entry, summarise_sources
from gexplain.storage.ingest.samplesheet import (
    SampleSheet,
    match_samples,
    read_sample_sheet,
    resolve_id_column,
    sample_variables,
)
from gexplain.storage.paths import exists, is_local, normalize_url
from gexplain.storage.store import DEFAULT_CHUNKS, StoreWriter, create_store, open_store

FORMATS: tuple[str, ...] = ("auto", "gct", "gdc", "matrix", "h5ad")
ProgressFn = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What an ingest wrote.

    Attributes
    ----------
    url
        The committed store.
    n_samples, n_genes
        Store dims.
    layer
        Name of the main layer written: the declared value type, or ``counts`` for
        ``expected_counts`` (whose raw values are kept as the ``expected_counts`` layer).
    formats
        Reader used for each source.
    sources
        ``{"path", "sha256", "bytes"}`` of every file read
        (:func:`gexplain.storage.ingest.provenance.source_entry`).
    dropped_genes
        Merge only: cohort -> gene ids (stripped) absent from the other cohorts and dropped.
    annotation
        With a gene annotation: ``{"path", "unmatched", "first_unmatched"}``, the number of store
        genes absent from it and the first 20 of their ids (empty without one).
    unlabelled
        Merge only: cohort -> ids of its samples with an empty label (see
        :class:`~gexplain.storage.ingest.merge.MergeReport`).
    seconds
        Wall time.
    """

    url: str
    n_samples: int
    n_genes: int
    layer: str
    formats: list[str]
    sources: list[dict[str, Any]]
    dropped_genes: dict[str, list[str]] = field(default_factory=dict)
    annotation: dict[str, Any] = field(default_factory=dict)
    unlabelled: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (dropped genes as counts plus the first 20 ids; the inputs as
        :func:`~gexplain.storage.ingest.provenance.summarise_sources`)."""
        out = asdict(self)
        out["dropped_genes"] = {k: {"count": len(v), "first": v[:20]} for k, v in self.dropped_genes.items()}
        out["unlabelled"] = {k: {"count": len(v), "first": v[:20]} for k, v in self.unlabelled.items()}
        out["sources"] = summarise_sources(self.sources)
        return out


def detect_format(path: Path) -> str:
    """Return the reader for ``path``: a directory is GDC; otherwise by suffix or the ``#1.2`` line."""
    if path.is_dir():
        return "gdc"
    name = path.name.lower()
    if name.endswith((".gct", ".gct.gz")):
        return "gct"
    if name.endswith(".h5ad"):
        return "h5ad"
    if name.endswith((".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        return "matrix"
    raise InputError(f"{path}: cannot tell the format from the name; pass --format gct, gdc, matrix or h5ad")


def read_gene_lengths(path: Path, gene_ids: np.ndarray) -> np.ndarray:
    """Read a gene-length table and align it to ``gene_ids`` (stripped Ensembl ids).

    Parameters
    ----------
    path
        CSV/TSV: first column gene id (versioned or not), a column ``gene_length``, ``length``
        or ``effective_length`` (else the second column) in bp.
    gene_ids
        (gene,) stripped ids of the store.

    Returns
    -------
    numpy.ndarray
        (gene,) float64 lengths in bp, NaN for genes not in the table.
    """
    check_file(path, "gene-length table")
    sep = "," if path.name.lower().removesuffix(".gz").endswith(".csv") else "\t"
    table = pd.read_csv(path, sep=sep, dtype={0: str})
    lowered = {str(c).lower(): c for c in table.columns}
    col = next((lowered[n] for n in ("gene_length", "length", "effective_length") if n in lowered), None)
    if col is None:
        if table.shape[1] < 2:
            raise InputError(f"{path}: expected a gene id column and a length column (bp)")
        col = table.columns[1]
    lengths = pd.to_numeric(table[col], errors="coerce")
    bad = np.flatnonzero(lengths.isna().to_numpy() | (lengths.to_numpy() <= 0))
    if bad.size:
        raise InputError(
            f"{path}: line {bad[0] + 2}, column '{col}': gene length {table[col].iloc[bad[0]]!r} is not a "
            "positive number of bp; fix or remove the row"
        )
    index = dict(zip(strip_versions(table.iloc[:, 0].to_numpy()), lengths.to_numpy(), strict=True))
    return np.array([index.get(str(g), np.nan) for g in gene_ids], dtype=np.float64)


ANNOTATED: tuple[str, ...] = ("gene_chrom", "gene_start", "gene_length", "gene_symbol")


def annotate(
    annotation: GeneAnnotation, gene_ids: np.ndarray, coords: dict[str, tuple[str, np.ndarray]]
) -> dict[str, Any]:
    """Fill ``gene_chrom``, ``gene_start``, ``gene_length`` and ``gene_symbol`` of ``coords`` from an annotation.

    Values the source already has are kept; only gaps ('' or NaN) and absent variables are filled.

    Parameters
    ----------
    annotation
        The parsed gene annotation.
    gene_ids
        (gene,) stripped gene ids of the store.
    coords
        Store variables, name -> (dim, values); updated in place.

    Returns
    -------
    dict
        ``{"path", "unmatched", "first_unmatched"}`` (see :class:`IngestReport`).
    """
    columns, unmatched = annotation.align(gene_ids)
    for name in ANNOTATED:
        filled = columns[name]
        if name in coords:
            have = np.asarray(coords[name][1])
            if filled.dtype.kind == "f":
                have = have.astype(np.float64)
                filled = np.where(np.isnan(have), filled, have)
            else:
                have = have.astype(str).astype(object)
                filled = np.where(have == "", filled, have).astype(object)
        coords[name] = ("gene", filled)
    return _unmatched_summary(annotation, gene_ids, unmatched)


def _unmatched_summary(
    annotation: GeneAnnotation, gene_ids: np.ndarray, unmatched: np.ndarray
) -> dict[str, Any]:
    missing = [str(g) for g in np.asarray(gene_ids)[unmatched]]
    return {"path": str(annotation.path), "unmatched": len(missing), "first_unmatched": missing[:20]}


def _scan(
    path: Path,
    fmt: str,
    *,
    sheet: SampleSheet | None,
    orientation: Orientation,
    column: str,
    layer: str | None,
    ignore_extra: bool,
) -> tuple[Source, SampleSheet | None]:
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "gct":
        source = scan_gct(path)
    elif fmt == "gdc":
        return scan_gdc(path, column=column, sheet=sheet, ignore_extra=ignore_extra), sheet
    elif fmt == "h5ad":
        source = scan_h5ad(path, layer=layer)
    else:
        ids = sheet.all_values() if sheet is not None else None
        source = scan_matrix(path, orientation=orientation, sheet_ids=ids)
    if sheet is not None:
        sheet = resolve_id_column(sheet, source.sample_ids, matrix=str(path))
        rows = match_samples(sheet, source.sample_ids, matrix=str(path), ignore_extra=ignore_extra)
        source.sample_vars = {**source.sample_vars, **sample_variables(sheet, rows)}
        source.label_column = source.label_column or sheet.label_column
    return source, sheet


class _Chained:
    """Several writes in a row reported to one ``on_progress(done, total)`` as one growing count:
    the rows of the finished writes plus those of the current one (a merge: each cohort, then the
    merged store). ``total`` grows as each write starts; ``done`` never goes back."""

    def __init__(self, on_progress: ProgressFn | None) -> None:
        self.on_progress = on_progress
        self.base = 0
        self.current = 0

    def __call__(self, done: int, total: int) -> None:
        self.current = total
        if self.on_progress is not None:
            self.on_progress(self.base + done, self.base + total)

    def next(self) -> None:
        """The current write has finished; the next one counts on from its rows."""
        self.base += self.current
        self.current = 0


def _rows_fitting(n_cols: int, itemsize: int, budget: int, limit: int) -> int:
    rows = max(1, limit)
    while rows > 1 and rows * n_cols * itemsize > budget:
        rows //= 2
    return rows


def _stream(
    source: Source,
    writer: StoreWriter,
    value_type: str,
    chunks: Mapping[str, int],
    buffer_bytes: int,
    parse_bytes: int,
    on_progress: ProgressFn | None,
) -> None:
    n_rows = source.gene_ids.size if source.rows == "gene" else source.sample_ids.size
    n_cols = source.sample_ids.size if source.rows == "gene" else source.gene_ids.size
    layers = {name: np.dtype(dtype) for name, dtype in layers_of(value_type).items()}
    itemsize = sum(d.itemsize for d in layers.values())
    buf_rows = _rows_fitting(n_cols, itemsize, buffer_bytes, chunks[source.rows])
    parse_rows = _rows_fitting(n_cols, 8, parse_bytes, buf_rows)
    buffers = {name: np.empty((buf_rows, n_cols), dtype=d) for name, d in layers.items()}
    filled, buf_start = 0, 0

    def flush() -> None:
        nonlocal filled, buf_start
        if filled:
            arrays = {n: (b[:filled].T if source.rows == "gene" else b[:filled]) for n, b in buffers.items()}
            writer.write_block({source.rows: slice(buf_start, buf_start + filled)}, arrays)
            buf_start += filled
            filled = 0
            if on_progress is not None:
                on_progress(buf_start, n_rows)

    for block in source.read_blocks(parse_rows):
        if block.values.shape[1] != n_cols:
            raise InputError(f"{source.path}: a block has {block.values.shape[1]} columns, expected {n_cols}")
        values = checked_values(block, value_type)
        n_block = block.values.shape[0]
        done = 0
        while done < n_block:
            take = min(buf_rows - filled, n_block - done)
            for name, buffer in buffers.items():
                buffer[filled : filled + take] = values[name][done : done + take]
            filled += take
            done += take
            if filled == buf_rows:
                flush()
    flush()
    if buf_start != n_rows:
        raise InputError(f"{source.path}: read {buf_start} rows of values but the scan found {n_rows}")


def ingest_one(
    source_path: str | Path,
    out: str,
    *,
    fmt: str = "auto",
    sample_sheet: str | Path | None = None,
    sample_id_column: str | None = None,
    orientation: Orientation = "auto",
    column: str = "unstranded",
    layer: str | None = None,
    values: str | None = None,
    gene_lengths: str | Path | None = None,
    gene_annotation: str | Path | GeneAnnotation | None = None,
    ignore_extra_sheet_rows: bool = False,
    chunks: Mapping[str, int] | None = None,
    overwrite: bool = False,
    buffer_bytes: int = 256 * 2**20,
    parse_bytes: int = 16 * 2**20,
    on_progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest one input into a new store (see :func:`ingest` for the parameters)."""
    started = time.perf_counter()
    path = Path(source_path)
    if orientation not in ORIENTATIONS:
        raise InputError(f"--orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}")
    sheet = read_sample_sheet(Path(sample_sheet), id_column=sample_id_column) if sample_sheet else None
    source, sheet = _scan(
        path,
        fmt,
        sheet=sheet,
        orientation=orientation,
        column=column,
        layer=layer,
        ignore_extra=ignore_extra_sheet_rows,
    )
    value_type = values or source.default_values
    if value_type not in VALUE_TYPES:
        raise InputError(f"--values {value_type!r} is not one of {', '.join(VALUE_TYPES)}")
    check_unique(source.sample_ids, "sample", source.sample_where)
    check_unique(source.gene_ids, "gene", source.gene_where)
    gene_ids = strip_versions(source.gene_ids)
    check_unique(gene_ids, "gene (version suffix stripped)", source.gene_where)
    gene_vars: dict[str, tuple[str, np.ndarray]] = {
        "gene_id_versioned": ("gene", np.asarray(source.gene_ids, dtype=object)),
        **{k: ("gene", v) for k, v in gene_name_variables(source.gene_ids, source.gene_symbols).items()},
        "gene_length": (
            "gene",
            read_gene_lengths(Path(gene_lengths), gene_ids)
            if gene_lengths
            else np.full(gene_ids.size, np.nan),
        ),
    }
    coords = {
        **gene_vars,
        **{k: ("gene", v) for k, v in source.gene_vars.items() if k not in gene_vars},
        **{k: ("sample", v) for k, v in source.sample_vars.items()},
    }
    if isinstance(gene_annotation, str | Path):
        gene_annotation = read_gene_annotation(gene_annotation)
    annotated = annotate(gene_annotation, gene_ids, coords) if gene_annotation is not None else {}
    chunk = {**DEFAULT_CHUNKS, **(chunks or {})}
    attrs: dict[str, Any] = {
        "ingest": {
            "format": source.fmt,
            "values": value_type,
            **({"rounded": ROUNDING} if value_type == "expected_counts" else {}),
            "column": column if source.fmt == "gdc" else None,
            "layer": layer if source.fmt == "h5ad" else None,
            **{k: v for k, v in source.attrs.items()},
            **({"gene_annotation": annotated} if annotated else {}),
        }
    }
    label = source.label_column
    if label and label in source.sample_vars:
        attrs["label_column"] = label
    writer = create_store(
        normalize_url(out),
        sample_ids=np.asarray(source.sample_ids, dtype=object),
        gene_ids=gene_ids,
        coords=coords,
        layers=layers_of(value_type),
        attrs=attrs,
        chunks=chunk,
        overwrite=overwrite,
    )
    try:
        _stream(source, writer, value_type, chunk, buffer_bytes, parse_bytes, on_progress)
        hashes = [source_entry(p, h) for p, h in source.hashes.items()]
        if sheet is not None:
            hashes.append(source_entry(sheet.path, sheet.sha256))
        if gene_lengths:
            hashes.append(source_entry(gene_lengths, sha256_file(Path(gene_lengths))))
        if gene_annotation is not None:
            hashes.append(source_entry(gene_annotation.path, sha256_file(gene_annotation.path)))
        writer.set_attrs(sources=hashes)
        url = writer.commit()
    except BaseException:
        discard(writer)
        raise
    return IngestReport(
        url=url,
        n_samples=int(source.sample_ids.size),
        n_genes=int(gene_ids.size),
        layer=next(iter(layers_of(value_type))),
        formats=[source.fmt],
        sources=hashes,
        annotation=annotated,
        seconds=time.perf_counter() - started,
    )


def ingest(
    sources: str | Path | Sequence[str | Path],
    out: str,
    *,
    fmt: str = "auto",
    sample_sheets: str | Path | Sequence[str | Path | None] | None = None,
    sample_id_column: str | None = None,
    orientation: Orientation = "auto",
    column: str = "unstranded",
    layer: str | None = None,
    values: str | None = None,
    gene_lengths: str | Path | None = None,
    gene_annotation: str | Path | None = None,
    ignore_extra_sheet_rows: bool = False,
    merge: bool = False,
    cohorts: Sequence[str] | None = None,
    merge_labels: Sequence[str] | Mapping[str, str] | None = None,
    label_prefix: bool = False,
    chunks: Mapping[str, int] | None = None,
    overwrite: bool = False,
    buffer_bytes: int = 256 * 2**20,
    parse_bytes: int = 16 * 2**20,
    on_progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest expression data into a new store, streaming in bounded memory.

    Parameters
    ----------
    sources
        One input (GCT file, GDC directory, CSV/TSV/Parquet matrix, ``.h5ad``) or, with
        ``merge=True``, several.
    out
        Store to create: local path or fsspec URL (``memory://``, ``s3://``...).
    fmt
        ``auto`` (by name; a directory is GDC), ``gct``, ``gdc``, ``matrix`` or ``h5ad``.
    sample_sheets
        Sample sheet(s): one per source when merging (None for a source without one).
    sample_id_column
        Sample-id column of the sheet(s) (default: SAMPID, Sample ID, or a ``sample`` column).
    orientation
        Generic matrices: ``auto``, ``genes-x-samples`` or ``samples-x-genes``.
    column
        GDC: value column, e.g. ``unstranded`` or ``tpm_unstranded``.
    layer
        h5ad: layer holding the values (None: X).
    values
        Declared value type and layer name: ``counts`` (integers >= 0), ``expected_counts``
        (RSEM/Salmon estimated counts >= 0: written as a rounded integer ``counts`` layer, halves
        to even as tximport does, plus the raw float32 ``expected_counts``), ``tpm``, ``cpm``
        (>= 0), ``log_expr`` or ``expr``; default from the reader (counts; GDC by column).
    gene_lengths
        Optional CSV/TSV table of gene lengths (bp) -> ``gene_length``.
    gene_annotation
        Optional gene annotation, a TSV/CSV table or GTF(.gz) (see
        :mod:`gexplain.storage.ingest.annotation`) -> ``gene_chrom``, ``gene_start`` (bp), and
        ``gene_length`` (bp) / ``gene_symbol`` where the source has none. Genes absent from it
        keep ''/NaN; their count is in :attr:`IngestReport.annotation`.
    ignore_extra_sheet_rows
        Accept sheet rows that match no sample of the matrix.
    merge
        Merge several cohorts on stripped Ensembl ids (genes not in every cohort are dropped and
        reported).
    cohorts
        Merge: cohort names (``sample_cohort``); default the sources' file names.
    merge_labels
        Merge: ``COHORT=COLUMN`` entries mapping each cohort's sample-sheet column (GTEx
        ``SMTSD``, TCGA ``Project ID`` or ``primary_site``) into one ``sample_tissue``.
    label_prefix
        Merge: prefix mapped labels with the cohort name (``GTEx_Lung``).
    chunks
        Store chunk shape (default :data:`gexplain.storage.store.DEFAULT_CHUNKS`).
    overwrite
        Replace an existing store once the new one is complete.
    buffer_bytes, parse_bytes
        Memory bounds: the chunk-row write buffer and one parsed block of float64.
    on_progress
        Called as ``on_progress(rows_done, rows_total)`` after each write; a merge counts the rows
        of every cohort, then the merged store's samples, as one total that grows as each starts.

    Returns
    -------
    IngestReport

    Raises
    ------
    InputError
        Bad input (file, line, column and fix in the message); nothing is left at ``out``.
    """
    paths = [sources] if isinstance(sources, str | Path) else list(sources)
    if not paths:
        raise InputError("no input given; pass a GCT file, GDC directory, matrix or .h5ad")
    if sample_sheets is None or isinstance(sample_sheets, str | Path):
        sheets: list[str | Path | None] = [sample_sheets] * len(paths)
    else:
        sheets = list(sample_sheets)
    if len(sheets) != len(paths):
        raise InputError(
            f"{len(paths)} sources but {len(sheets)} sample sheets; give one --sample-sheet per source, in order"
        )
    options: dict[str, Any] = dict(
        fmt=fmt,
        sample_id_column=sample_id_column,
        orientation=orientation,
        column=column,
        layer=layer,
        values=values,
        gene_lengths=gene_lengths,
        gene_annotation=read_gene_annotation(gene_annotation) if gene_annotation else None,
        ignore_extra_sheet_rows=ignore_extra_sheet_rows,
        chunks=chunks,
        buffer_bytes=buffer_bytes,
        parse_bytes=parse_bytes,
    )
    if (merge_labels or label_prefix) and not merge:
        raise InputError("--merge-label and --label-prefix apply to merged cohorts; pass --merge")
    if len(paths) == 1 and not merge:
        return ingest_one(
            paths[0], out, sample_sheet=sheets[0], overwrite=overwrite, on_progress=on_progress, **options
        )
    if not merge:
        raise InputError(f"{len(paths)} sources given; pass --merge to merge cohorts into one store")
    names = list(cohorts) if cohorts else [Path(p).name.split(".")[0] for p in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise InputError(f"--cohort names {names} must be unique, one per source")
    parse_label_map(merge_labels, names)  # fail before any work
    if not overwrite and exists(normalize_url(out)):
        raise InputError(f"{normalize_url(out)} already exists; choose another path or pass --overwrite")
    started = time.perf_counter()
    tmp_parent = Path(normalize_url(out)).parent if is_local(out) else None
    if tmp_parent is not None:
        tmp_parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ingest-merge-", dir=tmp_parent))
    chained = _Chained(on_progress)
    try:
        parts = []
        for i, (p, s) in enumerate(zip(paths, sheets, strict=True)):
            parts.append(
                ingest_one(p, str(tmp / f"{i}.zarr"), sample_sheet=s, on_progress=chained, **options)
            )
            chained.next()
        merged = merge_stores(
            [r.url for r in parts],
            out,
            cohorts=names,
            chunks=chunks,
            overwrite=overwrite,
            attrs={"sources": [h for r in parts for h in r.sources]},
            labels=merge_labels,
            label_prefix=label_prefix,
            on_progress=chained,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    annotated: dict[str, Any] = {}
    annotation = options["gene_annotation"]
    if annotation is not None:
        merged_genes = open_store(merged.url)["gene"].values
        annotated = _unmatched_summary(annotation, merged_genes, annotation.align(merged_genes)[1])
    return IngestReport(
        url=merged.url,
        n_samples=merged.n_samples,
        n_genes=merged.n_genes,
        layer=merged.layer,
        formats=[f for r in parts for f in r.formats],
        sources=[h for r in parts for h in r.sources],
        dropped_genes=merged.dropped_genes,
        annotation=annotated,
        unlabelled=merged.unlabelled,
        seconds=time.perf_counter() - started,
    )
