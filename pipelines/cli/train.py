"""``gexplain train STORE``: the ``train`` stage (options from its params model)."""

from __future__ import annotations

import typer
from gexplain.pipelines.cli.generate import stage_command


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    stage_command(app, "train")
