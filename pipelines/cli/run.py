"""``gexplain run CONFIG``: execute a run config's stages."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from pipelines.cli.generate import RUNTIME, check_writable, cluster_options
from pipelines.cli.options import option_parameters
from pipelines.config import parse_config
from pipelines.environment import StorageSection, parse_storage_option
from pipelines.notify import NotifySection
from pipelines.runner import run_config
from storage.errors import InputError


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""

    def run(**values: Any) -> None:
        ctx: typer.Context = values.pop("ctx")
        cfg = parse_config(values["config"])
        cfg.cluster = cluster_options(values, ctx, base=cfg.cluster)
        storage = cfg.storage.model_dump()
        storage["options"].update(parse_storage_option(text) for text in values["storage_option"] or [])
        storage["forward_env"] += values["forward_env"] or []
        notify = cfg.notify.model_dump()
        if values["hook_url"] is not None:
            notify["hook_url"] = values["hook_url"]
        try:  # the config sections' own checks, for options given here too
            cfg.storage = StorageSection.model_validate(storage)
            cfg.notify = NotifySection.model_validate(notify)
        except ValidationError as exc:
            problem = exc.errors()[0]
            flag = {"hook_url": "--hook-url", "forward_env": "--forward-env"}.get(
                str(problem["loc"][0]), "--storage-option"
            )
            raise InputError(f"{flag} (or the config's storage/notify tables): {problem['msg']}") from None
        check_writable(cfg.run_dir, f"{cfg.path}: run.out")
        result = run_config(cfg, force=values["force"])
        typer.echo(f"run folder: {cfg.run_dir}")
        typer.echo(f"manifest:   {cfg.run_dir / 'manifest.json'}")
        typer.echo(f"store:      {cfg.store_url}")
        for stage in result["stages"]:
            outputs = stage.get("outputs") or {}
            for key, value in outputs.items():
                if isinstance(value, str) and key in ("report", "path", "table", "tables"):
                    typer.echo(f"{stage['name']}.{key}: {value}")

    keyword = inspect.Parameter.KEYWORD_ONLY
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("ctx", keyword, annotation=typer.Context),
            inspect.Parameter(
                "config",
                keyword,
                annotation=Path,
                default=typer.Argument(
                    ..., help="Run config (TOML), e.g. pipelines/configs/quickstart.toml."
                ),
            ),
            inspect.Parameter(
                "force",
                keyword,
                annotation=bool,
                default=typer.Option(False, "--force", help="Rerun every stage even if done."),
            ),
            *option_parameters(RUNTIME),
            inspect.Parameter(
                "storage_option",
                keyword,
                annotation=list[str],
                default=typer.Option(
                    None,
                    "--storage-option",
                    help="fsspec option of the store's protocol, KEY=VALUE (repeatable); added to the "
                    "config's [storage] options.",
                ),
            ),
            inspect.Parameter(
                "forward_env",
                keyword,
                annotation=list[str],
                default=typer.Option(
                    None,
                    "--forward-env",
                    help="Environment variable to set on every Ray and Dask worker (repeatable).",
                ),
            ),
            inspect.Parameter(
                "hook_url",
                keyword,
                annotation=str,
                default=typer.Option(
                    None,
                    "--hook-url",
                    help="Webhook that gets the run summary as JSON on success and failure.",
                ),
            ),
        ]
    )
    run.__doc__ = (
        "Run the configured stages in order; finished stages with unchanged parameters are skipped. "
        "Runtime options given here override the config's \\[cluster]."
    )
    app.command("run")(run)
