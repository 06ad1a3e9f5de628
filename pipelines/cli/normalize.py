"""``gexplain normalize STORE``: the ``normalize`` stage (options from its params model)."""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command


def _show(outputs: dict[str, Any], _: dict[str, Any]) -> None:
    typer.echo(f"added: {', '.join(outputs['variables'])}")


def register(app: typer.Typer) -> None:
    """Add the ``normalize`` command to ``app``."""
    stage_command(app, "normalize", show=_show)
