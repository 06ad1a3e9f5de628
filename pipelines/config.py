"""Run configuration: a TOML file describing the store, the cluster and the stages.

Example::

    [run]
    name = "quickstart"
    out = "runs/quickstart"        # run folder, relative to the current directory
    store = "cohort.zarr"          # relative to the run folder, or absolute, or s3://...
    seed = 0

    [cluster]
    address = ""                   # "" embedded local, "auto", "ray://host:10001"
    dask_address = ""              # "" local threads, "tcp://scheduler:8786"

    [[stage]]
    kind = "simulate"
    [stage.params]
    simulator = "cohort"

Unknown keys anywhere are errors that name the key and the keys allowed there.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from gexplain.cluster.runtime import DASK_ON_RAY, ray_address_kind
from gexplain.pipelines.environment import StorageSection
from gexplain.pipelines.notify import NotifySection
from gexplain.pipelines.params import Name, StageParams, StoreUrl, cli, format_error
from gexplain.pipelines.stages import get_stage
from gexplain.storage.errors import InputError
from gexplain.storage.paths import is_local
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

EXAMPLE_CONFIG = Path(__file__).parent / "configs" / "quickstart.toml"
"""The example run config as installed (package data), wherever gexplain was installed from."""

DASK_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSection(_Strict):
    """The ``[run]`` table."""

    name: Name = Field(description="Run name, used in result names.")
    out: str = Field(description="Run folder (manifest, tables, plots).")
    store: StoreUrl = Field(description="Expression store: relative to the run folder, absolute, or a URL.")
    seed: int = Field(0, description="Seed of every random draw of the run.")


def route_cluster_address(address: str) -> tuple[str | None, str | None]:
    """Split a cluster address into (Ray address, Dask address): the one rule for cluster addresses.

    Parameters
    ----------
    address
        ``auto``, ``host:port`` or ``ray://host:port`` (Ray), ``tcp://host:8786`` or ``tls://...`` (a Dask
        scheduler), ``local`` or ``""`` (the embedded default).

    Returns
    -------
    tuple
        ``("", None)`` for the embedded default, ``(ray, None)`` or ``(None, dask)``.

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
            "'ray://host:10001' for Ray, 'tcp://host:8786' for a Dask scheduler, or 'local' for the "
            "embedded runtime"
        ) from None
    return address, None


class ClusterSection(_Strict):
    """The ``[cluster]`` table; also the runtime options of every CLI command that computes."""

    address: str = Field(
        "",
        description="Cluster to run on: 'auto', 'host:port' or 'ray://host:10001' (Ray), 'tcp://host:8786' (a Dask "
        "scheduler, same as dask_address), '' or 'local' (embedded).",
        json_schema_extra=cli("--cluster"),
    )
    dask_address: str = Field(
        "",
        description="Dask scheduler address, e.g. 'tcp://host:8786'; 'ray' runs Dask's work as tasks on the "
        "run's Ray cluster (Dask-on-Ray); '' uses local threads.",
        json_schema_extra=cli("--dask"),
    )
    num_cpus: int = Field(0, ge=0, description="CPUs of the embedded runtime (0 = all cores).")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of the embedded Ray (unset = autodetect).")

    @model_validator(mode="before")
    @classmethod
    def _route(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("address"), str):
            try:
                ray, dask = route_cluster_address(data["address"])
            except InputError as exc:
                raise ValueError(str(exc)) from None
            if dask is not None:
                if data.get("dask_address") not in (None, "", dask):
                    raise ValueError(
                        f"address {dask!r} is a Dask scheduler but dask_address is {data['dask_address']!r}; "
                        "give the scheduler once"
                    )
                data = {**data, "dask_address": dask}
            data = {**data, "address": ray or ""}
        return data

    @field_validator("dask_address")
    @classmethod
    def _dask_address(cls, value: str) -> str:
        if value and value != DASK_ON_RAY and not value.startswith(DASK_SCHEMES):
            raise ValueError(
                "must be '' (local threads), 'ray' (Dask-on-Ray) or a scheduler address such as 'tcp://host:8786'"
            )
        return value

    def override(self, given: dict[str, Any]) -> ClusterSection:
        """This section with the runtime options given on the command line applied.

        A Dask address given as ``--cluster`` replaces only the Dask scheduler, a Ray address only Ray.
        """
        merged = self.model_dump()
        if "address" in given:
            ray, dask = route_cluster_address(given["address"])
            if ray is not None:
                merged["address"] = ray
            if dask is not None:
                merged["dask_address"] = dask
        merged.update({k: v for k, v in given.items() if k != "address"})
        return ClusterSection.model_validate(merged)


