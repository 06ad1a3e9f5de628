"""``gexplain run CONFIG``: execute a run config's stages."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer
from gexplain.pipelines.cli.generate import RUNTIME, STORAGE, check_writable, cluster_options, storage_options
from gexplain.pipelines.cli.options import option_parameters
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.notify import NotifySection
from gexplain.pipelines.runner import run_config
from gexplain.storage.errors import InputError
from pydantic import ValidationError


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""

    def run(**values: Any) -> None:
        ctx: typer.Context = values.pop("ctx")
        cfg = parse_config(values["config"])
        cfg.cluster = cluster_options(values, ctx, base=cfg.cluster)
        cfg.storage = storage_options(values, base=cfg.storage)
        if values["hook_url"] is not None:
            try:  # the config section's own check
                cfg.notify = NotifySection.model_validate(
                    {**cfg.notify.model_dump(), "hook_url": values["hook_url"]}
                )
            except ValidationError as exc:
                raise InputError(f"--hook-url: {exc.errors()[0]['msg']}") from None
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
            *STORAGE,
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
