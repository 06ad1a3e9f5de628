"""``gexplain report STORE``: the ``report`` stage (options from its params model)."""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command


def _show(outputs: dict[str, Any], _: dict[str, Any]) -> None:
    typer.echo(f"report: {outputs['report']}")
    typer.echo(f"tables: {outputs['tables']}")


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    stage_command(app, "report", show=_show)
