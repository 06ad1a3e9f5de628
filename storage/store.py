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
* Multi-part results (an evaluation's tables, a DE stage's contrasts) sit under one parent group
  whose own flag is set by :func:`begin_result_set` and :func:`mark_result_complete`: while it is
  unset, none of the parts is listed.
* Resumable jobs record finished blocks in a :class:`BlockLedger`, one marker group per key.
* Root attrs are never absent: appends write the whole attrs (one atomic ``zarr.json`` write).
* Every writer holds a lease (:mod:`gexplain.storage.lease`): the store exclusively to change root
  variables, or shared plus the result's own lease to write a result. A second writer fails at once.
* Hidden temporaries (``.<name>.partial-*``, ``.<name>.old-*``) left by a killed writer are removed
  by the next writer once their owner is gone (:func:`gexplain.storage.gc.collect`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
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
from gexplain.storage import faults
from gexplain.storage.backend import backend_for, disk_error
from gexplain.storage.errors import DamagedStoreError, IncompleteStoreError, InputError
from gexplain.storage.gc import remove_stale_siblings
from gexplain.storage.integrity import (
    WRITE_CONFIG,
    array_encoding,
    damage_message,
    guarded_store,
    open_group,
    split_chunk_key,
)
from gexplain.storage.lease import LeaseLostError, fence, hold_scope, hold_store, moving_store, reinstate
from gexplain.storage.nodes import read_group, write_group
from gexplain.storage.paths import exists, filesystem, join, normalize_url
from gexplain.storage.schema import GENE, SAMPLE, to_storable_strings, validate

DEFAULT_CHUNKS: dict[str, int] = {SAMPLE: 2048, GENE: 2048}
COMPLETE = "gexplain_complete"
VARIABLES = "gexplain_variables"
RESULT_SET = "gexplain_result_set"


def gexplain_version() -> str:
    """Return the installed gexplain version (``"unknown"`` when not installed)."""
    try:
        return version("gexplain")
    except PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _open_group(url: str, mode: str = "r") -> zarr.Group:
    return open_group(url, mode)


def _encoding(ds: xr.Dataset, names: Any = None) -> dict[str, dict[str, Any]]:
    """Checksummed encoding (every chunk written) of ``names`` (default: every variable of ``ds``)."""
    out: dict[str, dict[str, Any]] = {}
    for name in ds.variables if names is None else names:
        var = ds.variables[name]
        extra = {"fill_value": _layer_fill(var.dtype)} if var.dims == (SAMPLE, GENE) else {}
        out[str(name)] = array_encoding(**extra)
    return out


@contextlib.contextmanager
def _writing(path: str) -> Iterator[None]:
    """Turn a full disk while writing under ``path`` into an error naming it."""
    try:
        yield
    except OSError as exc:
        raise disk_error(exc, path) from exc


def _layer_fill(dtype: np.dtype) -> Any:
    return np.nan if np.dtype(dtype).kind == "f" else 0


@contextlib.contextmanager
def _quiet_strings() -> Iterator[None]:
    """Silence zarr's note that fixed-width unicode has no final Zarr v3 spec yet (we read it back)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*FixedLengthUTF32.*")
        yield


def _append(url: str, ds: xr.Dataset, encoding: Mapping[str, Any] | None = None) -> None:
    """Append variables to a store's root, keeping its attrs whole.

    xarray rewrites the root attrs on every append; giving it the current attrs makes that one
    atomic ``zarr.json`` write of the same content, so no reader (and no kill) ever sees ``{}``.
    """
    faults.point()
    fence(url)  # a writer continued after a pause re-reads its lease before it writes
    out = ds.copy()
    out.attrs = dict(_open_group(url, "r").attrs)
    store = guarded_store(url, read_only=False, missing_ok=True)
    enc = {
        name: {**spec, **dict(encoding or {}).get(name, {})}
        for name, spec in _encoding(out, out.data_vars).items()
    }
    with _quiet_strings(), _writing(normalize_url(url)):
        out.to_zarr(store, mode="a", zarr_format=3, consolidated=False, encoding=enc)
    faults.point()  # written, not yet listed: the window that once left root attrs empty


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
    made_dirs: tuple[str, ...] = ()

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
        faults.point()
        fence(self.url)
        group = _open_group(self.write_url, "r+")
        key = (region.get(SAMPLE, slice(None)), region.get(GENE, slice(None)))
        for name, arr in arrays.items():
            if name not in self.layers:
                raise KeyError(f"layer '{name}' was not declared in create_store (declared: {self.layers})")
            target = group[name].with_config(WRITE_CONFIG)
            with _writing(self.write_url):
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
        _append(self.write_url, ds)

    def set_attrs(self, **attrs: Any) -> None:
        """Record extra group attrs, written at commit."""
        self.extra_attrs.update(attrs)

    def commit(self) -> str:
        """Mark the store complete and move it into place; return its URL."""
        faults.point()
        fence(self.url)
        group = _open_group(self.write_url, "r+")
        names = sorted(str(k) for k in group.array_keys())
        for name in self.layers:  # blocks never written hold the fill value: store it, so none is absent
            target = group[name].with_config(WRITE_CONFIG)
            for index in _missing_chunks(self.write_url, group, name):
                key = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, target.chunks, strict=True))
                with _writing(self.write_url):
                    target[key] = target.fill_value
        group.attrs.update({**self.extra_attrs, VARIABLES: names, COMPLETE: True})
        with moving_store(self.url, self.write_url):  # leases on the replaced store live on in the new one
            backend_for(self.url).commit_tree(self.write_url, self.url, replace=self.overwrite)
        return self.url

    def abort(self) -> None:
        """Remove a temporary store after a failure (the final location is untouched).

        Parent folders that :func:`create_store` made for it are removed too when left empty, so
        bad input leaves nothing behind.
        """
        if self.write_url != self.url:
            backend_for(self.url).discard(self.write_url, self.url)
            for folder in self.made_dirs:  # deepest first
                try:
                    Path(folder).rmdir()
                except OSError:
                    break


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
    if exists(final):
        hold_store(final, "exclusive")  # nobody else may be writing the store this replaces
    made: list[str] = []
    backend = backend_for(final)
    if backend.renames:
        parent = Path(final).parent
        missing = parent
        while not missing.exists():
            made.append(str(missing))
            missing = missing.parent
        with _writing(str(parent)):
            parent.mkdir(parents=True, exist_ok=True)
        remove_stale_siblings(final)
    replaced = not backend.renames and exists(final)
    if replaced:  # no rename: the old store goes first
        backend.delete(final)
    write_url = backend.stage(final)
    store = guarded_store(write_url, read_only=False, missing_ok=True)
    with _quiet_strings(), _writing(write_url):
        ds.to_zarr(store, mode="w", compute=False, zarr_format=3, consolidated=False, encoding=_encoding(ds))
    if replaced:  # mode="w" cleared the store's folder, lease documents included: write them again
        reinstate(final)
    return StoreWriter(
        url=final, write_url=write_url, layers=tuple(layers), overwrite=overwrite, made_dirs=tuple(made)
    )


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
        Dims ``sample`` and ``gene``; variables whose data is not complete are dropped; data
        variables in name order (not the file system's listing order).
    """
    target = normalize_url(url)
    if not exists(target):
        raise InputError(f"no store at {target}; create one with `gexplain ingest` or `gexplain simulate`")
    try:
        with warnings.catch_warnings():
            # models/ and ledger/ hold plain files (checkpoints, markers), not Zarr nodes.
            warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
            ds = xr.open_zarr(guarded_store(target), consolidated=False, zarr_format=3)
    except DamagedStoreError:
        raise
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
    # a fixed variable order: the file system's listing order differs between stores written alike
    ds = ds[sorted(str(v) for v in ds.data_vars)]
    _check_chunks_present(target, [str(v) for v in ds.data_vars if ds[v].ndim > 1])
    return _eager_annotations(ds)


def _missing_chunks(url: str, root: zarr.Group, name: str) -> list[tuple[int, ...]]:
    """Chunk indices of a checksummed array that have no object (one listing); [] for older arrays."""
    arr = root[name]
    if "crc32c" not in [type(c).__name__.lower().replace("codec", "") for c in arr.compressors]:
        return []  # an older store: chunks may be absent by design
    fs, base = filesystem(url)
    have = set()
    for path in fs.find(f"{base}/{name}/c") if backend_for(url).exists(join(url, name, "c")) else []:
        split = split_chunk_key(str(path)[len(base) :].strip("/"))
        if split is not None:
            have.add(split[1])
    grid = [-(-s // c) for s, c in zip(arr.shape, arr.chunks, strict=True)]
    return [
        tuple(int(i) for i in index)
        for index in np.ndindex(*grid)
        if tuple(int(i) for i in index) not in have
    ]


def _check_chunks_present(url: str, names: list[str]) -> None:
    """Refuse a store one of whose checksummed layers lacks a chunk (one listing per layer).

    Checked when the store is opened, so a stage whose input lost a chunk fails before it writes.
    """
    root = open_group(url, "r")
    for name in names:
        missing = _missing_chunks(url, root, name)
        if missing:
            raise DamagedStoreError(damage_message(url, name, missing[0], "missing"))


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
    hold_store(target, "exclusive")
    remove_stale_siblings(target)
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
    fence(target)
    group = _open_group(target, "r+")
    listed = [v for v in group.attrs.get(VARIABLES, []) if v not in names]
    if len(listed) != len(group.attrs.get(VARIABLES, [])):
        group.attrs.update({VARIABLES: listed})  # hide what is replaced before deleting it
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
            faults.point()
            del group[name]
    try:
        _append(target, new, encoding)
    except LeaseLostError:
        raise  # the store is another writer's now: touch nothing
    except Exception:  # a full disk, damaged input: leave no half-written array behind
        _drop_arrays(target, names)
        raise
    fence(target)  # the commit: list the new variables only while this process still holds the store
    group = _open_group(target, "r+")
    group.attrs.update({VARIABLES: sorted(set(listed) | set(names))})
    return names


def _drop_arrays(url: str, names: list[str]) -> None:
    """Remove unlisted arrays a failed append left, so plain Zarr/xarray readers do not see them."""
    with contextlib.suppress(Exception):  # best effort: they stay hidden by gexplain_variables anyway
        group = _open_group(url, "r+")
        for name in names:
            if name in group:
                del group[name]


def _result_path(group: str) -> str:
    return "results/" + group.strip("/")


def result_scope(group: str) -> str:
    """Lease scope of a result: ``results/<kind>/<name>`` (an evaluation's tables share one)."""
    return "results/" + "/".join(group.strip("/").split("/")[:2])


def hold_result(url: str, group: str) -> None:
    """Take (or check, before a commit: :func:`~gexplain.storage.lease.fence`) a result's leases."""
    hold_scope(url, result_scope(group))
    fence(url)


def begin_result_set(url: str, group: str, **attrs: Any) -> str:
    """Start (or restart) a multi-part result: its parts stay unlisted until it is marked complete.

    Parameters
    ----------
    url
        The store.
    group
        The parent group, e.g. ``"evaluate/default"``; its parts are written below it with
        :func:`write_result` and the set is closed with :func:`mark_result_complete`.
    attrs
        Attributes recorded on the parent (e.g. the parameters).

    Returns
    -------
    str
        The group path inside the store.
    """
    hold_result(url, group)
    path = _result_path(group)
    write_group(
        join(url, path), {**attrs, RESULT_SET: True, COMPLETE: False, "created": _now()}, parents_below=url
    )
    return path


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
    hold_result(url, group)
    path = _result_path(group)
    out = _fix_strings(ds.copy())
    out.attrs = {**ds.attrs, COMPLETE: False, "created": _now()}
    faults.point()
    store = guarded_store(url, read_only=False, missing_ok=True)
    with _quiet_strings(), _writing(join(url, path)):
        out.to_zarr(store, group=path, mode="w", zarr_format=3, consolidated=False, encoding=_encoding(out))
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
    hold_result(url, group)
    faults.point()
    path = _result_path(group)
    out = template.copy()
    if chunks:
        out = out.chunk({k: v for k, v in chunks.items() if k in out.dims})
    out = _fix_strings(out)
    out.attrs = {**template.attrs, COMPLETE: False, "created": _now()}
    encoding = {
        str(n): array_encoding(fill_value=_layer_fill(out.variables[n].dtype))
        if n in out.data_vars
        else array_encoding()
        for n in out.variables
    }
    with _quiet_strings(), _writing(join(url, path)):
        out.to_zarr(
            guarded_store(url, read_only=False, missing_ok=True),
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
    url: str,
    group: str,
    region: Mapping[str, slice],
    arrays: Mapping[str, np.ndarray],
    *,
    whole_chunks: bool = False,
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
    whole_chunks
        Require the region to cover whole chunks of every variable written (it may end at a
        variable's end), so writers of disjoint regions running side by side never rewrite each
        other's chunks. Checked for all variables before anything is written.

    Raises
    ------
    ValueError
        With ``whole_chunks``, when the region cuts a chunk of a variable.
    """
    hold_result(url, group)
    faults.point()
    root = _open_group(join(url, _result_path(group)), "r+")
    targets = {name: root[name].with_config(WRITE_CONFIG) for name in arrays}
    keys: dict[str, tuple[slice, ...]] = {}
    for name, target in targets.items():
        dims = tuple(target.metadata.dimension_names or ())
        keys[name] = tuple(region.get(d, slice(None)) for d in dims)
        if whole_chunks:
            _check_whole_chunks(
                f"results/{group.strip('/')}/{name}", dims, keys[name], target.shape, target.chunks
            )
    for name, target in targets.items():
        with _writing(join(url, _result_path(group))):
            target[keys[name]] = np.asarray(arrays[name], dtype=target.dtype)


def _check_whole_chunks(
    where: str,
    dims: tuple[str, ...],
    key: tuple[slice, ...],
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
) -> None:
    """Raise ValueError when ``key`` (slices of an array of ``shape``) cuts one of its ``chunks``."""
    for dim, part, size, chunk in zip(dims, key, shape, chunks, strict=True):
        start, stop, step = part.indices(size)
        if step != 1 or start % chunk or (stop % chunk and stop != size):
            raise ValueError(
                f"{where}: region {dim}[{start}:{stop}] is not made of whole chunks of {chunk} (size {size}); "
                "align the region to the chunks"
            )


def mark_result_complete(url: str, group: str, **attrs: Any) -> None:
    """Flag a result group (or result set) complete (one metadata write), optionally updating its attrs."""
    hold_result(url, group)
    faults.point()
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
    complete = bool((read_group(join(url, path)) or {}).get(COMPLETE, False))
    # an unfinished (resumable) result lacks the chunks not yet written; a complete one lacks none
    store = guarded_store(url, missing_ok=not complete)
    ds = xr.open_zarr(store, group=path, consolidated=False, zarr_format=3)
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
        complete = bool(group.attrs.get(COMPLETE, False))
        if group.attrs.get(RESULT_SET, False):
            if not complete:
                return  # an unfinished set hides all its parts
        elif complete:
            found.append(name)
            return
        for key, child in group.groups():
            walk(child, f"{name}/{key}" if name else key)

    walk(root, "")
    pre = prefix.strip("/")
    return sorted(n for n in found if not pre or n == pre or n.startswith(pre + "/"))


def result_states(url: str) -> list[dict[str, Any]]:
    """Every result and result set with its state, for ``gexplain info``.

    Returns
    -------
    list of dict
        ``name`` (relative to ``results/``), ``state`` (``"complete"``, ``"incomplete"`` or, when a
        live writer holds its lease, ``"running"``), ``holder`` (that writer, or None) and ``set``
        (True for a multi-part parent).
    """
    from gexplain.storage.lease import scope_holders

    target = normalize_url(url)
    if not exists(join(target, "results")):
        return []
    out: list[dict[str, Any]] = []

    def state(name: str, complete: bool) -> dict[str, Any]:
        holders = scope_holders(target, result_scope(name))
        running = bool(holders) and not complete
        return {
            "name": name,
            "state": "complete" if complete else ("running" if running else "incomplete"),
            "holder": holders[0] if running else None,
        }

    def walk(group: zarr.Group, name: str) -> None:
        complete = bool(group.attrs.get(COMPLETE, False))
        is_set = bool(group.attrs.get(RESULT_SET, False))
        if name and (is_set or COMPLETE in group.attrs):
            out.append({**state(name, complete), "set": is_set})
            return
        for key, child in group.groups():
            walk(child, f"{name}/{key}" if name else key)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
        walk(_open_group(join(target, "results"), "r"), "")
    return sorted(out, key=lambda r: r["name"])


class BlockLedger:
    """Record of finished blocks of a resumable job: one small marker group per key.

    Resume means: skip every key for which :meth:`is_done` is True. A marker is the group document
    ``ledger/<name>/<key>/zarr.json`` (its attributes hold the key's info), written atomically only
    after the block's data is written. A ledger belongs to one running job: opening it takes the
    lease of the result it fills, so a second job of the same name fails at once, before any work.

    Parameters
    ----------
    url
        The store.
    name
        The job's name, the result it fills (e.g. ``"explain/quickstart"``).
    """

    def __init__(self, url: str, name: str) -> None:
        self.store = normalize_url(url)
        self.name = name.strip("/")
        self.root = join(url, "ledger", name)
        hold_result(self.store, self.name)

    def _marker(self, key: str) -> str:
        return join(self.root, key.replace("/", "__"))

    def is_done(self, key: str) -> bool:
        """Return True when ``key`` has a marker."""
        return read_group(self._marker(key)) is not None

    def mark_done(self, key: str, info: Mapping[str, Any] | None = None) -> None:
        """Write the marker for ``key`` with optional JSON-serialisable ``info``."""
        hold_result(self.store, self.name)
        write_group(self._marker(key), {"key": key, "at": _now(), **(info or {})}, parents_below=self.store)

    def done_keys(self) -> set[str]:
        """Return every finished key."""
        fs, path = filesystem(self.root)
        if not fs.exists(path):
            return set()
        names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
        return {
            n.replace("__", "/")
            for n in names
            if not n.startswith(".") and n != "zarr.json" and read_group(join(self.root, n)) is not None
        }

    def clear(self) -> None:
        """Remove every marker (a fresh start)."""
        hold_result(self.store, self.name)
        fs, path = filesystem(self.root)
        if fs.exists(path):
            fs.rm(path, recursive=True)
