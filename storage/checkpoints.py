"""Model checkpoints stored with an expression store, as whole, atomic model sets.

Layout (local path or fsspec URL; every node is Zarr, so plain Zarr readers see groups and arrays)::

    <store>/models/<model_set>/                  group; attrs: gexplain_complete, replicates, created
    <store>/models/<model_set>/replicate-<k>     1-d uint8 array: serialised weights; attrs: metadata
    <store>/models/<model_set>/reports/<name>    group; attrs: a JSON report (e.g. cross-validation)

A model set counts only once its group says ``gexplain_complete`` and lists its replicates.
Training writes a set with :class:`ModelSetWriter`: locally under a hidden sibling
``models/.<set>.partial-<host>-<pid>-<hex>`` that is renamed into place whole (an existing set is
moved aside first and removed after), so a killed train leaves the old set or nothing, never a
part. On object stores (no rename) the old set is removed and the new one written in place with the
flag set last. Each replicate's metadata records the weights' SHA-256; weights that do not match
are refused. This module knows nothing of torch: callers pass and receive plain bytes and dicts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from typing import Any

import numpy as np
import zarr
from gexplain.storage import faults
from gexplain.storage.backend import backend_for
from gexplain.storage.errors import DamagedStoreError, InputError
from gexplain.storage.gc import remove_stale_siblings
from gexplain.storage.integrity import codecs, guarded_store
from gexplain.storage.lease import fence, hold_scope
from gexplain.storage.names import validate_name
from gexplain.storage.nodes import ensure_groups, read_group, write_group
from gexplain.storage.paths import exists, join, normalize_url

MODELS_DIR = "models"
COMPLETE = "gexplain_complete"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _check_name(model_set: str) -> None:
    validate_name(model_set, "model set name")


def model_set_url(store_url: str, model_set: str) -> str:
    """Return the folder of one model set: ``<store>/models/<model_set>``."""
    _check_name(model_set)
    return join(store_url, MODELS_DIR, model_set)


def replicate_url(store_url: str, model_set: str, replicate: int) -> str:
    """Return the array of one replicate's weights."""
    return f"{model_set_url(store_url, model_set)}/replicate-{int(replicate)}"


def _write_replicate(
    set_url: str, replicate: int, weights: bytes, metadata: dict[str, Any], model_set: str
) -> None:
    meta = json.loads(json.dumps(metadata, default=str))
    meta.update(model_set=model_set, replicate=int(replicate), sha256=hashlib.sha256(weights).hexdigest())
    data = np.frombuffer(weights, dtype=np.uint8)
    arr = zarr.create_array(
        store=guarded_store(f"{set_url}/replicate-{int(replicate)}", read_only=False, missing_ok=True),
        shape=(data.size,),
        chunks=(max(data.size, 1),),
        dtype="uint8",
        compressors=codecs()[1:],  # weights compress poorly: the checksum only
        overwrite=True,
        zarr_format=3,
        attributes=meta,
    )
    if data.size:
        arr[:] = data


def _set_doc(replicates: list[int], complete: bool, created: str | None = None) -> dict[str, Any]:
    return {
        COMPLETE: complete,
        "replicates": sorted(int(r) for r in replicates),
        "created": created or _now(),
    }


class ModelSetWriter:
    """Write a whole model set aside and swap it in at :meth:`commit`.

    Parameters
    ----------
    store_url
        The expression store.
    model_set
        Name of the set.
    overwrite
        Replace an existing complete set at commit (checked here, before any work).

    Raises
    ------
    InputError
        When the set exists and ``overwrite`` is False, or another process writes it.
    """

    def __init__(self, store_url: str, model_set: str, *, overwrite: bool = False) -> None:
        self.store_url = normalize_url(store_url)
        self.model_set = model_set
        self.final = model_set_url(store_url, model_set)
        if list_checkpoints(store_url, model_set) and not overwrite:
            raise InputError(
                f"model set '{model_set}' already exists in {self.store_url}; choose another --model-set "
                "or pass --overwrite"
            )
        hold_scope(self.store_url, f"models/{model_set}")
        ensure_groups(self.store_url, self.final)
        self.backend = backend_for(self.final)
        if self.backend.renames:
            remove_stale_siblings(self.store_url)
        # object stores cannot rename: there the set is replaced in place, from the first write on
        self.write_url = self.backend.stage(self.final)
        self.replicates: list[int] = []
        self._started = False

    def _start(self) -> None:
        """Begin writing (on object stores this removes the old set: only once there is a new one)."""
        if self._started:
            return
        if self.write_url == self.final:
            delete_model_set(self.store_url, self.model_set)
        write_group(self.write_url, _set_doc([], False))
        self._started = True

    def add(self, replicate: int, weights: bytes, metadata: dict[str, Any]) -> str:
        """Write one replicate (weights + metadata, which gains ``sha256``, ``replicate``, ``model_set``)."""
        self._start()
        faults.point()
        fence(self.store_url)
        _write_replicate(self.write_url, replicate, weights, metadata, self.model_set)
        self.replicates.append(int(replicate))
        return replicate_url(self.store_url, self.model_set, replicate)

    def commit(self) -> list[str]:
        """Flag the set complete and move it into place whole; return its replicates' URLs."""
        self._start()
        fence(self.store_url)
        write_group(self.write_url, _set_doc(self.replicates, True))
        self.backend.commit_tree(self.write_url, self.final, replace=True)
        return [replicate_url(self.store_url, self.model_set, k) for k in sorted(self.replicates)]

    def abort(self) -> None:
        """Remove the set being written (locally; an existing set is untouched)."""
        self.backend.discard(self.write_url, self.final)


