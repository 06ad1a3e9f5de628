"""``gexplain train STORE``: the ``train`` stage (options from its params model)."""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command
from gexplain.pipelines.cli.show import summary


def _show(outputs: dict[str, Any]) -> None:
    def mean(key: str) -> str | None:
        values = outputs.get(key)
        return f"{sum(values) / len(values):.3f} (mean of {len(values)})" if values else None

    summary(
        f"trained models/{outputs.get('model_set')}",
        [
            (
                "data",
                f"{outputs.get('samples')} samples x {outputs.get('genes')} genes, "
                f"{outputs.get('classes')} classes of {outputs.get('label')} ({outputs.get('layer')})",
            ),
            ("test accuracy", mean("test_accuracy")),
            ("test macro F1", mean("test_macro_f1")),
            ("cv accuracy", (outputs.get("cv") or {}).get("accuracy")),
            ("cv tables", outputs.get("cv_tables")),
        ],
    )


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    stage_command(
        app,
        "train",
        help="Train classifier replicates (MLP or CNN) on a store layer, in parallel on Ray.",
        show=_show,
    )
