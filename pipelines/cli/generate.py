"""CLI commands generated from params models: each stage's command runs ``stage.run`` as
``gexplain run`` does, with the runtime options every computing command shares (:data:`RUNTIME`).

The options of a stage come from its params model (:mod:`gexplain.pipelines.cli.options`); only those given
on the command line reach the model, so a bad value fails with the same message as in a config.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from gexplain.cluster.runtime import start_runtime
from gexplain.pipelines.cli.options import CliField, cli_fields, collect, command_class, option_parameters
from gexplain.pipelines.config import ClusterSection
from gexplain.pipelines.environment import StorageSection, configure_workers, parse_storage_option
from gexplain.pipelines.params import StageParams, check_store_url, validate_params
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.stages import StageContext, get_stage
from gexplain.storage.errors import InputError
from gexplain.storage.paths import is_local
from pydantic import ValidationError

# -- runtime options: the same for every command that computes ---------------------------------------

RUNTIME = cli_fields(ClusterSection)
RUN_DIR = inspect.Parameter(
    "run_dir",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        Path("."), "--run-dir", help="Run folder for tables, plots and reports (a run config's run.out)."
    ),
    annotation=Path,
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


def check_writable(path: str | Path, option: str) -> None:
    """Refuse (exit 2, before any work) a local output whose nearest existing folder cannot be written.

    The folder is probed by creating (and removing) a temporary file in it, so read-only file
    systems and missing permissions are both found, whoever runs the command.
    """
    if not is_local(str(path)):
        return
    parent = Path(path).absolute()
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InputError(
            f"{option} {path}: cannot write in {parent} ({exc.strerror or exc}); choose a folder you can write to"
        ) from None


def run_stage(
    kind: str,
    params: StageParams,
    store: str,
    *,
    run_dir: Path,
    cluster: ClusterSection,
    overwrite: bool = True,
    storage: StorageSection | None = None,
) -> dict[str, Any]:
    """Run one stage from the CLI exactly as ``gexplain run`` does: same ``run``, same runtime,
    same storage options for the driver and every worker."""
    check_writable(str(run_dir), "--run-dir")
    if storage is not None and (storage.options or storage.forward_env):
        configure_workers(store, storage)
    runtime = start_runtime(
        cluster.address,
        dask_address=cluster.dask_address,
        num_cpus=cluster.num_cpus or None,
        num_gpus=cluster.num_gpus,
    )
    progress = Progress()
    ctx = StageContext(
        run_dir=run_dir,
        store_url=store,
        seed=0,
        runtime=runtime,
        progress=progress,
        stage_name=kind,
        overwrite=overwrite,
    )
    try:
        with runtime.dask_scheduler():
            return get_stage(kind).run(ctx, params)
    except PermissionError as exc:
        raise InputError(
            f"cannot write {exc.filename}: permission denied; choose a writable folder"
        ) from None
    finally:
        progress.close()
        runtime.shutdown()


def show_json(outputs: dict[str, Any]) -> None:
    """Default output of a generated command: the stage's outputs as JSON."""
    typer.echo(json.dumps(outputs, indent=1, default=str))


def stage_command(
    app: typer.Typer,
    kind: str,
    *,
    name: str | None = None,
    help: str | None = None,
    include: set[str] | None = None,
    fixed: dict[str, Any] | None = None,
    creates_store: bool = False,
    show: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    extra: list[inspect.Parameter] | None = None,
) -> list[CliField]:
    """Add the command of stage ``kind`` to ``app``, generated from the stage's params model.

    Parameters
    ----------
    app
        The typer app (or group) to add to.
    kind
        Stage kind (:data:`gexplain.pipelines.stages.REGISTRY`).
    name
        Command name (default ``kind``).
    help
        Command help (default: the stage's description).
    include
        Only these top-level fields (e.g. those of one simulator).
    fixed
        Values set by the command itself (e.g. ``simulator="cohort"``).
    creates_store
        The store is created (``--out`` and ``--overwrite``) rather than read (a STORE argument).
    show
        Prints the outputs: ``show(outputs, extra_values)``; default JSON.
    extra
        Presentation-only parameters passed to ``show`` (e.g. ``--json``).

    Returns
    -------
    list of CliField
        The generated options (for tests and docs).
    """
    stage = get_stage(kind)
    fields = cli_fields(stage.params, include=include)
    command = name or kind
    head = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    store_help = "Store to create: a path or a URL (memory://, s3://, gs://)."
    if creates_store:
        head.append(
            inspect.Parameter(
                "out",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(..., "--out", "-o", help=store_help),
                annotation=str,
            )
        )
        head.append(
            inspect.Parameter(
                "overwrite",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    False, "--overwrite", help="Replace an existing store (once the new one is complete)."
                ),
                annotation=bool,
            )
        )
    else:
        head.append(
            inspect.Parameter(
                "store",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Argument(..., help="Store path or URL."),
                annotation=str,
            )
        )
    tail = [RUN_DIR, *option_parameters(RUNTIME), *STORAGE, *(extra or [])]
    extra_names = [p.name for p in extra or []]
    what = f"gexplain {command}" if name is None or kind == command else f"gexplain {kind} {command}"

    def _command(**values: Any) -> None:
        ctx: typer.Context = values.pop("ctx")
        raw = {**collect(fields, values, ctx), **(fixed or {})}
        params = validate_params(stage.params, raw, what)
        cluster = cluster_options(values, ctx)
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
        if show is None:
            show_json(outputs)
        else:
            show(outputs, {k: values[k] for k in extra_names})

    _command.__signature__ = inspect.Signature([*head, *option_parameters(fields), *tail])  # type: ignore[attr-defined]
    _command.__doc__ = help or stage.description
    _command.__name__ = command
    app.command(command, cls=command_class(_command, fields))(_command)
    return fields
