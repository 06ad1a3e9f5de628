"""CLI commands generated from params models: each stage's command runs ``stage.run`` as
``gexplain run`` does, with the runtime options every computing command shares (:data:`RUNTIME`).

The options of a stage come from its params model (:mod:`gexplain.pipelines.cli.options`); only those given
on the command line reach the model, so a bad value fails with the same message as in a config.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from gexplain.pipelines.cli.options import CliField, cli_fields, collect, command_class, option_parameters
from gexplain.pipelines.cli.panels import OUTPUT, PANEL_ORDER
from gexplain.pipelines.cli.panels import RUNTIME as RUNTIME_PANEL
from gexplain.pipelines.config import ClusterSection
from gexplain.pipelines.environment import StorageSection, parse_storage_option
from gexplain.pipelines.params import check_store_url, validate_params
from gexplain.pipelines.stages import get_params
from gexplain.pipelines.standalone import (
    REPLACES,
    STANDALONE_DEFAULTS,
    check_writable,
    run_stage,
    standalone_values,
)
from gexplain.storage.errors import InputError
from pydantic import ValidationError

__all__ = [
    "AS_JSON",
    "RUNTIME",
    "STORAGE",
    "check_writable",
    "cluster_options",
    "show_json",
    "stage_command",
    "storage_options",
]

# -- runtime options: the same for every command that computes ---------------------------------------

RUNTIME = [dataclasses.replace(f, panel=RUNTIME_PANEL) for f in cli_fields(ClusterSection)]
RUN_DIR = inspect.Parameter(
    "run_dir",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        Path("."),
        "--run-dir",
        help="Run folder for tables, plots and reports (a run config's run.out).",
        metavar="PATH",
        rich_help_panel=OUTPUT,
    ),
    annotation=Path,
)
AS_JSON = inspect.Parameter(
    "as_json",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        False,
        "--json",
        help="Print the outputs as JSON (for scripts) instead of a summary.",
        rich_help_panel=OUTPUT,
    ),
    annotation=bool,
)


STORAGE = [
    inspect.Parameter(
        "storage_option",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=list[str],
        default=typer.Option(
            None,
            "--storage-option",
            help="fsspec option of the store's protocol, KEY=VALUE (repeatable), e.g. "
            "endpoint_url=http://127.0.0.1:9000; added to a config's storage options.",
            metavar="KEY=VALUE",
            rich_help_panel=RUNTIME_PANEL,
        ),
    ),
    inspect.Parameter(
        "forward_env",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=list[str],
        default=typer.Option(
            None,
            "--forward-env",
            help="Environment variable to set on every Ray and Dask worker (repeatable).",
            metavar="NAME",
            rich_help_panel=RUNTIME_PANEL,
        ),
    ),
]


def storage_options(values: dict[str, Any], base: StorageSection | None = None) -> StorageSection:
    """``--storage-option`` / ``--forward-env`` applied over ``base``, checked by the config section."""
    storage = (base or StorageSection()).model_dump()
    storage["options"].update(parse_storage_option(text) for text in values["storage_option"] or [])
    storage["forward_env"] += values["forward_env"] or []
    try:
        return StorageSection.model_validate(storage)
    except ValidationError as exc:
        problem = exc.errors()[0]
        flag = "--forward-env" if problem["loc"][0] == "forward_env" else "--storage-option"
        raise InputError(f"{flag} (or the config's storage table): {problem['msg']}") from None


def cluster_options(
    values: dict[str, Any], ctx: typer.Context, base: ClusterSection | None = None
) -> ClusterSection:
    """The runtime options given on the command line, applied over ``base`` (default: embedded local)."""
    given = collect(RUNTIME, values, ctx)
    try:
        return (base or ClusterSection()).override(given)
    except ValueError as exc:
        raise InputError(f"runtime options: {exc}") from None


def show_json(outputs: Any) -> None:
    """The machine output of every command (``--json``): its outputs as JSON."""
    typer.echo(json.dumps(outputs, indent=1, default=str))


def _standalone(kind: str, fields: list[CliField]) -> list[CliField]:
    """``fields`` with the standalone defaults of ``kind`` and what ``--overwrite`` replaces."""
    defaults = STANDALONE_DEFAULTS.get(kind, {})
    out = []
    for f in fields:
        top = str(f.path[0])
        if len(f.path) == 1 and top in defaults:
            f = dataclasses.replace(f, default=defaults[top])
        if top == "overwrite" and kind in REPLACES:
            f = dataclasses.replace(f, help=f"Replace {REPLACES[kind]}.")
        out.append(f)
    return out


def _by_panel(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """``params`` in help order: arguments, then the panels data, method, runtime, output."""

    def rank(param: inspect.Parameter) -> int:
        panel = getattr(param.default, "rich_help_panel", None)
        return PANEL_ORDER.index(panel) if panel in PANEL_ORDER else -1

    return sorted(params, key=rank)


def stage_command(
    app: typer.Typer,
    kind: str,
    *,
    help: str,
    name: str | None = None,
    include: set[str] | None = None,
    fixed: dict[str, Any] | None = None,
    creates_store: bool = False,
    runtime: bool = True,
    show: Callable[[dict[str, Any]], None] | None = None,
) -> list[CliField]:
    """Add the command of stage ``kind`` to ``app``, generated from the stage's params model.

    Building the command imports only the params model (:func:`gexplain.pipelines.stages.get_params`);
    the stage's code is imported when the command runs.

    Parameters
    ----------
    app
        The typer app (or group) to add to.
    kind
        Stage kind (:data:`gexplain.pipelines.stages.REGISTRY`).
    help
        Command help.
    name
        Command name (default ``kind``).
    include
        Only these top-level fields (e.g. those of one simulator).
    fixed
        Values set by the command itself (e.g. ``simulator="cohort"``).
    creates_store
        The store is created (``--out`` and ``--overwrite``) rather than read (a STORE argument).
    runtime
        The command computes on Ray or Dask and takes the runtime options (``--cluster``, ...).
    show
        Prints the outputs for people (a summary); ``--json`` prints them as JSON instead.

    Returns
    -------
    list of CliField
        The generated options (for tests and docs).
    """
    model = get_params(kind)
    fields = _standalone(kind, cli_fields(model, include=include))
    command = name or kind
    head = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    if creates_store:
        head.append(
            inspect.Parameter(
                "out",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    ...,
                    "--out",
                    "-o",
                    help="Store to create: a path or a URL (memory://, s3://, gs://).",
                    metavar="STORE",
                    rich_help_panel=OUTPUT,
                ),
                annotation=str,
            )
        )
        head.append(
            inspect.Parameter(
                "overwrite",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    False, "--overwrite", help=f"Replace {REPLACES[kind]}.", rich_help_panel=OUTPUT
                ),
                annotation=bool,
            )
        )
    else:
        head.append(
            inspect.Parameter(
                "store",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Argument(..., help="Store path or URL.", metavar="STORE"),
                annotation=str,
            )
        )
    tail = [RUN_DIR, *(option_parameters(RUNTIME) if runtime else []), *STORAGE, AS_JSON]
    what = f"gexplain {command}" if name is None or kind == command else f"gexplain {kind} {command}"

    def _command(**values: Any) -> None:
        ctx: typer.Context = values.pop("ctx")
        raw = standalone_values(kind, {**collect(fields, values, ctx), **(fixed or {})})
        params = validate_params(model, raw, what)
        cluster = cluster_options(values, ctx) if runtime else ClusterSection()
        store = check_store_url(
            values["out"] if creates_store else values["store"], "--out" if creates_store else "STORE"
        )
        if creates_store:
            check_writable(store, "--out")
        outputs = run_stage(
            kind,
            params,
            store,
            run_dir=Path(values["run_dir"]),
            cluster=cluster,
            overwrite=bool(values.get("overwrite", True)),
            storage=storage_options(values),
        )
        if values["as_json"] or show is None:
            show_json(outputs)
        else:
            show(outputs)

    _command.__signature__ = inspect.Signature(_by_panel([*head, *option_parameters(fields), *tail]))  # type: ignore[attr-defined]
    _command.__doc__ = help
    _command.__name__ = command
    app.command(command, cls=command_class(_command, fields))(_command)
    return fields
