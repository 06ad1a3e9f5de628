"""``gexplain report STORE``: the ``report`` stage (options from its params model)."""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command
from gexplain.pipelines.cli.show import summary


def _show(outputs: dict[str, Any]) -> None:
    summary("report", [("page", outputs["report"]), ("tables", outputs["tables"])])


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    stage_command(app, "report", help="Self-contained HTML report of the store.", runtime=False, show=_show)
