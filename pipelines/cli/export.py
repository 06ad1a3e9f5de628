"""``gexplain export STORE --h5ad out.h5ad [--zarr out.zarr]``: the store as AnnData for scanpy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from gexplain.pipelines.cli.generate import show_json
from gexplain.pipelines.cli.panels import DATA, OUTPUT
from gexplain.pipelines.cli.show import summary


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @app.command("export")
    def export(
        store: str = typer.Argument(..., help="Store path or URL."),
        h5ad: Path = typer.Option(
            None,
            "--h5ad",
            help="Write an .h5ad file (anndata / scanpy).",
            metavar="PATH",
            rich_help_panel=OUTPUT,
        ),
        zarr: Path = typer.Option(
            None,
            "--zarr",
            help="Write AnnData-on-Zarr (anndata.read_zarr).",
            metavar="PATH",
            rich_help_panel=OUTPUT,
        ),
        layer: str = typer.Option(
            None,
            "--layer",
            help="Store layer written as X (default counts, else log_expr, else the first by name).",
            metavar="TEXT",
            rich_help_panel=DATA,
        ),
        attributions: list[str] = typer.Option(
            None,
            "--attributions",
            help="Explain runs to include as attr_<run>_<explainer> layers (default all).",
            metavar="NAME",
            rich_help_panel=DATA,
        ),
        attribution_std: bool = typer.Option(
            False,
            "--attribution-std",
            help="Also add each explainer's std as attr_<run>_<explainer>_std.",
            rich_help_panel=DATA,
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace the files at --h5ad and --zarr.", rich_help_panel=OUTPUT
        ),
        as_json: bool = typer.Option(
            False,
            "--json",
            help="Print the outputs as JSON (for scripts) instead of a summary.",
            rich_help_panel=OUTPUT,
        ),
    ) -> None:
        """Export a store to AnnData: X = a layer, other layers, sample_* as obs, gene_* as var,
        attribution means as layers, DE tables (pydeseq2 columns) in varm/uns."""
        from gexplain.pipelines.export import export_anndata
        from gexplain.pipelines.progress import Progress

        progress = Progress()
        try:
            reports = export_anndata(
                store,
                h5ad=h5ad,
                zarr=zarr,
                layer=layer,
                attributions=list(attributions) if attributions else None,
                attribution_std=attribution_std,
                overwrite=overwrite,
                progress=progress,
            )
        finally:
            progress.close()
        if as_json:
            show_json([dataclasses.asdict(r) for r in reports])
            return
        for r in reports:
            summary(
                f"wrote {r.path}",
                [
                    ("shape", f"{r.n_obs} obs (samples) x {r.n_vars} vars (genes)"),
                    ("X", r.x_layer),
                    ("layers", r.layers),
                    ("DE tables", r.de),
                ],
            )
