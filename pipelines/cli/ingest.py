"""``gexplain ingest``: read GCT, GDC, CSV/TSV/Parquet or h5ad expression data into a store."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipelines.progress import Progress
from storage.errors import InputError
from storage.ingest import FORMATS, ORIENTATIONS, VALUE_TYPES, ingest


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to ``app``."""

    @app.command("ingest")
    def ingest_command(
        sources: list[Path] = typer.Argument(
            ..., help="Input(s): GCT(.gz) file, GDC download directory, CSV/TSV/Parquet matrix, .h5ad."
        ),
        out: str = typer.Option(..., "--out", "-o", help="Store to create: a path or URL (s3://, gs://)."),
        fmt: str = typer.Option("auto", "--format", help=f"Reader: {', '.join(FORMATS)}."),
        sample_sheet: list[Path] = typer.Option(
            None,
            "--sample-sheet",
            help="Sample sheet (GTEx SampleAttributesDS, GDC sample sheet, CSV/TSV); one per source.",
        ),
        sample_id_column: str = typer.Option(
            None, "--sample-id-column", help="Sample-id column of the sheet."
        ),
        orientation: str = typer.Option(
            "auto", "--orientation", help=f"Generic matrices: {', '.join(ORIENTATIONS)}."
        ),
        column: str = typer.Option(
            "unstranded", "--column", help="GDC value column, e.g. unstranded or tpm_unstranded."
        ),
        layer: str = typer.Option(None, "--layer", help="h5ad layer holding the values (default X)."),
        values: str = typer.Option(
            None, "--values", help=f"Declared value type = layer name: {', '.join(VALUE_TYPES)}."
        ),
        counts: bool = typer.Option(False, "--counts", help="Shorthand for --values counts."),
        tpm: bool = typer.Option(False, "--tpm", help="Shorthand for --values tpm."),
        gene_lengths: Path = typer.Option(
            None, "--gene-lengths", help="CSV/TSV of gene id and length (bp) -> gene_length."
        ),
        gene_annotation: Path = typer.Option(
            None,
            "--gene-annotation",
            help="Gene annotation TSV/CSV (gene_id, chrom, start, end/length, gene_name) or GTF(.gz) "
            "-> gene_chrom, gene_start (bp); gene_length/gene_symbol where the source has none.",
        ),
        ignore_extra_sheet_rows: bool = typer.Option(
            False,
            "--ignore-extra-sheet-rows",
            help="Accept sheet rows matching no matrix sample (GTEx's sheet lists every release sample).",
        ),
        merge: bool = typer.Option(False, "--merge", help="Merge several cohorts on stripped Ensembl ids."),
        cohort: list[str] = typer.Option(None, "--cohort", help="Cohort name per source (with --merge)."),
        merge_label: list[str] = typer.Option(
            None, "--merge-label", help="COHORT=COLUMN: map each cohort's column into one sample_tissue."
        ),
        label_prefix: bool = typer.Option(
            False, "--label-prefix", help="Prefix merged labels with the cohort name (GTEx_Lung)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store on success."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Ingest expression data into a new store (streamed; nothing is written on bad input)."""
        declared = [v for v, flag in (("counts", counts), ("tpm", tpm)) if flag] + (
            [values] if values else []
        )
        if len(set(declared)) > 1:
            raise InputError(f"conflicting value types {declared}; give one of --counts, --tpm, --values")
        progress = Progress()
        with progress.task("ingest", total=None) as task:

            def on_progress(done: int, total: int) -> None:
                task.total = total
                task.advance(done - task.done)

            report = ingest(
                list(sources),
                out,
                fmt=fmt,
                sample_sheets=list(sample_sheet) if sample_sheet else None,
                sample_id_column=sample_id_column,
                orientation=orientation,  # type: ignore[arg-type]
                column=column,
                layer=layer,
                values=declared[0] if declared else None,
                gene_lengths=gene_lengths,
                gene_annotation=gene_annotation,
                ignore_extra_sheet_rows=ignore_extra_sheet_rows,
                merge=merge,
                cohorts=list(cohort) if cohort else None,
                merge_labels=list(merge_label) if merge_label else None,
                label_prefix=label_prefix,
                overwrite=overwrite,
                on_progress=on_progress,
            )
        progress.close()
        summary = report.summary()
        if as_json:
            typer.echo(json.dumps(summary, indent=2, default=str))
            return
        typer.echo(
            f"wrote {report.url}: {report.n_samples} samples x {report.n_genes} genes, layer "
            f"'{report.layer}' ({', '.join(report.formats)}) in {report.seconds:.1f} s"
        )
        if report.annotation:
            typer.echo(
                f"gene annotation {report.annotation['path']}: {report.annotation['unmatched']} of "
                f"{report.n_genes} genes not found (kept ''/NaN), e.g. {report.annotation['first_unmatched'][:5]}"
            )
        for cohort_name, empty in summary["unlabelled"].items():
            typer.echo(
                f"merge: {empty['count']} samples of {cohort_name} have no label, e.g. {empty['first'][:3]}; "
                "map its label column with --merge-label COHORT=COLUMN"
            )
        for cohort_name, dropped in summary["dropped_genes"].items():
            typer.echo(
                f"merge: dropped {dropped['count']} genes of {cohort_name} absent elsewhere, e.g. {dropped['first'][:5]}"
            )
