"""``gexplain export STORE --h5ad out.h5ad [--zarr out.zarr]``: the store as AnnData for scanpy."""

from __future__ import annotations

from pathlib import Path

import typer
from gexplain.pipelines.export import export_anndata


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @app.command("export")
    def export(
        store: str = typer.Argument(..., help="Store path or URL."),
        h5ad: Path = typer.Option(None, "--h5ad", help="Write an .h5ad file (anndata / scanpy)."),
        zarr: Path = typer.Option(None, "--zarr", help="Write AnnData-on-Zarr (anndata.read_zarr)."),
        layer: str = typer.Option(
            None,
            "--layer",
            help="Store layer written as X (default counts, else log_expr, else the first by name).",
        ),
        attributions: list[str] = typer.Option(
            None,
            "--attributions",
            help="Explain runs to include as attr_<run>_<explainer> layers (default all).",
        ),
        attribution_std: bool = typer.Option(
            False, "--attribution-std", help="Also add each explainer's std as attr_<run>_<explainer>_std."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        """Export a store to AnnData: X = a layer, other layers, sample_* as obs, gene_* as var,
        attribution means as layers, DE tables (pydeseq2 columns) in varm/uns."""
        for r in export_anndata(
            store,
            h5ad=h5ad,
            zarr=zarr,
            layer=layer,
            attributions=list(attributions) if attributions else None,
            attribution_std=attribution_std,
            overwrite=overwrite,
        ):
            typer.echo(
                f"wrote {r.path}: {r.n_obs} obs (samples) x {r.n_vars} vars (genes), X = '{r.x_layer}', "
                f"layers {r.layers}, DE tables {r.de}"
            )