class StageEntry(_Strict):
    """One ``[[stage]]`` table."""

    kind: str
    name: Name | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class RawConfig(_Strict):
    run: RunSection
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    storage: StorageSection = Field(default_factory=StorageSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    stage: list[StageEntry] = Field(default_factory=list)


class StageSpec(BaseModel):
    """A validated stage: its name, kind and parameters."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    kind: str
    params: StageParams


class RunConfig(BaseModel):
    """A validated run configuration with resolved paths."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: Path
    raw: dict[str, Any]
    run: RunSection
    cluster: ClusterSection
    storage: StorageSection = Field(default_factory=StorageSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    stages: list[StageSpec]
    run_dir: Path
    store_url: str


def _format_error(path: Path, where: str, exc: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        full = f"{where}.{loc}" if where else loc
        if err["type"] == "extra_forbidden":
            parent: type[BaseModel] | None = model
            for part in err["loc"][:-1]:
                field = parent.model_fields.get(str(part)) if parent else None
                ann = getattr(field, "annotation", None) if field else None
                parent = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            allowed = ", ".join(parent.model_fields) if parent else "see docs/cli.md"
            lines.append(f"unknown key '{full}' (allowed here: {allowed})")
        elif err["type"] == "missing":
            lines.append(f"missing key '{full}'")
        elif where:  # stage params: the same line as the CLI prints
            lines.append(f"{where}: {format_error(err)}")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"'{full}': {msg} (got {err.get('input')!r})")
    return f"{path}: invalid run config:\n  - " + "\n  - ".join(lines)


def parse_config(path: str | Path, *, base_dir: Path | None = None) -> RunConfig:
    """Read, validate and resolve a run config.

    Parameters
    ----------
    path
        The TOML file.
    base_dir
        Directory that a relative ``run.out`` is resolved against (default: the current directory).

    Raises
    ------
    InputError
        On unreadable TOML, unknown keys, bad values or unknown stage kinds; the message names the
        file and the key.
    """
    cfg_path = Path(path)
    if not cfg_path.is_file():
        raise InputError(
            f"config file {cfg_path} not found; give the path of a run config (TOML), e.g. a copy of "
            f"the example installed with gexplain: {EXAMPLE_CONFIG}"
        )
    raw_bytes = cfg_path.read_bytes()
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw_bytes[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{cfg_path}: not a text file (byte {exc.start}, line {line}, is not UTF-8); a run config is "
            "a UTF-8 TOML file such as pipelines/configs/quickstart.toml"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{cfg_path}: not valid TOML: {exc}") from exc
    try:
        raw = RawConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(_format_error(cfg_path, "", exc, RawConfig)) from exc
    stages: list[StageSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw.stage):
        where = f"stage[{i}]"
        stage = get_stage(entry.kind)
        try:
            params = stage.params.model_validate(entry.params)
        except ValidationError as exc:
            raise InputError(_format_error(cfg_path, f"{where}.params", exc, stage.params)) from exc
        name = entry.name or entry.kind
        if name in seen:
            raise InputError(
                f"{cfg_path}: {where}: stage name '{name}' is used twice; give each stage a unique name"
            )
        seen.add(name)
        stages.append(StageSpec(name=name, kind=entry.kind, params=params))
    run_dir = Path(raw.run.out)
    if not run_dir.is_absolute():
        run_dir = (base_dir or Path.cwd()) / run_dir
    store = raw.run.store
    if is_local(store) and not Path(store).is_absolute():
        store = str(run_dir / store)
    return RunConfig(
        path=cfg_path,
        raw=data,
        run=raw.run,
        cluster=raw.cluster,
        storage=raw.storage,
        notify=raw.notify,
        stages=stages,
        run_dir=run_dir,
        store_url=store,
    )
