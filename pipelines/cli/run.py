"""``gexplain run CONFIG``: execute a run config's stages."""

from __future__ import annotations

from pathlib import Path

import typer

from cluster.runtime import ray_address_kind
from pipelines.config import parse_config
from pipelines.environment import parse_storage_option
from pipelines.runner import run_config
from storage.errors import InputError

DASK_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")


def route_cluster_address(address: str) -> tuple[str | None, str | None]:
    """Split a ``--cluster`` address into (ray address, dask address).

    Parameters
    ----------
    address
        ``auto``, ``host:port`` or ``ray://host:port`` (Ray), ``tcp://host:8786`` or ``tls://...``
        (Dask scheduler), ``local`` (the embedded default).

    Raises
    ------
    InputError
        For anything else, naming ``--cluster`` and the accepted forms.
    """
    if address in ("", "local"):
        return "", None
    if address.startswith(DASK_SCHEMES):
        return None, address
    try:
        ray_address_kind(address)
    except ValueError:
        raise InputError(
            f"--cluster {address!r} is not an address gexplain understands; use 'auto', 'host:port' or "
            "'ray://host:10001' for Ray, 'tcp://host:8786' for a Dask scheduler, or 'local' for the embedded runtime"
        ) from None
    return address, None


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""

    @app.command("run")
    def run(
        config: Path = typer.Argument(..., help="Run config (TOML), e.g. pipelines/configs/quickstart.toml."),
        force: bool = typer.Option(False, "--force", help="Rerun every stage even if done."),
        cluster: str = typer.Option(
            None,
            "--cluster",
            help="Cluster to run on: 'auto' or 'ray://host:10001' (Ray), 'tcp://host:8786' (Dask scheduler), "
            "'local' (embedded). Overrides the config's [cluster].",
        ),
        dask: str = typer.Option(None, "--dask", help="Dask scheduler address, e.g. tcp://host:8786."),
        storage_option: list[str] = typer.Option(
            None,
            "--storage-option",
            help="fsspec option of the store's protocol, KEY=VALUE (repeatable); added to the config's [storage] options.",
        ),
        forward_env: list[str] = typer.Option(
            None,
            "--forward-env",
            help="Environment variable to set on every Ray and Dask worker (repeatable).",
        ),
        hook_url: str = typer.Option(
            None, "--hook-url", help="Webhook that gets the run summary as JSON on success and failure."
        ),
    ) -> None:
        """Run the configured stages in order; finished stages with unchanged parameters are skipped."""
        cfg = parse_config(config)
        if cluster is not None:
            ray_address, dask_address = route_cluster_address(cluster)
            if ray_address is not None:
                cfg.cluster.address = ray_address
            if dask_address is not None:
                cfg.cluster.dask_address = dask_address
        if dask is not None:
            cfg.cluster.dask_address = dask
        cfg.storage.options.update(parse_storage_option(text) for text in storage_option or [])
        cfg.storage.forward_env.extend(forward_env or [])
        if hook_url is not None:
            if hook_url and not hook_url.startswith(("http://", "https://")):
                raise InputError(f"--hook-url {hook_url!r}: use an http:// or https:// URL")
            cfg.notify.hook_url = hook_url
        result = run_config(cfg, force=force)
        typer.echo(f"run folder: {cfg.run_dir}")
        typer.echo(f"manifest:   {cfg.run_dir / 'manifest.json'}")
        typer.echo(f"store:      {cfg.store_url}")
        for stage in result["stages"]:
            outputs = stage.get("outputs") or {}
            for key, value in outputs.items():
                if isinstance(value, str) and key in ("report", "path", "table", "tables"):
                    typer.echo(f"{stage['name']}.{key}: {value}")
