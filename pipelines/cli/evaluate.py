"""``gexplain evaluate STORE``: the ``evaluate`` stage (options from its params model)."""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command
from gexplain.pipelines.cli.show import summary


def _show(outputs: dict[str, Any]) -> None:
    if not outputs["n_tables"]:
        summary("nothing to evaluate", [("why", "the store has no explain or DE results")])
        return
    summary(
        "evaluated",
        [("results", outputs["results"]), ("tables", f"{outputs['n_tables']} in {outputs['tables']}")],
    )


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    stage_command(
        app,
        "evaluate",
        help="Reproducibility, saturation, ground-truth, faithfulness and biology tables.",
        show=_show,
    )
