"""The stage registry: what a run config's ``kind`` names, and the context a stage runs in.

A stage is a small adapter: it validates its parameters (a pydantic model that forbids unknown
keys, :mod:`gexplain.pipelines.params`; its CLI command is generated from the same model), reads what it
needs from the store, calls pure Dataset-in/Dataset-out functions and writes
their results back. Stage modules are imported lazily, so a run only imports what it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gexplain.cluster.runtime import Runtime
from gexplain.pipelines.params import StageParams
from gexplain.pipelines.progress import Progress
from gexplain.storage.errors import InputError

__all__ = ["PARAMS", "REGISTRY", "Stage", "StageContext", "StageParams", "get_params", "get_stage"]


@dataclass
class StageContext:
    """What a running stage may use.

    Attributes
    ----------
    run_dir
        The run folder (tables, plots, the manifest).
    store_url
        The run's expression store (path or fsspec URL).
    seed
        The run's seed; stages derive every random draw from it.
    runtime
        Ray/Dask handles; call ``runtime.ensure_ray()`` before using Ray.
    progress
        Progress reporting.
    stage_name
        This stage's name in the config.
    overwrite
        A stage that creates the store (simulate, ingest) may replace an existing one. True under
        the runner (a rerun replaces what the run owns); the CLI's ``--overwrite`` otherwise.
    """

    run_dir: Path
    store_url: str
    seed: int
    runtime: Runtime
    progress: Progress
    stage_name: str = ""
    overwrite: bool = True


@dataclass(frozen=True)
class Stage:
    """A registry entry: the kind, its parameter model and its run function.

    ``run(ctx, params)`` returns a small JSON-serialisable dict of outputs for the manifest.
    ``inputs(params)``, when given, lists the files the stage reads from outside the store; their
    size and modification time join the stage fingerprint, so changed input files rerun it.
    """

    kind: str
    params: type[StageParams]
    run: Callable[[StageContext, Any], dict[str, Any]]
    description: str = ""
    inputs: Callable[[Any], list[str]] | None = None


REGISTRY: dict[str, str] = {
    "simulate": "gexplain.pipelines.simulate.stage",
    "ingest": "gexplain.pipelines.ingest_stage",
    "normalize": "gexplain.pipelines.normalize.stage",
    "de": "gexplain.pipelines.de.stage",
    "train": "gexplain.pipelines.models.stage",
    "explain": "gexplain.pipelines.explain.stage",
    "evaluate": "gexplain.pipelines.evaluate.stage",
    "report": "gexplain.pipelines.report.stage",
}


PARAMS: dict[str, str] = {
    "simulate": "gexplain.pipelines.simulate.stage:SimulateParams",
    "ingest": "gexplain.pipelines.ingest_stage:IngestParams",
    "normalize": "gexplain.pipelines.normalize.stage:NormalizeParams",
    "de": "gexplain.pipelines.de.stage:DeParams",
    "train": "gexplain.pipelines.models.params:TrainStageParams",
    "explain": "gexplain.pipelines.explain.params:ExplainParams",
    "evaluate": "gexplain.pipelines.evaluate.params:EvaluateParams",
    "report": "gexplain.pipelines.report.stage:ReportParams",
}
"""Where each stage's params model lives (``module:Class``): a module that imports neither torch nor
Ray, so the CLI's help and the notebook API's signatures are built without them. The stage's
``STAGE.params`` is this same class (``tests/test_cli_startup.py`` checks it)."""


def _check_kind(kind: str) -> None:
    if kind not in REGISTRY:
        raise InputError(f"unknown stage kind '{kind}'; known kinds: {', '.join(REGISTRY)}")


def get_params(kind: str) -> type[StageParams]:
    """Return the params model of stage ``kind`` without importing the stage's code.

    Raises
    ------
    InputError
        For an unknown kind (lists the known ones).
    """
    _check_kind(kind)
    module, name = PARAMS[kind].split(":")
    model: type[StageParams] = getattr(importlib.import_module(module), name)
    return model


def get_stage(kind: str) -> Stage:
    """Return the registered stage for ``kind``.

    Raises
    ------
    InputError
        For an unknown kind (lists the known ones).
    """
    _check_kind(kind)
    module = importlib.import_module(REGISTRY[kind])
    stage: Stage = module.STAGE
    return stage
