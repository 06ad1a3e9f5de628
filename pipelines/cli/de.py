"""``gexplain de STORE``: differential expression of one method over one or more contrasts.

Examples::

    gexplain de cohort.zarr --method deseq2 --design "~ cell + dex" --contrast dex trt untrt --out res.csv
    gexplain de cohort.zarr --method mannwhitney --one-vs-rest tissue --preset zhao --out res.parquet
    gexplain de cohort.zarr --method welch --per-group tissue status tumour normal --out res.csv

Results are always kept in the store (``results/de/<method>/<contrast>``). With one contrast,
``--out`` is the table written; with several, one table per contrast is written next to it as
``<stem>.<contrast><suffix>``. A volcano PNG goes beside each table unless ``--no-volcano``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipelines.de.analysis import METHODS, DeRequest, execute, plan
from pipelines.de.output import begin_results, check_table_path, export_table, finish_results, save_result
from pipelines.de.volcano import volcano_png
from pipelines.progress import Progress
from storage.store import open_store


def table_paths(out: Path, names: list[str]) -> dict[str, Path]:
    """Output table per contrast: ``out`` itself for one contrast, ``<stem>.<name><suffix>`` for several."""
    if len(names) == 1:
        return {names[0]: out}
    return {name: out.with_name(f"{out.stem}.{name}{out.suffix}") for name in names}


def register(app: typer.Typer) -> None:
    """Add the ``de`` command to ``app``."""

    @app.command("de")
    def de(
        store: str = typer.Argument(..., help="Store path or URL."),
        method: str = typer.Option(..., "--method", help=f"One of: {', '.join(METHODS)}."),
        design: str = typer.Option(None, "--design", help="deseq2 formula, e.g. '~ cell + dex'."),
        contrast: tuple[str, str, str] | None = typer.Option(
            None, "--contrast", help="COLUMN TEST_LEVEL REF_LEVEL, e.g. dex trt untrt."
        ),
        one_vs_rest: str = typer.Option(None, "--one-vs-rest", help="COLUMN: each level vs all others."),
        level: str = typer.Option(None, "--level", help="With --one-vs-rest: only this level."),
        per_group: tuple[str, str, str, str] | None = typer.Option(
            None,
            "--per-group",
            help="BY COLUMN TEST REF, e.g. tissue status tumour normal: within each tissue where both exist.",
        ),
        layer: str = typer.Option(None, "--layer", help="mannwhitney/welch layer (default cpm / log_expr)."),
        preset: str = typer.Option(
            None, "--preset", help="Significance call rule: zhao (FDR<=0.001, FC>=3)."
        ),
        alpha: float = typer.Option(0.05, "--alpha", help="FDR threshold (deseq2 filtering, volcano)."),
        size_factors: str = typer.Option("ratio", "--size-factors", help="deseq2: ratio or poscounts."),
        gene_block: int = typer.Option(2048, "--gene-block", help="Genes per block (bounds memory)."),
        out: Path = typer.Option(None, "--out", help="Table to write (.csv or .parquet)."),
        volcano: bool = typer.Option(True, "--volcano/--no-volcano", help="Write a volcano PNG per table."),
    ) -> None:
        """Differential expression per gene block; results go into the store and optional tables."""
        if out is not None:
            check_table_path(out)
        request = DeRequest(
            method=method,
            design=design,
            contrasts=(contrast,) if contrast else (),
            one_vs_rest=(one_vs_rest, level) if one_vs_rest else None,
            per_group=per_group,
            layer=layer,
            preset=preset,
            alpha=alpha,
            size_factors=size_factors,
            gene_block=gene_block,
        )
        ds = open_store(store)
        checked = plan(ds, request)
        results = execute(ds, checked, progress=Progress())
        begin_results(store, {method})
        paths = table_paths(out, list(results)) if out is not None else {}
        summary = Table("contrast", f"padj < {alpha:g}", "store group", "table")
        for name, result in results.items():
            group = save_result(store, method, name, result)
            table = ""
            if name in paths:
                table = str(export_table(result, paths[name]))
                if volcano:
                    volcano_png(result, paths[name].with_suffix(".png"), alpha=alpha)
            n_sig = int((result["padj"].values < alpha).sum())
            summary.add_row(name, str(n_sig), group, table)
        finish_results(store, {method})
        Console().print(summary)
        for skipped in checked.skipped:
            typer.echo(f"skipped group (fewer than 2 samples per level): {skipped}", err=True)
