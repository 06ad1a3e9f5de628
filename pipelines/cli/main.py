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
from typing import Any
from unittest import mock

import rich.columns
import typer
from gexplain.pipelines.cli.panels import OUTPUT
from gexplain.pipelines.progress import stderr_console
from gexplain.storage.errors import InputError
from gexplain.storage.lease import release_all
from rich.table import Table
from rich.text import Text
from typer import rich_utils
from typer.core import TyperCommand, TyperGroup

from gexplain import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("simulate", "Simulate a cohort with known informative genes into a new store."),
    "ingest": (
        "ingest",
        "Ingest expression data into a new store (streamed; nothing is written on bad input).",
    ),
    "info": ("info", "Show the dims, layers, labels, chunking, inputs and results of a store."),
    "normalize": ("normalize", "Size factors, CPM/TPM/normalized counts and log2(x+1), into the store."),
    "de": ("de", "Differential expression (deseq2, edger, mannwhitney, welch) per contrast, into the store."),
    "train": ("train", "Train classifier replicates (MLP or CNN) on a store layer, on Ray."),
    "explain": ("explain", "Attributions of every sample on a Ray actor pool; resumable."),
    "evaluate": ("evaluate", "Reproducibility, saturation, ground-truth, faithfulness and biology tables."),
    "report": ("report", "Self-contained HTML report of the store."),
    "run": ("run", "Run a config's stages in order; finished, unchanged stages are skipped."),
    "export": ("export", "Export a store to AnnData (.h5ad or AnnData-on-Zarr) for scanpy."),
    "gc": ("gc", "Remove stale hidden leftovers (.partial-*, .old-*, .tmp-*) whose writer is gone."),
    "verify": ("verify", "Check every chunk of a store (presence, CRC-32C); exit 3 when damaged."),
}
"""Command name -> (module under ``gexplain.pipelines.cli``, one-line help). The list and the help of
``gexplain`` come from here; a command's module (and its stage's params model) is imported only
when that command is named, so ``gexplain --help`` and ``gexplain info`` import neither torch nor Ray."""


class _Listed(TyperCommand):
    """A command as ``gexplain --help`` lists it: its name and one-line help, nothing imported."""


class _FoldingTable(Table):
    """A help table whose cells wrap (fold) instead of being cut with an ellipsis; the columns of
    option names never wrap, so the help text gives way first."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*renderables, **kwargs)
        for column, cell in zip(self.columns, renderables, strict=False):
            column.overflow = "fold"
            if isinstance(cell, Text) and cell.plain.startswith("-"):
                column.no_wrap = True


def _help_option(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
        option.rich_help_panel = OUTPUT
    return option


def _readable_help(command: Any) -> Any:
    """Make ``command``'s help (and its sub-commands') readable: on/off flags without a type such as
    ``<bool>``, ``--help`` with the output options, and no option name or word cut with an
    ellipsis on a narrow terminal. Returns ``command``."""
    for param in command.params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    make_help, format_help = command.get_help_option, command.format_help

    def help_option(ctx: Any) -> Any:
        return _help_option(make_help(ctx))

    def folding_help(ctx: Any, formatter: Any) -> None:
        # typer builds its option tables in rich_utils, and each help cell as rich Columns
        with (
            mock.patch.object(rich_utils, "Table", _FoldingTable),
            mock.patch.object(rich.columns, "Table", _FoldingTable),
        ):
            format_help(ctx, formatter)

    command.get_help_option, command.format_help = help_option, folding_help
    for sub in getattr(command, "commands", {}).values():
        _readable_help(sub)
    return command


class LazyGroup(TyperGroup):
    """The ``gexplain`` group: builds a command from its module only when it is invoked or asked
    for its help (:data:`COMMANDS`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, Any] = {}

    def get_help_option(self, ctx: Any) -> Any:
        return _help_option(super().get_help_option(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self._loaded:
            return self._loaded[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        return _Listed(name=cmd_name, help=COMMANDS[cmd_name][1], callback=None)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in COMMANDS:
            return args[0], self.load(args[0]), args[1:]
        return super().resolve_command(ctx, args)

    def load(self, name: str) -> Any:
        """The full click command ``name`` (its module imported and registered once)."""
        if name not in self._loaded:
            module = importlib.import_module(f"gexplain.pipelines.cli.{COMMANDS[name][0]}")
            holder = typer.Typer(add_completion=False)
            holder.callback()(lambda: None)  # a group, whatever the module registers
            module.register(holder)
            group = typer.main.get_command(holder)
            self._loaded[name] = _readable_help(group.commands[name])  # type: ignore[attr-defined]
        return self._loaded[name]


app = typer.Typer(
    name="gexplain",
    cls=LazyGroup,
    help="Reproducible gene-level explanations of expression cohorts (Ray + Dask + Zarr).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gexplain {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True, metavar=""
    ),
) -> None:
    """Reproducible gene-level explanations of expression cohorts (Ray + Dask + Zarr)."""


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
    stderr_console().print("interrupted; rerun to resume")
    return TERMINATED if _signals else INTERRUPTED


def _setup_logging() -> None:
    """Log lines on stderr, one per record and never wrapped; warnings become log records.

    Library warnings (a DESeq2 fit that did not converge, a deprecation) are logged under
    ``py.warnings`` as one line with their category, not printed raw with their source path.
    """
    logging.basicConfig(
        level=os.environ.get("GEXPLAIN_LOG", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").handlers[:0] = []
    for noisy in ("distributed", "ray", "urllib3", "fsspec", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import warnings

    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """A warning as one log message: ``UserWarning: text`` (no source path, no code line)."""
    return f"{category.__name__}: {str(message).strip()}"


def _main(argv: list[str] | None) -> int:
    _setup_logging()
    err = stderr_console()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="gexplain")
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
