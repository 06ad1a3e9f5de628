"""``gexplain gc STORE``: remove what killed writers left behind."""

from __future__ import annotations

import dataclasses

import typer
from gexplain.pipelines.cli.generate import show_json
from gexplain.pipelines.cli.show import summary
from gexplain.storage.errors import InputError
from gexplain.storage.gc import collect
from gexplain.storage.lease import hold_store
from gexplain.storage.paths import exists, normalize_url


def register(app: typer.Typer) -> None:
    """Add the ``gc`` command to ``app``."""

    @app.command("gc")
    def gc(
        store: str = typer.Argument(..., help="Store path or URL."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
        as_json: bool = typer.Option(False, "--json", help="Print what was removed as JSON (for scripts)."),
    ) -> None:
        """Remove stale hidden leftovers (.partial-*, .old-*, .tmp-*) whose writer is gone."""
        url = normalize_url(store)
        if not exists(url):
            raise InputError(f"no store at {url}; give the path of an existing store")
        if not dry_run:
            hold_store(url, "exclusive")  # no writer may be mid-way while we clean
        removed = collect(url, dry_run=dry_run)
        if as_json:
            show_json({"dry_run": dry_run, "removed": [dataclasses.asdict(r) for r in removed]})
            return
        verb = "would remove" if dry_run else "removed"
        total = sum(r.bytes for r in removed) / 2**20
        summary(
            f"{verb} {len(removed)} leftover(s), {total:.1f} MiB",
            [(f"{verb} {item.path}", f"{item.bytes / 2**20:.1f} MiB") for item in removed],
        )
