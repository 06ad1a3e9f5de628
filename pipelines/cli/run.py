"""``gexplain run CONFIG``: execute a run config's stages."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.config import parse_config
from pipelines.runner import run_config


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""

    @app.command("run")
    def run(
        config: Path = typer.Argument(..., help="Run config (TOML), e.g. pipelines/configs/quickstart.toml."),
        force: bool = typer.Option(False, "--force", help="Rerun every stage even if done."),
        cluster: str = typer.Option(None, "--cluster", help="Ray address: 'auto' or 'ray://host:10001'."),
        dask: str = typer.Option(None, "--dask", help="Dask scheduler address, e.g. tcp://host:8786."),
    ) -> None:
        """Run the configured stages in order; finished stages with unchanged parameters are skipped."""
        cfg = parse_config(config)
        if cluster is not None:
            cfg.cluster.address = cluster
        if dask is not None:
            cfg.cluster.dask_address = dask
        result = run_config(cfg)
        typer.echo(f"run folder: {cfg.run_dir}")
        typer.echo(f"manifest:   {cfg.run_dir / 'manifest.json'}")
        typer.echo(f"store:      {cfg.store_url}")
        for stage in result["stages"]:
            outputs = stage.get("outputs") or {}
            for key, value in outputs.items():
                if isinstance(value, str) and key in ("report", "path", "table", "tables"):
                    typer.echo(f"{stage['name']}.{key}: {value}")
