"""Where a run's work happens: the ``[storage]`` config section and the worker environment.

:func:`prepare` runs before anything else of a run: it refuses a ``run.out`` URL, registers the
store's storage options process-wide (:mod:`gexplain.storage.options`), and hands the variables that carry
them, plus the opt-in ``forward_env`` variables, to every Ray and Dask worker of the run
(:func:`gexplain.cluster.runtime.set_default_worker_env`).

Example::

    [storage]
    options = { endpoint_url = "http://minio:9000", client_kwargs = { region_name = "eu-west-1" } }
    forward_env = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gexplain.cluster.runtime import set_default_worker_env
from gexplain.storage.errors import InputError
from gexplain.storage.options import forwarded_environment, refresh_from_environment, set_storage_options
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from gexplain.pipelines.config import RunConfig

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StorageSection(BaseModel):
    """The ``[storage]`` table: how every process opens an object-store ``run.store``."""

    model_config = ConfigDict(extra="forbid")

    options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options of the store's protocol, e.g. endpoint_url, anon, profile, client_kwargs.",
    )
    forward_env: list[str] = Field(
        default_factory=list,
        description="Names of environment variables of this process to set on every Ray and Dask worker.",
    )

    @field_validator("forward_env")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"not environment variable names: {bad}")
        return value


def parse_storage_option(text: str) -> tuple[str, Any]:
    """Parse one ``--storage-option KEY=VALUE`` (VALUE: true/false, a number, or a string).

    Raises
    ------
    InputError
        When ``text`` has no ``=`` or an empty key, naming the option and the form.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(
            f"--storage-option {text!r}: use KEY=VALUE, e.g. --storage-option endpoint_url=http://host:9000"
        )
    value: Any = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
    return key.strip(), value


def prepare(config: RunConfig) -> dict[str, str]:
    """Check where the run writes and set up the storage options and worker environment.

    Parameters
    ----------
    config
        A validated run config.

    Returns
    -------
    dict
        The environment every worker of the run gets (variable names -> values).

    Raises
    ------
    InputError
        When ``run.out`` is a URL, storage options do not fit the store, or a forwarded variable
        is not set.
    """
    if "://" in config.run.out:
        raise InputError(
            f"{config.path}: run.out {config.run.out!r} is a URL; run.out must be a local folder. With the store "
            "on object storage the run state (manifest, tables, report) is also kept beside the store, at "
            f"{config.store_url}.runs/{config.run.name}/, so a fresh machine resumes from it"
        )
    return configure_workers(config.store_url, getattr(config, "storage", None) or StorageSection())


def configure_workers(store_url: str, storage: StorageSection) -> dict[str, str]:
    """Register ``storage``'s options for ``store_url`` and give every later runtime's workers them.

    Any command that opens a store and starts a runtime calls this first (``gexplain run`` does it
    through :func:`prepare`); the runtime options of the other commands can build a
    :class:`StorageSection` from ``--storage-option`` / ``--forward-env`` and call it too.

    Returns
    -------
    dict
        The environment every Ray and Dask worker gets.
    """
    env = set_storage_options(store_url, storage.options)
    env.update(forwarded_environment(storage.forward_env))
    set_default_worker_env(env, refresh_from_environment if env else None)
    return env
