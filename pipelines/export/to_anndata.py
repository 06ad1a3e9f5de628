"""A gexplain store as an AnnData object, written as ``.h5ad`` or AnnData-on-Zarr.

Mapping (obs = samples, var = genes, as scanpy expects):

============================== ==================================================================
AnnData                        store
============================== ==================================================================
``X``                          the chosen layer (default ``counts``, else ``log_expr``, else the first by name)
``layers[<name>]``             every other (sample, gene) layer, e.g. ``tpm``, ``log_expr``
``obs``                        every (sample,) variable: ``sample_*``, ``size_factors``
``var``                        every (gene,) variable: ``gene_*``, ``truth_*``
``layers[attr_<run>_<expl>]``  mean attribution of each explainer of ``results/explain/<run>``
                               (float32; NaN for samples or genes the run did not explain);
                               ``attr_<run>_<expl>_std`` too with ``attribution_std=True``
``varm[de_<method>_<name>]``   each DE result ``results/de/<method>/<name>`` as a table over var
                               with pydeseq2's columns (baseMean, log2FoldChange, lfcSE, stat,
                               pvalue, padj; NaN for genes the result does not hold)
``uns["de"][<same key>]``      that result's method, contrast, design and layer
``uns["gexplain"]``            the store URL, gexplain version and the store attrs as JSON
``uns["rank_attr_<run>_<e>"]`` per-class attribution ranking in ``sc.tl.rank_genes_groups``'s layout
                               (:mod:`gexplain.pipelines.export.rankings`; ``sc.pl.rank_genes_groups(
                               adata, key=...)`` plots it)
``uns["evaluate"][<n>][<t>]``  every table of the evaluation ``results/evaluate/<n>``
============================== ==================================================================

Matrices stay lazy (dask arrays read from the store), so anndata writes them chunk by chunk:
memory is bounded by the store's chunk size, not by the cohort.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from gexplain.pipelines.evaluate.inputs import ATTR, explainers_of, label_column
from gexplain.pipelines.export.rankings import attribution_rankings, evaluation_tables
from gexplain.pipelines.progress import SILENT, Progress, dask_tasks
from gexplain.storage.errors import InputError
from gexplain.storage.schema import GENE, SAMPLE, layer_names
from gexplain.storage.store import gexplain_version, list_results, open_store, read_result

DE_COLUMNS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj")


@dataclass
class ExportReport:
    """What an export wrote.

    Attributes
    ----------
    path
        The ``.h5ad`` file or ``.zarr`` directory.
    n_obs, n_vars
        Samples and genes.
    x_layer
        The store layer written as ``X``.
    layers
        Names of ``layers`` (store layers and attribution layers).
    de
        Keys of the DE tables in ``varm`` / ``uns["de"]``.
    """

    path: str
    n_obs: int
    n_vars: int
    x_layer: str
    layers: list[str] = field(default_factory=list)
    de: list[str] = field(default_factory=list)


def _key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _column(values: np.ndarray) -> np.ndarray:
    """A 1-d store variable as an obs/var column: strings as object str, numbers unchanged."""
    values = np.asarray(values)
    if values.dtype.kind in "OUST":
        return values.astype(str).astype(object)
    return values


def _frame(ds: xr.Dataset, dim: str) -> pd.DataFrame:
    index = pd.Index(np.asarray(ds[dim].values).astype(str), name=None)
    names = [str(n) for n in ds.variables if ds[n].dims == (dim,) and str(n) != dim]
    return pd.DataFrame({n: _column(ds[n].values) for n in names}, index=index)


def _aligned(result: xr.DataArray, samples: np.ndarray, genes: np.ndarray) -> da.Array:
    """A (sample, gene) result reindexed lazily onto the store's samples and genes (NaN elsewhere)."""
    r = result.astype(np.float32)
    r = r.assign_coords(
        {SAMPLE: np.asarray(r[SAMPLE].values).astype(str), GENE: np.asarray(r[GENE].values).astype(str)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", da.PerformanceWarning)  # reindexing splits chunks at the gaps
        r = r.reindex({SAMPLE: samples, GENE: genes}, fill_value=np.float32(np.nan))
    data = r.data
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data))


def _explain_results(url: str, runs: list[str] | None) -> dict[str, xr.Dataset]:
    """Complete explain results by run name (``runs`` only, when given)."""
    groups = list_results(url, "explain")
    if runs is not None:
        wanted = {f"explain/{r}" for r in runs}
        missing = sorted(wanted - set(groups))
        if missing:
            raise InputError(
                f"--attributions: no complete result {', '.join(missing)} in {url} "
                f"(present: {', '.join(groups) or 'none'})"
            )
        groups = [g for g in groups if g in wanted]
    return {group.split("/", 1)[1]: read_result(url, group) for group in groups}


def _attributions(
    results: dict[str, xr.Dataset], samples: np.ndarray, genes: np.ndarray, with_std: bool
) -> dict[str, da.Array]:
    out: dict[str, da.Array] = {}
    for name, res in results.items():
        run = _key(name)
        for explainer in explainers_of(res):
            out[f"attr_{run}_{_key(explainer)}"] = _aligned(res[ATTR + explainer], samples, genes)
            std = f"{ATTR}{explainer}_std"
            if with_std and std in res:
                out[f"attr_{run}_{_key(explainer)}_std"] = _aligned(res[std], samples, genes)
    return out


