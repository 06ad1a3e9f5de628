"""``gexplain verify STORE``: check every chunk of every array and print a table."""

from __future__ import annotations

import json

import typer
from gexplain.storage.errors import InputError
from gexplain.storage.integrity import record_verification, rewriting_stage, summary, verify
from gexplain.storage.paths import exists, normalize_url
from rich.console import Console
from rich.markup import escape
from rich.table import Table

DAMAGED = 3  # exit code: the store is damaged (1: failure, 2: bad input)


def register(app: typer.Typer) -> None:
    """Add the ``verify`` command to ``app``."""

    @app.command("verify")
    def verify_store(
        store: str = typer.Argument(..., help="Store path or URL."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Check that every chunk is present and matches its CRC-32C; exit 3 when the store is damaged.

        Arrays of stores written before checksums are listed as unverifiable. The outcome is
        recorded in the store (``gexplain info`` shows the last one) when it is writable.
        """
        url = normalize_url(store)
        if not exists(url):
            raise InputError(f"no store at {url}; give the path of an existing store")
        reports = verify(url)
        try:
            outcome = record_verification(url, reports)
        except (OSError, PermissionError):  # a read-only store is still verified
            outcome = summary(reports)
        if as_json:
            typer.echo(json.dumps({**outcome, "reports": [r.__dict__ for r in reports]}, indent=2))
        else:
            con = Console()
            table = Table(
                "array", "chunks", "ok", "missing", "damaged", "status", "first bad", "rewritten by"
            )
            for r in reports:
                style = {"ok": "green", "damaged": "red", "unverifiable": "yellow"}[r.status]
                table.add_row(
                    escape(r.array),
                    str(r.chunks),
                    str(r.ok),
                    str(r.missing),
                    str(r.damaged),
                    f"[{style}]{r.status}[/{style}]",
                    r.first_bad,
                    escape(rewriting_stage(r.array)) if r.status == "damaged" else "",
                )
            con.print(table)
            note = {
                "ok": "every chunk present and matching its checksum",
                "damaged": "DAMAGED: rerun the commands named above to rewrite those arrays",
                "unverifiable": "arrays without checksums (written before gexplain stored them) cannot be "
                "verified; rewrite them to add checksums",
            }[outcome["state"]]
            con.print(f"{escape(url)}: {outcome['arrays']} arrays, {outcome['chunks']} chunks: {note}")
        if outcome["state"] == "damaged":
            raise typer.Exit(DAMAGED)
