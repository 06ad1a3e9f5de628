"""``gexplain explain STORE``: the ``explain`` stage, its options generated from the stage's params model.

Example::

    gexplain explain cohort.zarr --explainers integrated_gradients,deeplift \\
        --references universal:60 --repeats 40 --models all
"""

from __future__ import annotations

import typer
from gexplain.pipelines.cli.generate import stage_command


def register(app: typer.Typer) -> None:
    """Add the ``explain`` command to ``app``; rerun the same command to resume."""
    stage_command(app, "explain")
