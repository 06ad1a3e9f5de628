"""The one output style of the commands: a short rich summary for people (``--json`` prints the
outputs for machines instead, :func:`gexplain.pipelines.cli.generate.show_json`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)


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
    console.print(f"[bold]{title}[/bold]")
    console.print(table)
