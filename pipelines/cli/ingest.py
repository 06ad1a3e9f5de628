"""``gexplain ingest``: the ``ingest`` stage (options from its params model)."""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command
from gexplain.pipelines.cli.show import summary


def _show(report: dict[str, Any]) -> None:
    """A summary of what was written, and only the merge notes that report a loss."""
    rows: list[tuple[str, Any]] = [
        (
            "data",
            f"{report['n_samples']} samples x {report['n_genes']} genes, layer '{report['layer']}' "
            f"({', '.join(report['formats'])})",
        ),
        ("time", f"{report['seconds']:.1f} s"),
    ]
    annotation = report.get("annotation")
    if annotation and annotation["unmatched"]:
        rows.append(
            (
                "gene annotation",
                f"{annotation['unmatched']} of {report['n_genes']} genes not found in {annotation['path']} "
                f"(kept ''/NaN), e.g. {', '.join(annotation['first_unmatched'][:5])}",
            )
        )
    for cohort, empty in report.get("unlabelled", {}).items():
        if empty["count"]:
            rows.append(
                (
                    f"unlabelled ({cohort})",
                    f"{empty['count']} samples, e.g. {', '.join(empty['first'][:3])}; map its label "
                    "column with --merge-label COHORT=COLUMN",
                )
            )
    for cohort, dropped in report.get("dropped_genes", {}).items():
        if dropped["count"]:
            rows.append(
                (
                    f"dropped ({cohort})",
                    f"{dropped['count']} genes absent from the other cohorts, e.g. "
                    f"{', '.join(dropped['first'][:5])}",
                )
            )
    summary(f"wrote {report['url']}", rows)


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to ``app``."""
    stage_command(
        app,
        "ingest",
        help="Ingest expression data into a new store (streamed; nothing is written on bad input).",
        creates_store=True,
        runtime=False,
        show=_show,
    )