def _de_tables(url: str, genes: np.ndarray) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, Any]]]:
    tables: dict[str, pd.DataFrame] = {}
    meta: dict[str, dict[str, Any]] = {}
    for group in list_results(url, "de"):
        res = read_result(url, group)
        key = "de_" + _key(group.split("/", 1)[1].replace("/", "_"))
        index = np.asarray(res[GENE].values).astype(str)
        frame = pd.DataFrame(
            {c: np.asarray(res[c].values, dtype=np.float64) for c in DE_COLUMNS if c in res}, index=index
        )
        tables[key] = frame.reindex(genes)
        meta[key] = {
            "group": f"results/{group}",
            **{k: (list(map(str, v)) if isinstance(v, list | tuple) else v) for k, v in res.attrs.items()
               if isinstance(v, str | int | float | list | tuple) and k != "gexplain_complete"},
        }  # fmt: skip
    return tables, meta


def store_to_anndata(
    store_url: str,
    *,
    layer: str | None = None,
    attributions: list[str] | None = None,
    attribution_std: bool = False,
) -> ad.AnnData:
    """Build an AnnData view of a store (matrices lazy, as dask arrays).

    Parameters
    ----------
    store_url
        The store.
    layer
        Layer written as ``X`` (default ``counts``, else ``log_expr``, else the first by name).
    attributions
        Explain runs to include (names under ``results/explain/``); None includes every run.
    attribution_std
        Also add each explainer's per-sample standard deviation as ``attr_<run>_<expl>_std``.

    Returns
    -------
    anndata.AnnData
        n_obs = samples, n_vars = genes (see the module docstring for the mapping).

    Raises
    ------
    InputError
        Unknown layer or explain run, a store without layers.
    """
    ds = open_store(store_url)
    layers = layer_names(ds)
    if not layers:
        raise InputError(f"{store_url}: the store has no (sample, gene) layer to export")
    x_layer = layer or next((n for n in ("counts", "log_expr") if n in layers), sorted(layers)[0])
    if x_layer not in layers:
        raise InputError(
            f"--layer {x_layer!r}: the store's layers are {', '.join(layers)}; choose one of them"
        )
    obs = _frame(ds, SAMPLE)
    var = _frame(ds, GENE)
    samples, genes = obs.index.to_numpy(dtype=str), var.index.to_numpy(dtype=str)
    matrices = {n: ds[n].data for n in layers}
    results = _explain_results(store_url, attributions)
    extra = _attributions(results, samples, genes, attribution_std)
    rankings = attribution_rankings(ds, results, _key) if results and _has_labels(ds) else {}
    de, de_meta = _de_tables(store_url, genes)
    adata = ad.AnnData(
        X=matrices[x_layer],
        obs=obs,
        var=var,
        layers={**{n: m for n, m in matrices.items() if n != x_layer}, **extra},
        varm=de,
        uns={
            **rankings,
            "evaluate": evaluation_tables(store_url),
            "de": de_meta,
            "gexplain": {
                "store": str(store_url),
                "version": gexplain_version(),
                "x_layer": x_layer,
                "store_attrs_json": json.dumps(dict(ds.attrs), default=str),
            },
        },
    )
    return adata


def _has_labels(ds: xr.Dataset) -> bool:
    try:
        label_column(ds)
    except InputError:
        return False
    return True


def _atomic(target: Path, write: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        staged = tmp / target.name
        write(staged)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        staged.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_anndata(
    store_url: str,
    *,
    h5ad: str | Path | None = None,
    zarr: str | Path | None = None,
    layer: str | None = None,
    attributions: list[str] | None = None,
    attribution_std: bool = False,
    overwrite: bool = False,
    progress: Progress = SILENT,
) -> list[ExportReport]:
    """Write a store as ``.h5ad`` and/or AnnData-on-Zarr (see :func:`store_to_anndata`).

    Parameters
    ----------
    store_url
        The store.
    h5ad, zarr
        Output paths (at least one); each appears only once complete.
    layer, attributions, attribution_std
        As for :func:`store_to_anndata`.
    overwrite
        Replace existing outputs.
    progress
        Progress reporting: the rankings and tables, then each output's Dask tasks as they are
        written.

    Returns
    -------
    list of ExportReport
        One per output written.
    """
    if h5ad is None and zarr is None:
        raise InputError("give --h5ad OUT.h5ad and/or --zarr OUT.zarr")
    targets = [(Path(p), kind) for p, kind in ((h5ad, "h5ad"), (zarr, "zarr")) if p is not None]
    for path, kind in targets:
        if kind == "h5ad" and path.suffix != ".h5ad":
            raise InputError(f"--h5ad {path}: the file name must end with .h5ad")
        if path.exists() and not overwrite:
            raise InputError(f"{path} already exists; choose another path or pass --overwrite")
    with progress.task("export: rankings and tables (dask tasks)") as task, dask_tasks(task):
        adata = store_to_anndata(
            store_url, layer=layer, attributions=attributions, attribution_std=attribution_std
        )
    reports = []
    for path, kind in targets:
        with progress.task(f"export: write {path.name} (dask tasks)") as task, dask_tasks(task):
            if kind == "h5ad":
                _atomic(path, lambda p: adata.write_h5ad(p))
            else:
                with (
                    ad.settings.override(zarr_write_format=3),
                    warnings.catch_warnings(),
                ):  # the store's Zarr version
                    warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
                    _atomic(path, lambda p: adata.write_zarr(p))
        reports.append(
            ExportReport(
                path=str(path),
                n_obs=adata.n_obs,
                n_vars=adata.n_vars,
                x_layer=adata.uns["gexplain"]["x_layer"],
                layers=list(adata.layers.keys()),
                de=list(adata.varm.keys()),
            )
        )
    return reports
