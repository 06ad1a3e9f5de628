"""Issue 21: the generated docs are true and readable: docs/cli.md is what the CLI says (plain
Markdown, no HTML entities, no machine paths) and docs/store.md is what storage/schema.py says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gexplain.pipelines.cli.docs import render

ROOT = Path(__file__).resolve().parents[1]


def test_cli_md_is_generated_plain_markdown() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    assert text == render(), "docs/cli.md is stale: run `make docs`"
    assert not re.search(r"&[a-z]+;|&#\d+;", text), "HTML entities in docs/cli.md"
    assert str(ROOT) not in text and "/home/" not in text


def test_store_md_is_generated_from_the_schema() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gexplain.storage.schema"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert (ROOT / "docs" / "store.md").read_text() == done.stdout
    assert "`xarray.open_datatree(store, engine='zarr')` fails" in done.stdout


def test_the_command_summary_names_every_de_method() -> None:
    """`gexplain --help` lists the commands without importing them; its `de` line must not drift from the registry."""
    from gexplain.pipelines.cli.main import COMMANDS
    from gexplain.pipelines.de.registry import methods

    line = COMMANDS["de"][1]
    assert all(name in line for name in methods()), line
