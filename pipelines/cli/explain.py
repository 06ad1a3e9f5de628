"""``gexplain explain STORE``: the ``explain`` stage, its options generated from the stage's params model.

Example::

    gexplain explain cohort.zarr --explainers integrated_gradients,deeplift \\
        --references universal:60 --repeats 40 --models all

A result of the same name is kept unless ``--overwrite`` is given (the runner of a config replaces
what its manifest owns); rerunning the same command resumes an interrupted one.
"""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command
from gexplain.pipelines.cli.show import summary


def _show(outputs: dict[str, Any]) -> None:
    summary(
        f"explained: {outputs['path']}",
        [
            (
                "blocks",
                f"{outputs['blocks']} ({outputs['blocks_written']} computed, "
                f"{outputs['blocks_skipped']} already done)",
            ),
            ("actors", f"{outputs['actors']} ({outputs['actor_deaths']} died and were replaced)"),
        ],
    )


def register(app: typer.Typer) -> None:
    """Add the ``explain`` command to ``app``; rerun the same command to resume."""
    stage_command(
        app,
        "explain",
        help="Attributions of every sample (explainers x references x repeats x models), per sample "
        "block, on a Ray actor pool; resumable.",
        show=_show,
    )
