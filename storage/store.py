"""Expression stores: Zarr v3 groups written and read through xarray.

Atomicity model
---------------
A store is never read as complete while it holds partial data:

* A new store is created with group attribute ``gexplain_complete = False``. Locally it is
  written under a temporary sibling directory and renamed into place by
  :meth:`StoreWriter.commit`; on object stores it is written in place and ``commit`` flips the
  flag with a single metadata PUT. :func:`open_store` refuses an incomplete store.
* Variables appended later (:func:`add_variables`) are listed in ``gexplain_variables`` only
  after their data is written; :func:`open_store` hides variables that are not listed.
* Result groups (:func:`write_result`) carry their own ``gexplain_complete`` flag.
* Resumable jobs record finished blocks in a :class:`BlockLedger`, one marker object per key.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from storage.errors import IncompleteStoreError, InputError
from storage.paths import atomic_write_bytes, exists, filesystem, is_local, join, normalize_url
from storage.schema import GENE, SAMPLE, to_storable_strings, validate

DEFAULT_CHUNKS: dict[str, int] = {SAMPLE: 2048, GENE: 2048}
COMPLETE = "gexplain_complete"
VARIABLES = "gexplain_variables"


def gexplain_version() -> str:
    """Return the installed gexplain version (``"unknown"`` when not installed)."""
    try:
        return version("gexplain")
    except PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _open_group(url: str, mode: str = "r") -> zarr.Group:
    return zarr.open_group(normalize_url(url), mode=mode, zarr_format=3)


def _layer_fill(dtype: np.dtype) -> Any:
    return np.nan if np.dtype(dtype).kind == "f" else 0


@contextlib.contextmanager
def _kept_attrs(url: str) -> Iterator[None]:
    """Restore the group's attrs after an xarray append (which rewrites them)."""
    before = dict(_open_group(url, "r").attrs)
    yield
    group = _open_group(url, "r+")
    group.attrs.update({**before, **{k: v for k, v in group.attrs.items() if k not in before}})


def layer_chunks(ds: xr.Dataset) -> dict[str, int]:
    """Return the stored (sample, gene) chunk shape of the store's layers.

    Parameters
    ----------
    ds
        A Dataset opened with :func:`open_store`.
    """
    for name in ds.data_vars:
        var = ds[name]
        if var.dims == (SAMPLE, GENE) and "chunks" in var.encoding:
            s, g = var.encoding["chunks"]
            return {SAMPLE: int(s), GENE: int(g)}
    return dict(DEFAULT_CHUNKS)


def _fix_strings(ds: xr.Dataset) -> xr.Dataset:
    for name in list(ds.variables):
        var = ds.variables[name]
        if var.dtype.kind in "UT":
            ds = (
                ds.assign_coords({name: (var.dims, to_storable_strings(var.values))})
                if name in ds.coords
                else (ds.assign({name: (var.dims, to_storable_strings(var.values))}))
            )
    return ds


