"""The ``ingest`` run-config stage: read expression files into the run's store.

Example::

    [[stage]]
    kind = "ingest"
    [stage.params]
    sources = ["GTEx_gene_reads.gct.gz"]
    sample_sheets = ["GTEx_SampleAttributesDS.txt"]
    ignore_extra_sheet_rows = true

Relative paths are resolved against the current directory (like ``run.out``). The store is
replaced when the stage reruns (it is only moved into place once complete).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from gexplain.pipelines.params import StageParams, cli
from gexplain.pipelines.stages import Stage, StageContext
from gexplain.storage.ingest import ingest
from pydantic import Field


class IngestParams(StageParams):
    """Parameters of the ``ingest`` stage (and of ``gexplain ingest``)."""

    sources: list[str] = Field(
        min_length=1,
        description="Input(s): GCT(.gz) file, GDC download directory, CSV/TSV/Parquet matrix, .h5ad "
        "(several with merge).",
        json_schema_extra=cli(argument=True),
    )
    format: Literal["auto", "gct", "gdc", "matrix", "h5ad"] = Field("auto", description="Reader.")
    sample_sheets: list[str | None] | None = Field(
        None,
        description="Sample sheet per source (GTEx SampleAttributesDS, GDC sample sheet, CSV/TSV).",
        json_schema_extra=cli("--sample-sheet"),
    )
    sample_id_column: str | None = Field(
        None,
        description="Sample-id column of the sheet (default: the column whose values match the matrix's ids).",
    )
    orientation: Literal["auto", "genes-x-samples", "samples-x-genes"] = Field(
        "auto", description="Orientation of generic matrices."
    )
    column: str = Field("unstranded", description="GDC value column, e.g. unstranded or tpm_unstranded.")
    layer: str | None = Field(None, description="h5ad layer holding the values (default X).")
    values: Literal["counts", "expected_counts", "tpm", "cpm", "log_expr", "expr"] | None = Field(
        None,
        description="Declared value type = layer name (default: detected); expected_counts (RSEM/Salmon) "
        "writes rounded integer counts plus the raw float32 expected_counts.",
        json_schema_extra=cli(presets={"--counts": "counts", "--tpm": "tpm"}),
    )
    gene_lengths: str | None = Field(None, description="CSV/TSV of gene id and length (bp) -> gene_length.")
    gene_annotation: str | None = Field(
        None,
        description="Gene annotation TSV/CSV (gene_id, chrom, start, end/length, gene_name) or GTF(.gz) "
        "-> gene_chrom, gene_start (bp); gene_length/gene_symbol where the source has none.",
    )
    ignore_extra_sheet_rows: bool = Field(
        False, description="Accept sheet rows matching no matrix sample (GTEx's sheet lists every sample)."
    )
    merge: bool = Field(False, description="Merge several cohorts on stripped Ensembl ids.")
    cohorts: list[str] | None = Field(
        None, description="Cohort name per source (with merge).", json_schema_extra=cli("--cohort")
    )
    merge_labels: list[str] | None = Field(
        None,
        description="COHORT=COLUMN per cohort (with merge): one sample_tissue from each cohort's label column.",
        json_schema_extra=cli("--merge-label"),
    )
    label_prefix: bool = Field(False, description="Prefix merged labels with the cohort name (GTEx_Lung).")
    chunk_sample: int = Field(2048, gt=0, description="Store chunk size along samples.")
    chunk_gene: int = Field(2048, gt=0, description="Store chunk size along genes.")


def run(ctx: StageContext, params: IngestParams) -> dict[str, Any]:
    """Ingest ``params.sources`` into ``ctx.store_url`` and return the report summary."""
    with ctx.progress.task(f"{ctx.stage_name or 'ingest'}: rows written") as task:
        report = ingest(
            [Path(s) for s in params.sources],
            ctx.store_url,
            fmt=params.format,
            sample_sheets=params.sample_sheets,
            sample_id_column=params.sample_id_column,
            orientation=params.orientation,
            column=params.column,
            layer=params.layer,
            values=params.values,
            gene_lengths=params.gene_lengths,
            gene_annotation=params.gene_annotation,
            ignore_extra_sheet_rows=params.ignore_extra_sheet_rows,
            merge=params.merge,
            cohorts=params.cohorts,
            merge_labels=params.merge_labels,
            label_prefix=params.label_prefix,
            chunks={"sample": params.chunk_sample, "gene": params.chunk_gene},
            overwrite=ctx.overwrite,
            on_progress=task.report,
        )
    return report.summary()


def inputs(params: IngestParams) -> list[str]:
    """Files the stage reads: their size and mtime join the stage fingerprint."""
    files = [*params.sources, *(s for s in params.sample_sheets or [] if s)]
    return files + [f for f in (params.gene_lengths, params.gene_annotation) if f]


STAGE = Stage(
    kind="ingest",
    params=IngestParams,
    run=run,
    description="Read expression files into the store.",
    inputs=inputs,
)
