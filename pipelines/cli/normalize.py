"""``gexplain normalize STORE``: the ``normalize`` stage (options from its params model)."""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command
from gexplain.pipelines.cli.show import summary


def _show(outputs: dict[str, Any]) -> None:
    summary("normalized", [("added", outputs["variables"])])


def register(app: typer.Typer) -> None:
    """Add the ``normalize`` command to ``app``."""
    stage_command(
        app,
        "normalize",
        help="Size factors, CPM/TPM/normalized counts and log2(x+1), written into the store.",
        show=_show,
    )