@dataclass
class StoreWriter:
    """Writes blocks of a new store, then commits it.

    Picklable: Dask or Ray workers may write disjoint, chunk-aligned regions in parallel.

    Attributes
    ----------
    url
        Final location of the store.
    write_url
        Where blocks are written until :meth:`commit` (a temporary sibling for local paths).
    layers
        Names of the (sample, gene) layers being written.
    """

    url: str
    write_url: str
    layers: tuple[str, ...]
    overwrite: bool = False
    extra_attrs: dict[str, Any] = field(default_factory=dict)

    def write_block(self, region: Mapping[str, slice], arrays: Mapping[str, np.ndarray]) -> None:
        """Write one block of one or more layers.

        Parameters
        ----------
        region
            Slices along ``sample`` and/or ``gene``; a missing dim means the whole dim.
            Parallel writers must use chunk-aligned regions.
        arrays
            Layer name -> array of shape (samples in region, genes in region).
        """
        group = _open_group(self.write_url, "r+")
        key = (region.get(SAMPLE, slice(None)), region.get(GENE, slice(None)))
        for name, arr in arrays.items():
            if name not in self.layers:
                raise KeyError(f"layer '{name}' was not declared in create_store (declared: {self.layers})")
            target = group[name]
            target[key] = np.asarray(arr, dtype=target.dtype)

    def write_vars(self, variables: Mapping[str, tuple[str, np.ndarray]]) -> None:
        """Write whole 1-d per-sample or per-gene variables (e.g. ground truth).

        Parameters
        ----------
        variables
            Name -> (dim, values). The variable is created (or replaced) in the store.
        """
        ds = xr.Dataset(
            {name: (dim, to_storable_strings(values)) for name, (dim, values) in variables.items()}
        )
        with _kept_attrs(self.write_url):
            ds.to_zarr(self.write_url, mode="a", zarr_format=3, consolidated=False)

    def set_attrs(self, **attrs: Any) -> None:
        """Record extra group attrs, written at commit."""
        self.extra_attrs.update(attrs)

    def commit(self) -> str:
        """Mark the store complete and move it into place; return its URL."""
        group = _open_group(self.write_url, "r+")
        names = sorted(str(k) for k in group.array_keys())
        group.attrs.update({**self.extra_attrs, VARIABLES: names, COMPLETE: True})
        if self.write_url != self.url:
            target = Path(self.url)
            if target.exists():
                if not self.overwrite:
                    raise InputError(f"{self.url} already exists; pass overwrite=True (CLI: --overwrite)")
                trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
                target.rename(trash)
                Path(self.write_url).rename(target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                Path(self.write_url).rename(target)
        return self.url

    def abort(self) -> None:
        """Remove a temporary store after a failure (the final location is untouched)."""
        if self.write_url != self.url:
            shutil.rmtree(self.write_url, ignore_errors=True)


def create_store(
    url: str,
    *,
    coords: Mapping[str, tuple[str, np.ndarray]] | None = None,
    sample_ids: np.ndarray,
    gene_ids: np.ndarray,
    layers: Mapping[str, np.dtype | str],
    attrs: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | None = None,
    overwrite: bool = False,
) -> StoreWriter:
    """Create an empty store with its coordinates and return a writer for its layers.

    Parameters
    ----------
    url
        Local path or fsspec URL of the store to create.
    coords
        Extra 1-d variables: name -> (dim, values), e.g. ``{"gene_symbol": ("gene", symbols)}``,
        ``{"sample_tissue": ("sample", tissues)}``.
    sample_ids, gene_ids
        Ids along ``sample`` and ``gene`` (unique).
    layers
        Layer name -> dtype, e.g. ``{"counts": "int32", "log_expr": "float32"}``; each is a
        (sample, gene) array chunked by ``chunks`` and filled by :meth:`StoreWriter.write_block`.
    attrs
        Group attributes (provenance). ``gexplain_version`` and ``created`` are added.
    chunks
        Chunk shape along ``sample`` and ``gene`` (default :data:`DEFAULT_CHUNKS`).
    overwrite
        Replace an existing store at ``url``. Locally the old store stays until the new one commits
        (temporary sibling renamed into place). Object stores cannot rename a prefix, so there the
        old store is removed before the new one is written: a failed overwrite leaves no store
        (never a partial one that reads as complete). Keep inputs you cannot regenerate elsewhere.

    Returns
    -------
    StoreWriter
    """
    final = normalize_url(url)
    if exists(final) and not overwrite:
        raise InputError(f"{final} already exists; choose another path or pass --overwrite to replace it")
    chunk = {**DEFAULT_CHUNKS, **(chunks or {})}
    n_s, n_g = len(sample_ids), len(gene_ids)
    data_vars: dict[str, Any] = {}
    for name, dtype in layers.items():
        data_vars[name] = (
            (SAMPLE, GENE),
            da.full(
                (n_s, n_g), _layer_fill(np.dtype(dtype)), dtype=dtype, chunks=(chunk[SAMPLE], chunk[GENE])
            ),
        )
    for name, (dim, values) in (coords or {}).items():
        data_vars[name] = (dim, to_storable_strings(values))
    ds = xr.Dataset(
        data_vars,
        coords={
            SAMPLE: to_storable_strings(np.asarray(sample_ids)),
            GENE: to_storable_strings(np.asarray(gene_ids)),
        },
        attrs={**(attrs or {}), "gexplain_version": gexplain_version(), "created": _now(), COMPLETE: False},
    )
    validate(ds, where=final)
    if is_local(final):
        parent = Path(final).parent
        parent.mkdir(parents=True, exist_ok=True)
        write_url = str(parent / f".{Path(final).name}.partial-{uuid.uuid4().hex[:12]}")
    else:
        if exists(final):
            fs, path = filesystem(final)
            fs.rm(path, recursive=True)
        write_url = final
    encoding = {name: {"fill_value": _layer_fill(np.dtype(dt))} for name, dt in layers.items()}
    ds.to_zarr(write_url, mode="w", compute=False, zarr_format=3, consolidated=False, encoding=encoding)
    return StoreWriter(url=final, write_url=write_url, layers=tuple(layers), overwrite=overwrite)


def open_store(url: str, *, allow_incomplete: bool = False) -> xr.Dataset:
    """Open a store lazily (dask-backed) and check that it is complete.

    Parameters
    ----------
    url
        Local path or fsspec URL.
    allow_incomplete
        Open a store whose writer has not committed (for inspection only).

    Returns
    -------
    xarray.Dataset
        Dims ``sample`` and ``gene``; variables whose data is not complete are dropped.
    """
    target = normalize_url(url)
    if not exists(target):
        raise InputError(f"no store at {target}; create one with `gexplain ingest` or `gexplain simulate`")
    try:
        with warnings.catch_warnings():
            # models/ and ledger/ hold plain files (checkpoints, markers), not Zarr nodes.
            warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
            ds = xr.open_zarr(target, consolidated=False, zarr_format=3)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise InputError(
            f"{target} is not a readable gexplain store ({exc}); re-create it with `gexplain ingest`"
        ) from exc
    if not ds.attrs.get(COMPLETE, False) and not allow_incomplete:
        raise IncompleteStoreError(
            f"{target} is incomplete: its writer did not finish (killed or still running). "
            "Re-run the command that creates it; it will be replaced."
        )
    listed = ds.attrs.get(VARIABLES)
    if listed is not None:
        hidden = [v for v in ds.data_vars if str(v) not in listed]
        ds = ds.drop_vars(hidden)
    return _eager_annotations(ds)


def _eager_annotations(ds: xr.Dataset) -> xr.Dataset:
    """Load 1-d annotations into memory and give strings a plain object dtype (pandas-friendly)."""
    updates = {}
    for name, var in ds.variables.items():
        if var.ndim == 1:
            values = np.asarray(var.values)
            if values.dtype.kind in "UT":
                values = values.astype(object)
            updates[name] = (var.dims, values, var.attrs)
    coords = {k: v for k, v in updates.items() if k in ds.coords}
    data = {k: v for k, v in updates.items() if k not in ds.coords}
    return ds.assign_coords(coords).assign(data)


def add_variables(url: str, ds: xr.Dataset) -> list[str]:
    """Append (or replace) variables in an existing store; dask-backed data is computed chunkwise.

    A variable becomes visible to :func:`open_store` only after all its data is written, and
    carries the attr ``gexplain_written`` (a unique stamp) so consumers that resume work can tell a
    rewritten variable from the one they started on. Replacing an existing variable deletes the old
    array first: if the writer is killed, that variable is gone (hidden, never partial) until the
    producing stage is rerun.

    Parameters
    ----------
    url
        An existing, complete store.
    ds
        Dataset over the store's ``sample``/``gene`` (same ids and order) with the new variables.

    Returns
    -------
    list of str
        Names of the variables written.
    """
    target = normalize_url(url)
    base = open_store(target)
    for dim in (SAMPLE, GENE):
        if dim in ds.dims and (ds.sizes[dim] != base.sizes[dim]):
            raise InputError(
                f"cannot add variables with {ds.sizes[dim]} {dim}s to {target} which has {base.sizes[dim]}"
            )
        if dim in ds.coords and not np.array_equal(
            np.asarray(ds[dim].values).astype(str), np.asarray(base[dim].values).astype(str)
        ):
            raise InputError(
                f"cannot add variables to {target}: their {dim} ids differ from the store's (order or "
                f"values); align them first, e.g. ds.reindex({dim}=store.{dim})"
            )
    new = ds.drop_vars([c for c in ds.coords], errors="ignore")
    names = [str(n) for n in new.data_vars]
    validate(new.assign_coords({SAMPLE: base[SAMPLE].values, GENE: base[GENE].values}), where=target)
    group = _open_group(target, "r+")
    listed = [v for v in group.attrs.get(VARIABLES, []) if v not in names]
    group.attrs[VARIABLES] = listed
    new = _fix_strings(new)
    chunks = layer_chunks(base)
    encoding: dict[str, dict[str, Any]] = {}
    stamp = f"{_now()}-{uuid.uuid4().hex[:8]}"
    for name in names:
        new[name].attrs["gexplain_written"] = stamp  # data identity for resumable consumers
        var = new[name]
        if var.dims == (SAMPLE, GENE):
            new[name] = var.chunk(chunks)
            encoding[name] = {"fill_value": _layer_fill(var.dtype)}
        if name in group:
            del group[name]
    with _kept_attrs(target):
        new.to_zarr(target, mode="a", zarr_format=3, consolidated=False, encoding=encoding)
    group = _open_group(target, "r+")
    group.attrs[VARIABLES] = sorted(set(listed) | set(names))
    return names


def _result_path(group: str) -> str:
    return "results/" + group.strip("/")


def write_result(url: str, group: str, ds: xr.Dataset) -> str:
    """Write a result Dataset into the store's ``results/<group>`` and mark it complete.

    Parameters
    ----------
    url
        The store.
    group
        Result name, e.g. ``"de/deseq2/dex_trt_vs_untrt"``.
    ds
        The result; dask-backed data is computed chunkwise.

    Returns
    -------
    str
        The group path inside the store.
    """
    path = _result_path(group)
    out = _fix_strings(ds.copy())
    out.attrs = {**ds.attrs, COMPLETE: False, "created": _now()}
    out.to_zarr(normalize_url(url), group=path, mode="w", zarr_format=3, consolidated=False)
    mark_result_complete(url, group)
    return path


def create_result(
    url: str, group: str, template: xr.Dataset, *, chunks: Mapping[str, int] | None = None
) -> str:
    """Create an empty result group to be filled region by region (see :func:`write_result_region`).

    Parameters
    ----------
    url
        The store.
    group
        Result name.
    template
        Dataset whose data variables give shapes and dtypes (dask-backed, not computed) and whose
        coords are written.
    chunks
        Chunking for the (sample, gene) variables; regions written later must align to it.
    """
    path = _result_path(group)
    out = template.copy()
    if chunks:
        out = out.chunk({k: v for k, v in chunks.items() if k in out.dims})
    out = _fix_strings(out)
    out.attrs = {**template.attrs, COMPLETE: False, "created": _now()}
    encoding = {str(n): {"fill_value": _layer_fill(out[n].dtype)} for n in out.data_vars}
    out.to_zarr(
        normalize_url(url),
        group=path,
        mode="w",
        compute=False,
        zarr_format=3,
        consolidated=False,
        encoding=encoding,
    )
    return path


def result_exists(url: str, group: str) -> bool:
    """Return True when a result group exists (complete or not)."""
    return exists(join(url, _result_path(group), "zarr.json"))


def write_result_region(
    url: str, group: str, region: Mapping[str, slice], arrays: Mapping[str, np.ndarray]
) -> None:
    """Write a region of variables of a result group created by :func:`create_result`.

    Parameters
    ----------
    url, group
        The store and result name.
    region
        Slices along the variables' dims (a missing dim means the whole dim), in dim order.
    arrays
        Variable name -> values for the region.
    """
    root = _open_group(join(url, _result_path(group)), "r+")
    for name, arr in arrays.items():
        target = root[name]
        dims = target.metadata.dimension_names or ()
        key = tuple(region.get(d, slice(None)) for d in dims)
        target[key] = np.asarray(arr, dtype=target.dtype)


def mark_result_complete(url: str, group: str, **attrs: Any) -> None:
    """Flag a result group complete (one metadata write), optionally updating its attrs."""
    root = _open_group(join(url, _result_path(group)), "r+")
    root.attrs.update({**attrs, COMPLETE: True})


def read_result(url: str, group: str, *, allow_incomplete: bool = False) -> xr.Dataset:
    """Open a result group lazily.

    Raises
    ------
    InputError
        When the group does not exist or is incomplete (lists the results that exist).
    """
    path = _result_path(group)
    if not result_exists(url, group):
        have = ", ".join(list_results(url)) or "none"
        raise InputError(f"no result '{group}' in {normalize_url(url)} (results present: {have})")
    ds = xr.open_zarr(normalize_url(url), group=path, consolidated=False, zarr_format=3)
    if not ds.attrs.get(COMPLETE, False) and not allow_incomplete:
        raise IncompleteStoreError(
            f"result '{group}' in {normalize_url(url)} is incomplete (its run was interrupted); re-run that stage"
        )
    return _eager_annotations(ds)


def list_results(url: str, prefix: str = "") -> list[str]:
    """List complete result groups under ``results/<prefix>`` (names relative to ``results/``)."""
    target = normalize_url(url)
    if not exists(join(target, "results")):
        return []
    root = _open_group(join(target, "results"), "r")
    found: list[str] = []

    def walk(group: zarr.Group, name: str) -> None:
        if group.attrs.get(COMPLETE, False):
            found.append(name)
            return
        for key, child in group.groups():
            walk(child, f"{name}/{key}" if name else key)

    walk(root, "")
    pre = prefix.strip("/")
    return sorted(n for n in found if not pre or n == pre or n.startswith(pre + "/"))


class BlockLedger:
    """Record of finished blocks of a resumable job: one small marker object per key.

    Resume means: skip every key for which :meth:`is_done` is True. Markers are written with
    :func:`storage.paths.atomic_write_bytes` only after the block's data is written.

    Parameters
    ----------
    url
        The store.
    name
        The job's name (e.g. ``"explain/quickstart"``).
    """

    def __init__(self, url: str, name: str) -> None:
        self.root = join(url, "ledger", name)

    def _marker(self, key: str) -> str:
        safe = key.replace("/", "__")
        return join(self.root, f"{safe}.json")

    def is_done(self, key: str) -> bool:
        """Return True when ``key`` has a marker."""
        return exists(self._marker(key))

    def mark_done(self, key: str, info: Mapping[str, Any] | None = None) -> None:
        """Write the marker for ``key`` with optional JSON-serialisable ``info``."""
        atomic_write_bytes(self._marker(key), json.dumps({"key": key, "at": _now(), **(info or {})}).encode())

    def done_keys(self) -> set[str]:
        """Return every finished key."""
        fs, path = filesystem(self.root)
        if not fs.exists(path):
            return set()
        names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
        return {
            n[: -len(".json")].replace("__", "/")
            for n in names
            if n.endswith(".json") and not n.startswith(".")
        }

    def clear(self) -> None:
        """Remove every marker (a fresh start)."""
        fs, path = filesystem(self.root)
        if fs.exists(path):
            fs.rm(path, recursive=True)
