"""``gexplain normalize STORE``: add size factors, CPM/TPM/normalized counts and log_expr to a store."""

from __future__ import annotations

import typer

from pipelines.normalize.stage import normalize_dataset
from storage.errors import InputError
from storage.store import add_variables, open_store


def register(app: typer.Typer) -> None:
    """Add the ``normalize`` command to ``app``."""

    @app.command("normalize")
    def normalize(
        store: str = typer.Argument(..., help="Store path or URL."),
        size_factors: str = typer.Option("ratio", "--size-factors", help="ratio, poscounts or none."),
        layers: str = typer.Option("cpm", "--layers", help="Comma-separated: cpm, tpm, norm_counts."),
        log: str = typer.Option("none", "--log", help="Write log_expr = log2(LAYER + 1) of this layer."),
    ) -> None:
        """Compute normalized layers lazily, chunk by chunk, and add them to the store."""
        if size_factors not in ("ratio", "poscounts", "none"):
            raise InputError(f"--size-factors {size_factors}: choose ratio, poscounts or none")
        names = [n.strip() for n in layers.split(",") if n.strip()]
        ds = open_store(store)
        new = normalize_dataset(ds, size_factors=size_factors, layers=names, log=log)
        written = add_variables(store, new)
        typer.echo(f"added to {store}: {', '.join(written)}")
