"""``gexplain report STORE --out report.html``: the self-contained HTML report of a store."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.report.build import build_report


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    def report(
        store: str = typer.Argument(..., help="Store path or URL."),
        out: Path = typer.Option(
            Path("report.html"), "--out", help="HTML file to write (tables go beside it)."
        ),
        evaluation: str = typer.Option(
            "", "--evaluation", help="Evaluation whose tables are shown ('' = all)."
        ),
        alpha: float = typer.Option(0.05, "--alpha", help="DE significance level shown."),
        top_n: int = typer.Option(15, "--top-n", help="Top genes per class in the heatmap."),
    ) -> None:
        """Write one HTML page (plots embedded) with data, models, DE, attributions and their evaluation."""
        path = build_report(store, out, evaluation=evaluation or None, alpha=alpha, top_n=top_n)
        typer.echo(f"report: {path}")
        typer.echo(f"tables: {path.with_name(path.stem + '_tables')}")
