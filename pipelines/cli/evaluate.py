"""``gexplain evaluate STORE``: the ``evaluate`` stage (options from its params model)."""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command


def _show(outputs: dict[str, Any], _: dict[str, Any]) -> None:
    for group in outputs["results"]:
        typer.echo(group)
    typer.echo(f"tables: {outputs['tables']}")
    if not outputs["n_tables"]:
        typer.echo("nothing to evaluate: the store has no explain or DE results")


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    stage_command(app, "evaluate", show=_show)
