"""The ``gexplain`` command line: one typer app; each command lives in its own module.

Exit codes: 0 success, 2 bad input or usage (the message says what and how to fix it),
1 any other failure.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer
from rich.console import Console

from storage.errors import InputError

COMMANDS: tuple[str, ...] = (
    "pipelines.cli.simulate",
    "pipelines.cli.ingest",
    "pipelines.cli.info",
    "pipelines.cli.normalize",
    "pipelines.cli.de",
    "pipelines.cli.train",
    "pipelines.cli.explain",
    "pipelines.cli.evaluate",
    "pipelines.cli.report",
    "pipelines.cli.run",
    "pipelines.cli.export",
)

app = typer.Typer(
    name="gexplain",
    help="Reproducible gene-level explanations of expression cohorts (Ray + Dask + Zarr).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in COMMANDS:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    logging.basicConfig(
        level=os.environ.get("GEXPLAIN_LOG", "INFO"), format="%(asctime)s %(name)s %(message)s"
    )
    for noisy in ("distributed", "ray", "urllib3", "fsspec", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    err = Console(stderr=True)
    try:
        app(args=argv, standalone_mode=False)
    except InputError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("aborted")
        return 1
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click/typer usage errors: exit 2
            exc.show()
            return int(exc.exit_code)
        if os.environ.get("GEXPLAIN_DEBUG"):
            raise
        err.print(f"[red]failed:[/red] {type(exc).__name__}: {exc}\n(set GEXPLAIN_DEBUG=1 for the traceback)")
        return 1
    return 0


def run_main() -> None:
    """Console-script wrapper that exits with :func:`main`'s code."""
    sys.exit(main())
