"""One stage run on its own, outside a run config: what ``gexplain <stage>`` and the notebook API
(:mod:`gexplain`) both call, so that they run exactly what ``gexplain run`` runs.

The runner of a config owns what its manifest records and replaces it on a rerun (it turns each
stage's ``overwrite`` on, :mod:`gexplain.pipelines.runner`). A stage run on its own owns nothing:
:data:`STANDALONE_DEFAULTS` makes replacing opt-in there, and :data:`REPLACES` says what an
``overwrite`` replaces (the CLI's ``--overwrite`` help and the API's docstrings quote it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gexplain.pipelines.config import ClusterSection
from gexplain.pipelines.environment import StorageSection, configure_workers
from gexplain.pipelines.params import StageParams
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.stages import StageContext, get_stage
from gexplain.storage.errors import InputError
from gexplain.storage.paths import is_local

STANDALONE_DEFAULTS: dict[str, dict[str, Any]] = {"explain": {"overwrite": False}}
"""Params defaults that differ when a stage runs on its own (CLI command, API call) rather than
under the runner: a standalone ``explain`` keeps a same-named result unless told to replace it."""

REPLACES: dict[str, str] = {
    "train": "the model set <store>/models/<model_set> of the same name",
    "explain": "the result <store>/results/explain/<name> of the same name, even one made with other parameters",
    "simulate": "the store at --out, once the new one is complete",
    "ingest": "the store at --out, once the new one is complete",
}
"""What ``overwrite`` replaces, per stage kind."""


def standalone_values(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """Raw params ``values`` with the standalone defaults of ``kind`` filled in where not given."""
    return {**STANDALONE_DEFAULTS.get(kind, {}), **values}


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
    progress: Progress | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run one stage exactly as ``gexplain run`` does: same ``run``, same runtime, same storage
    options for the driver and every worker.

    Parameters
    ----------
    kind
        Stage kind (:data:`gexplain.pipelines.stages.REGISTRY`).
    params
        The stage's validated params.
    store
        Store path or URL.
    run_dir
        Folder for tables and plots.
    cluster
        Runtime: embedded local (default section) or the addresses of existing clusters.
    overwrite
        For stages that create the store: replace an existing one.
    storage
        fsspec options and environment forwarded to workers.
    progress
        Progress display (default: bars on a terminal).
    seed
        The run seed a stage falls back to when its params set none.

    Returns
    -------
    dict
        The stage's outputs (as the manifest records them).
    """
    check_writable(str(run_dir), "--run-dir")
    if storage is not None and (storage.options or storage.forward_env):
        configure_workers(store, storage)
    from gexplain.cluster.runtime import start_runtime  # Ray and Dask only once a stage runs

    runtime = start_runtime(
        cluster.address,
        dask_address=cluster.dask_address,
        num_cpus=cluster.num_cpus or None,
        num_gpus=cluster.num_gpus,
    )
    own_progress = progress is None
    progress = Progress() if progress is None else progress
    ctx = StageContext(
        run_dir=run_dir,
        store_url=store,
        seed=seed,
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
        if own_progress:
            progress.close()
        runtime.shutdown()
