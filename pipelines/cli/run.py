"""``gexplain run CONFIG``: execute a run config's stages."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer
from gexplain.pipelines.cli.generate import (
    AS_JSON,
    RUNTIME,
    STORAGE,
    check_writable,
    cluster_options,
    show_json,
    storage_options,
)
from gexplain.pipelines.cli.options import option_parameters
from gexplain.pipelines.cli.panels import OUTPUT
from gexplain.pipelines.cli.panels import RUNTIME as RUNTIME_PANEL
from gexplain.pipelines.cli.show import summary
from gexplain.pipelines.config import EXAMPLE_CONFIG, parse_config
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
        if values["as_json"]:
            show_json(result)
            return
        rows: list[tuple[str, Any]] = [
            ("run folder", cfg.run_dir),
            ("manifest", cfg.run_dir / "manifest.json"),
            ("store", cfg.store_url),
        ]
        for stage in result["stages"]:
            outputs = stage.get("outputs") or {}
            for key, value in outputs.items():
                if isinstance(value, str) and key in ("report", "path", "table", "tables"):
                    rows.append((f"{stage['name']}.{key}", value))
        summary("run", rows)

    keyword = inspect.Parameter.KEYWORD_ONLY
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("ctx", keyword, annotation=typer.Context),
            inspect.Parameter(
                "config",
                keyword,
                annotation=Path,
                default=typer.Argument(
                    ...,
                    help=f"Run config (TOML), e.g. a copy of the example installed with gexplain "
                    f"({EXAMPLE_CONFIG.name} in the gexplain.pipelines package; a missing CONFIG's message gives its path).",
                    metavar="CONFIG",
                ),
            ),
            inspect.Parameter(
                "force",
                keyword,
                annotation=bool,
                default=typer.Option(
                    False, "--force", help="Rerun every stage even if done.", rich_help_panel=OUTPUT
                ),
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
                    metavar="URL",
                    rich_help_panel=RUNTIME_PANEL,
                ),
            ),
            AS_JSON,
        ]
    )
    run.__doc__ = (
        "Run the configured stages in order; finished stages with unchanged parameters are skipped. "
        "Runtime options given here override the config's \\[cluster]."
    )
    app.command("run")(run)
