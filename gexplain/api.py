"""The notebook API: one function per stage, taking a store and the stage's parameters as keywords.

Each function runs its stage exactly as ``gexplain <stage>`` and ``gexplain run`` do
(:func:`gexplain.pipelines.standalone.run_stage`): the parameters are validated by the stage's own
params model (same names, defaults and checks as the CLI options and the config keys; see each
function's ``help()``, generated from that model), the runtime (embedded Ray and Dask, or an
existing cluster with ``cluster=``) is started and stopped inside the call, and progress is shown
while it runs. Each returns what a notebook wants next: the store as an :class:`xarray.Dataset`,
a result as a Dataset or a :class:`pandas.DataFrame`, or a file's path.

A stage run on its own owns nothing, so it replaces nothing unless told (``overwrite=True``),
unlike the runner of a config (:data:`gexplain.pipelines.standalone.STANDALONE_DEFAULTS`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr
from pydantic_core import PydanticUndefined

from gexplain.pipelines.config import ClusterSection
from gexplain.pipelines.environment import StorageSection
from gexplain.pipelines.params import check_store_url, validate_params
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.stages import get_params
from gexplain.pipelines.standalone import STANDALONE_DEFAULTS, run_stage, standalone_values
from gexplain.storage.errors import InputError
from gexplain.storage.store import open_store, read_result

__all__ = ["de", "evaluate", "explain", "export", "ingest", "normalize", "report", "run", "simulate", "train"]

Cluster = str | Mapping[str, Any] | None
"""Where a stage runs: None (embedded local Ray + Dask), an address (``"auto"``, ``"host:6379"``,
``"ray://host:10001"``, ``"tcp://host:8786"`` for Dask) or the ``[cluster]`` table as a dict."""


def _cluster(cluster: Cluster) -> ClusterSection:
    if cluster is None:
        return ClusterSection()
    given = {"address": cluster} if isinstance(cluster, str) else dict(cluster)
    try:
        return ClusterSection().override(given)
    except ValueError as exc:
        raise InputError(f"cluster={cluster!r}: {exc}") from None


def _call(
    kind: str,
    store: str | Path,
    params: Mapping[str, Any],
    *,
    run_dir: str | Path,
    cluster: Cluster,
    progress: bool,
    storage_options: Mapping[str, Any] | None,
    overwrite: bool = True,
    what: str | None = None,
) -> dict[str, Any]:
    """Validate ``params`` with the stage's model and run the stage; return its outputs."""
    model = get_params(kind)
    validated = validate_params(model, standalone_values(kind, dict(params)), what or f"gexplain.{kind}()")
    url = check_store_url(str(store), "store")
    shown = Progress(enabled=True if progress else False)
    try:
        return run_stage(
            kind,
            validated,
            url,
            run_dir=Path(run_dir),
            cluster=_cluster(cluster),
            overwrite=overwrite,
            storage=StorageSection(options=dict(storage_options or {})),
            progress=shown,
        )
    finally:
        shown.close()


