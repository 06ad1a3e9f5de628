"""``gexplain ingest``: the ``ingest`` stage (options from its params model)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command

AS_JSON = inspect.Parameter(
    "as_json",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(False, "--json", help="Print the report as JSON."),
    annotation=bool,
)


def _show(summary: dict[str, Any], extra: dict[str, Any]) -> None:
    if extra["as_json"]:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(
        f"wrote {summary['url']}: {summary['n_samples']} samples x {summary['n_genes']} genes, layer "
        f"'{summary['layer']}' ({', '.join(summary['formats'])}) in {summary['seconds']:.1f} s"
    )
    annotation = summary.get("annotation")
    if annotation:
        typer.echo(
            f"gene annotation {annotation['path']}: {annotation['unmatched']} of {summary['n_genes']} genes "
            f"not found (kept ''/NaN), e.g. {annotation['first_unmatched'][:5]}"
        )
    for cohort_name, empty in summary.get("unlabelled", {}).items():
        typer.echo(
            f"merge: {empty['count']} samples of {cohort_name} have no label, e.g. {empty['first'][:3]}; "
            "map its label column with --merge-label COHORT=COLUMN"
        )
    for cohort_name, dropped in summary["dropped_genes"].items():
        typer.echo(
            f"merge: dropped {dropped['count']} genes of {cohort_name} absent elsewhere, e.g. {dropped['first'][:5]}"
        )


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to ``app``."""
    stage_command(
        app,
        "ingest",
        help="Ingest expression data into a new store (streamed; nothing is written on bad input).",
        creates_store=True,
        show=_show,
        extra=[AS_JSON],
    )
