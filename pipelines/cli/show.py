"""The one output style of the commands: a short rich summary for people (``--json`` prints the
outputs for machines instead, :func:`gexplain.pipelines.cli.generate.show_json`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

UNWRAPPED = 100_000
"""Console width when stdout is not a terminal: lines in a log file or a pipe are never wrapped."""


def console() -> Console:
    """A console on the current stdout: its width on a terminal, unwrapped otherwise."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else UNWRAPPED)


def summary(title: str, rows: Iterable[tuple[str, Any]]) -> None:
    """Print ``title`` and one ``key  value`` line per row (rows whose value is None are left out)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = ", ".join(map(str, value))
        table.add_row(key, str(value))
    out = console()
    out.print(f"[bold]{title}[/bold]")
    out.print(table)
