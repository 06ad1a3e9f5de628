"""The ``gexplain`` command line: one typer app; each command lives in its own module.

Exit codes: 0 success, 2 bad input or usage (the message says what and how to fix it),
1 any other failure, 130 interrupted (Ctrl-C; SIGTERM exits 143): everything finished so far is kept
and a rerun resumes.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys

import typer
from gexplain.storage.errors import InputError
from gexplain.storage.lease import release_all
from rich.console import Console

COMMANDS: tuple[str, ...] = (
    "gexplain.pipelines.cli.simulate",
    "gexplain.pipelines.cli.ingest",
    "gexplain.pipelines.cli.info",
    "gexplain.pipelines.cli.normalize",
    "gexplain.pipelines.cli.de",
    "gexplain.pipelines.cli.train",
    "gexplain.pipelines.cli.explain",
    "gexplain.pipelines.cli.evaluate",
    "gexplain.pipelines.cli.report",
    "gexplain.pipelines.cli.run",
    "gexplain.pipelines.cli.export",
    "gexplain.pipelines.cli.gc",
    "gexplain.pipelines.cli.verify",
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


INTERRUPTED = 130
TERMINATED = 143
_signals: list[int] = []


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler cancelling the job): unwind like Ctrl-C, exit 143."""
    _signals.append(signum)
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
    try:
        code = _main(argv)
    except KeyboardInterrupt:  # between the command's end and its clean-up
        code = _interrupted()
    try:
        release_all()
    except KeyboardInterrupt:
        code = _interrupted()
    return code


def _interrupted() -> int:
    """Say so and return 130 (Ctrl-C) or 143 (SIGTERM): a scheduler must see a failure."""
    Console(stderr=True).print("interrupted; rerun to resume", highlight=False)
    return TERMINATED if _signals else INTERRUPTED


def _main(argv: list[str] | None) -> int:
    logging.basicConfig(
        level=os.environ.get("GEXPLAIN_LOG", "INFO"), format="%(asctime)s %(name)s %(message)s"
    )
    for noisy in ("distributed", "ray", "urllib3", "fsspec", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    err = Console(stderr=True)
    try:
        code = app(args=argv, standalone_mode=False)
    except KeyboardInterrupt:
        return _interrupted()
    except InputError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            return _interrupted()
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
    if code == INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130)
        return _interrupted()
    return int(code) if isinstance(code, int) else 0  # a command's own exit code (typer.Exit)


def run_main() -> None:
    """Console-script wrapper that exits with :func:`main`'s code."""
    sys.exit(main())