def _options(url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Open ``url`` with ``storage_options`` from now on in this process (as the stages do)."""
    if storage_options:
        from gexplain.pipelines.environment import configure_workers

        configure_workers(url, StorageSection(options=dict(storage_options)))


# -- the stages ---------------------------------------------------------------------------------


def simulate(
    out: str | Path,
    simulator: str = "cohort",
    *,
    overwrite: bool = False,
    run_dir: str | Path = ".",
    cluster: Cluster = None,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> xr.Dataset:
    """Simulate a cohort with known informative genes into a new store; return the store.

    Parameters
    ----------
    out
        Store to create: a path or a URL (``memory://``, ``s3://``, ``gs://``).
    simulator
        ``cohort`` (GTEx/TCGA-like), ``sabbatini`` (Sabbatini & Manganaro datasets A-D) or ``lda``.
    overwrite
        Replace an existing store at ``out`` once the new one is complete.
    run_dir, cluster, progress, storage_options
        As for every stage (see :func:`normalize`).
    **params
        The ``simulate`` stage's parameters (listed below).

    Returns
    -------
    xarray.Dataset
        The new store (dims ``sample``, ``gene``), opened lazily.
    """
    outputs = _call(
        "simulate",
        out,
        {**params, "simulator": simulator},
        run_dir=run_dir,
        cluster=cluster,
        progress=progress,
        storage_options=storage_options,
        overwrite=overwrite,
    )
    return open_store(outputs["store"])


def ingest(
    sources: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    overwrite: bool = False,
    run_dir: str | Path = ".",
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> xr.Dataset:
    """Ingest expression files (GCT, GDC downloads, CSV/TSV/Parquet, h5ad) into a new store.

    Parameters
    ----------
    sources
        One input, or several with ``merge=True``.
    out
        Store to create: a path or a URL.
    overwrite
        Replace an existing store at ``out`` once the new one is complete.
    run_dir, progress, storage_options
        As for every stage (see :func:`normalize`); ingest runs on no cluster.
    **params
        The ``ingest`` stage's parameters (listed below).

    Returns
    -------
    xarray.Dataset
        The new store, opened lazily; ``ds.attrs["sources"]`` lists every file read.
    """
    files = [sources] if isinstance(sources, str | Path) else list(sources)
    outputs = _call(
        "ingest",
        out,
        {**params, "sources": [str(f) for f in files]},
        run_dir=run_dir,
        cluster=None,
        progress=progress,
        storage_options=storage_options,
        overwrite=overwrite,
    )
    return open_store(outputs["url"])


def normalize(
    store: str | Path,
    *,
    run_dir: str | Path = ".",
    cluster: Cluster = None,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> xr.Dataset:
    """Add size factors and normalised layers (CPM, TPM, log2(x+1)) to a store; return the store.

    Parameters
    ----------
    store
        Store path or URL.
    run_dir
        Folder for tables and plots (default: the current one).
    cluster
        None: embedded local Ray and Dask, started and stopped inside the call; else the
        address of an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"tcp://host:8786"``)
        or the ``[cluster]`` table as a dict.
    progress
        Show progress (a bar on a terminal; a log line every 30 s otherwise).
    storage_options
        fsspec options of the store's protocol (e.g. ``{"endpoint_url": ...}``).
    **params
        The ``normalize`` stage's parameters (listed below).

    Returns
    -------
    xarray.Dataset
        The store with its new variables, opened lazily.
    """
    _call(
        "normalize",
        store,
        params,
        run_dir=run_dir,
        cluster=cluster,
        progress=progress,
        storage_options=storage_options,
    )
    return open_store(str(store))


def de(
    store: str | Path,
    *,
    run_dir: str | Path = ".",
    cluster: Cluster = None,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Differential expression (DESeq2, Mann-Whitney, Welch) of one test; results kept in the store.

    Parameters
    ----------
    store
        Store path or URL.
    run_dir, cluster, progress, storage_options
        As for every stage (see :func:`normalize`).
    **params
        The ``de`` stage's parameters (listed below). One test's keys (those of
        :class:`gexplain.pipelines.de.stage.DeTest`: ``method``, ``design``, ``contrasts`` such as
        ``[["dex", "trt", "untrt"]]``, ``one_vs_rest={"column": "tissue"}``, ``preset``, ...) may be
        given directly, as on the command line, instead of ``tests=[{...}]``.

    Returns
    -------
    pandas.DataFrame or dict of str to DataFrame
        One row per gene (index ``gene``) with pydeseq2's columns (``baseMean``,
        ``log2FoldChange``, ``lfcSE``, ``stat``, ``pvalue``, ``padj``); a dict by contrast name
        (the store keeps each as ``results/de/<method>/<contrast>``) when the test has several.
    """
    from gexplain.pipelines.de.stage import DeTest

    one = {k: params.pop(k) for k in list(params) if k in DeTest.model_fields}
    if one:  # one test's keys given directly, as on the command line
        params["tests"] = [*params.get("tests", []), one]
    outputs = _call(
        "de",
        store,
        params,
        run_dir=run_dir,
        cluster=cluster,
        progress=progress,
        storage_options=storage_options,
    )
    tables = {
        group.split("/", 2)[-1]: read_result(str(store), group).to_dataframe()
        for group, entry in outputs.items()
        if isinstance(entry, dict) and "n_genes" in entry
    }
    return next(iter(tables.values())) if len(tables) == 1 else tables


def train(
    store: str | Path,
    *,
    run_dir: str | Path = ".",
    cluster: Cluster = None,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Train classifier replicates (MLP or CNN) and store them as a model set.

    Parameters
    ----------
    store
        Store path or URL.
    run_dir, cluster, progress, storage_options
        As for every stage (see :func:`normalize`).
    **params
        The ``train`` stage's parameters (listed below).

    Returns
    -------
    pandas.DataFrame
        One row per replicate (index ``replicate``): ``test_accuracy`` and ``test_macro_f1`` on
        the held-out samples; ``attrs`` holds the stage's outputs (model set, label, shape, CV).
    """
    outputs = _call(
        "train",
        store,
        params,
        run_dir=run_dir,
        cluster=cluster,
        progress=progress,
        storage_options=storage_options,
    )
    frame = pd.DataFrame(
        {key: outputs.get(key, []) for key in ("test_accuracy", "test_macro_f1")}
    ).rename_axis("replicate")
    frame.attrs = {k: v for k, v in outputs.items() if k not in ("test_accuracy", "test_macro_f1")}
    return frame


def explain(
    store: str | Path,
    *,
    run_dir: str | Path = ".",
    cluster: Cluster = None,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> xr.Dataset:
    """Attributions of every sample (explainers x references x repeats x models); resumable.

    A result of the same ``name`` is kept unless ``overwrite=True``; calling again with the same
    parameters resumes an interrupted run.

    Parameters
    ----------
    store
        Store path or URL.
    run_dir, cluster, progress, storage_options
        As for every stage (see :func:`normalize`).
    **params
        The ``explain`` stage's parameters (listed below).

    Returns
    -------
    xarray.Dataset
        The result ``results/explain/<name>`` (``attr_<explainer>``: sample x gene), lazily.
    """
    outputs = _call(
        "explain",
        store,
        params,
        run_dir=run_dir,
        cluster=cluster,
        progress=progress,
        storage_options=storage_options,
    )
    return read_result(str(store), str(outputs["path"]).removeprefix("results/"))


def evaluate(
    store: str | Path,
    *,
    run_dir: str | Path = ".",
    cluster: Cluster = None,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> dict[str, pd.DataFrame]:
    """Reproducibility, saturation, ground-truth, faithfulness and biology tables.

    Parameters
    ----------
    store
        Store path or URL.
    run_dir, cluster, progress, storage_options
        As for every stage (see :func:`normalize`).
    **params
        The ``evaluate`` stage's parameters (listed below).

    Returns
    -------
    dict of str to pandas.DataFrame
        Every table of the evaluation by name, as kept in the store (``results/evaluate/<name>/<table>``;
        also written to ``<run_dir>/evaluate/<name>/<table>.csv``).
    """
    _call(
        "evaluate",
        store,
        params,
        run_dir=run_dir,
        cluster=cluster,
        progress=progress,
        storage_options=storage_options,
    )
    from gexplain.results import Store

    return Store(store).evaluation(params.get("name") or "default")


def report(
    store: str | Path,
    *,
    run_dir: str | Path = ".",
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> Path:
    """Write the self-contained HTML report of a store; return its path.

    Parameters
    ----------
    store
        Store path or URL.
    run_dir, progress, storage_options
        As for every stage (see :func:`normalize`); the report runs on no cluster.
    **params
        The ``report`` stage's parameters (listed below).
    """
    outputs = _call(
        "report",
        store,
        params,
        run_dir=run_dir,
        cluster=None,
        progress=progress,
        storage_options=storage_options,
    )
    return Path(outputs["report"])


def export(
    store: str | Path,
    *,
    h5ad: str | Path | None = None,
    zarr: str | Path | None = None,
    layer: str | None = None,
    attributions: Sequence[str] | None = None,
    attribution_std: bool = False,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Export a store to AnnData (``.h5ad`` and/or AnnData-on-Zarr) for scanpy; return the paths.

    Parameters
    ----------
    store
        Store path or URL.
    h5ad, zarr
        Files to write (at least one).
    layer
        Store layer written as X (default counts, else log_expr, else the first by name).
    attributions
        Explain results added as ``attr_<run>_<explainer>`` layers (default all).
    attribution_std
        Also add each explainer's std.
    overwrite
        Replace existing files.
    storage_options
        fsspec options of the store's protocol.
    """
    from gexplain.pipelines.export import export_anndata

    _options(str(store), storage_options)
    reports = export_anndata(
        str(store),
        h5ad=Path(h5ad) if h5ad else None,
        zarr=Path(zarr) if zarr else None,
        layer=layer,
        attributions=list(attributions) if attributions else None,
        attribution_std=attribution_std,
        overwrite=overwrite,
    )
    return [Path(r.path) for r in reports]


def run(
    config: str | Path, *, force: bool = False, cluster: Cluster = None, progress: bool = True
) -> dict[str, Any]:
    """Run a config's stages in order, skipping finished unchanged ones (as ``gexplain run``).

    Parameters
    ----------
    config
        Run config (TOML).
    force
        Rerun every stage even if done.
    cluster
        Overrides the config's ``[cluster]`` (see :func:`normalize`).
    progress
        Show progress.

    Returns
    -------
    dict
        The run summary: ``stages`` (each with name, kind, status, outputs) and the run folder.
    """
    from gexplain.pipelines.config import parse_config
    from gexplain.pipelines.runner import run_config

    cfg = parse_config(config)
    if cluster is not None:
        given = {"address": cluster} if isinstance(cluster, str) else dict(cluster)
        try:
            cfg.cluster = cfg.cluster.override(given)
        except ValueError as exc:
            raise InputError(f"cluster={cluster!r}: {exc}") from None
    shown = Progress(enabled=True if progress else False)
    try:
        return run_config(cfg, force=force, progress=shown)
    finally:
        shown.close()


# -- signatures and help from the params models ---------------------------------------------------

_FIXED: dict[str, set[str]] = {"simulate": {"simulator"}, "ingest": {"sources"}}
"""Parameters a function takes as its own arguments rather than in ``**params``."""


def _describe(kind: str) -> tuple[list[inspect.Parameter], str]:
    """The keyword parameters and the numpydoc lines of stage ``kind``'s params model."""
    model = get_params(kind)
    defaults = STANDALONE_DEFAULTS.get(kind, {})
    params, lines = [], []
    for name, info in model.model_fields.items():
        if name in _FIXED.get(kind, set()):
            continue
        default = defaults.get(name, info.get_default(call_default_factory=True))
        required = default is PydanticUndefined
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if required else default,
                annotation=info.annotation,
            )
        )
        kind_text = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
        lines.append(f"{name} : {kind_text}" + ("" if required else f", default {default!r}"))
        lines.append(f"    {info.description or ''}".rstrip())
    return params, "\n".join(lines)


def _with_params(function: Callable[..., Any], kind: str) -> None:
    """Give ``function`` (which takes ``**params``) the signature and help of ``kind``'s params."""
    signature = inspect.signature(function)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params, doc = _describe(kind)
    taken = {p.name for p in own}
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*own, *(p for p in params if p.name not in taken)]
    )
    function.__doc__ = (
        f"{function.__doc__}\n    Stage parameters ({get_params(kind).__name__})\n"
        "    -----------------------------------------\n"
        + "\n".join(f"    {line}" for line in doc.splitlines())
        + "\n"
    )


for _function, _kind in (
    (simulate, "simulate"),
    (ingest, "ingest"),
    (normalize, "normalize"),
    (de, "de"),
    (train, "train"),
    (explain, "explain"),
    (evaluate, "evaluate"),
    (report, "report"),
):
    _with_params(_function, _kind)