def save_checkpoint(
    store_url: str, model_set: str, replicate: int, weights: bytes, metadata: dict[str, Any]
) -> str:
    """Add (or replace) one replicate in a set in place; the set lists it once it is written.

    For tools and tests that build a set replicate by replicate; training uses
    :class:`ModelSetWriter`, which makes the whole set appear at once.

    Parameters
    ----------
    store_url
        The expression store (path or fsspec URL).
    model_set
        Name of the model set.
    replicate
        Replicate number k >= 0.
    weights
        Serialised weights.
    metadata
        JSON-serialisable metadata; ``sha256``, ``replicate`` and ``model_set`` are added.

    Returns
    -------
    str
        URL of the replicate's array.
    """
    url = model_set_url(store_url, model_set)
    hold_scope(store_url, f"models/{model_set}")
    fence(store_url)
    ensure_groups(store_url, url)
    doc = read_group(url) or _set_doc([], True)
    listed = [r for r in doc.get("replicates", []) if r != int(replicate)]
    write_group(url, {**doc, "replicates": sorted(listed)})  # hidden while rewritten
    _write_replicate(url, replicate, weights, metadata, model_set)
    write_group(url, {**doc, **_set_doc([*listed, int(replicate)], True, doc.get("created"))})
    return replicate_url(store_url, model_set, replicate)


def read_metadata(store_url: str, model_set: str, replicate: int) -> dict[str, Any]:
    """Return one checkpoint's metadata without reading its weights."""
    url = replicate_url(store_url, model_set, replicate)
    if int(replicate) not in list_checkpoints(store_url, model_set):
        raise InputError(
            f"no checkpoint {url}; list the model sets with list_model_sets or train one with `gexplain train`"
        )
    return dict(zarr.open_array(normalize_url(url), mode="r", zarr_format=3).attrs)


def load_checkpoint(store_url: str, model_set: str, replicate: int) -> tuple[bytes, dict[str, Any]]:
    """Read one checkpoint and verify the weights against the recorded SHA-256.

    Returns
    -------
    tuple
        (weights bytes, metadata dict).
    """
    meta = read_metadata(store_url, model_set, replicate)
    url = replicate_url(store_url, model_set, replicate)
    array = zarr.open_array(
        guarded_store(store_url),
        path=url[len(normalize_url(store_url)) :].strip("/"),
        mode="r",
        zarr_format=3,
    )
    try:
        weights = np.asarray(array[:], dtype=np.uint8).tobytes()
    except DamagedStoreError:
        raise
    except ValueError as exc:  # a damaged chunk of an unchecksummed (older) checkpoint
        raise InputError(f"checkpoint {url} cannot be read ({exc}); retrain model set '{model_set}'") from exc
    if hashlib.sha256(weights).hexdigest() != meta.get("sha256"):
        raise InputError(
            f"checkpoint {url} does not match its recorded SHA-256; retrain model set '{model_set}'"
        )
    return weights, meta


def model_set_state(store_url: str, model_set: str) -> dict[str, Any] | None:
    """Return a model set's group attributes (``gexplain_complete``, ``replicates``), or None."""
    return read_group(model_set_url(store_url, model_set))


def list_checkpoints(store_url: str, model_set: str) -> list[int]:
    """Return the replicate numbers of a complete model set, ascending (``[]`` for none or incomplete)."""
    doc = model_set_state(store_url, model_set)
    if not doc or not doc.get(COMPLETE, False):
        return []
    return sorted(int(r) for r in doc.get("replicates", []))


def _set_names(store_url: str) -> list[str]:
    names = backend_for(store_url).list(join(store_url, MODELS_DIR))
    return sorted(n for n in names if not n.startswith(".") and n != "zarr.json")


def list_model_sets(store_url: str) -> list[str]:
    """Return the names of the complete model sets stored with a store that hold at least one checkpoint."""
    return [n for n in _set_names(store_url) if list_checkpoints(store_url, n)]


def model_set_states(store_url: str) -> list[dict[str, Any]]:
    """Every model set with ``name``, ``state`` (complete/incomplete) and ``replicates`` (for ``info``)."""
    out = []
    for name in _set_names(store_url):
        doc = model_set_state(store_url, name) or {}
        out.append(
            {
                "name": name,
                "state": "complete" if doc.get(COMPLETE) else "incomplete",
                "replicates": doc.get("replicates", []),
            }
        )
    return out


def delete_model_set(store_url: str, model_set: str) -> None:
    """Remove a model set (its flag first, so a half-deleted set never counts)."""
    url = model_set_url(store_url, model_set)
    if not exists(url):
        return
    hold_scope(store_url, f"models/{model_set}")
    doc = read_group(url)
    if doc is not None:
        write_group(url, {**doc, COMPLETE: False})
    backend_for(url).delete(url)


def save_model_set_report(store_url: str, model_set: str, name: str, report: dict[str, Any]) -> str:
    """Write a JSON report (e.g. cross-validation metrics) with a model set.

    Parameters
    ----------
    name
        Report name, e.g. ``"cv"`` -> group ``<store>/models/<model_set>/reports/cv``.

    Returns
    -------
    str
        URL of the report's group.
    """
    validate_name(name, "report name")
    url = f"{model_set_url(store_url, model_set)}/reports/{name}"
    hold_scope(store_url, f"models/{model_set}")
    fence(store_url)
    write_group(url, json.loads(json.dumps(report, default=str)), parents_below=store_url)
    return url


def read_model_set_report(store_url: str, model_set: str, name: str) -> dict[str, Any] | None:
    """Return a report written by :func:`save_model_set_report`, or None."""
    return read_group(f"{model_set_url(store_url, model_set)}/reports/{name}")
