"""Model checkpoints stored with an expression store.

Layout (local path or fsspec URL)::

    <store>/models/<model_set>/replicate-<k>.pt     serialised weights (opaque bytes)
    <store>/models/<model_set>/replicate-<k>.json   metadata (JSON object)

Both files are written atomically, the weights first; the JSON, which records the weights'
SHA-256, is the completion marker, so a checkpoint whose JSON is missing is never listed and a
checkpoint whose weights do not match their recorded hash is refused. This module knows nothing
of torch: callers pass and receive plain bytes and dicts.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from storage.errors import InputError
from storage.paths import atomic_write_bytes, filesystem, join

MODELS_DIR = "models"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REPLICATE = re.compile(r"^replicate-(\d+)\.json$")


def _check_name(model_set: str) -> None:
    if not _NAME.match(model_set):
        raise InputError(
            f"model set name '{model_set}' is not allowed; use letters, digits, '.', '_' or '-' "
            "(e.g. --model-set tissue_mlp)"
        )


def model_set_url(store_url: str, model_set: str) -> str:
    """Return the folder of one model set: ``<store>/models/<model_set>``."""
    _check_name(model_set)
    return join(store_url, MODELS_DIR, model_set)


def checkpoint_urls(store_url: str, model_set: str, replicate: int) -> tuple[str, str]:
    """Return the (weights, metadata) URLs of one replicate."""
    base = model_set_url(store_url, model_set)
    return f"{base}/replicate-{int(replicate)}.pt", f"{base}/replicate-{int(replicate)}.json"


def save_checkpoint(
    store_url: str, model_set: str, replicate: int, weights: bytes, metadata: dict[str, Any]
) -> str:
    """Write one checkpoint atomically (weights, then metadata with the weights' hash).

    Parameters
    ----------
    store_url
        The expression store (path or fsspec URL).
    model_set
        Name of the model set (folder under ``models/``).
    replicate
        Replicate number k >= 0.
    weights
        Serialised weights.
    metadata
        JSON-serialisable metadata; ``sha256``, ``replicate`` and ``model_set`` are added.

    Returns
    -------
    str
        URL of the metadata file.
    """
    pt_url, json_url = checkpoint_urls(store_url, model_set, replicate)
    atomic_write_bytes(pt_url, weights)
    meta = {
        **metadata,
        "model_set": model_set,
        "replicate": int(replicate),
        "sha256": hashlib.sha256(weights).hexdigest(),
    }
    atomic_write_bytes(json_url, json.dumps(meta, indent=1, sort_keys=True).encode())
    return json_url


def _read(url: str) -> bytes:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as fh:
        data: bytes = fh.read()
    return data


def read_metadata(store_url: str, model_set: str, replicate: int) -> dict[str, Any]:
    """Return one checkpoint's metadata without reading its weights."""
    _, json_url = checkpoint_urls(store_url, model_set, replicate)
    try:
        meta: dict[str, Any] = json.loads(_read(json_url))
    except FileNotFoundError:
        raise InputError(
            f"no checkpoint {json_url}; list the model sets with list_model_sets or train one with `gexplain train`"
        ) from None
    return meta


def load_checkpoint(store_url: str, model_set: str, replicate: int) -> tuple[bytes, dict[str, Any]]:
    """Read one checkpoint and verify the weights against the recorded SHA-256.

    Returns
    -------
    tuple
        (weights bytes, metadata dict).
    """
    meta = read_metadata(store_url, model_set, replicate)
    pt_url, _ = checkpoint_urls(store_url, model_set, replicate)
    weights = _read(pt_url)
    if hashlib.sha256(weights).hexdigest() != meta.get("sha256"):
        raise InputError(
            f"checkpoint {pt_url} does not match its recorded SHA-256; retrain model set '{model_set}'"
        )
    return weights, meta


def list_checkpoints(store_url: str, model_set: str) -> list[int]:
    """Return the replicate numbers of the complete checkpoints of a model set, ascending."""
    fs, path = filesystem(model_set_url(store_url, model_set))
    if not fs.exists(path):
        return []
    found = []
    for entry in fs.ls(path, detail=False):
        match = _REPLICATE.match(str(entry).rstrip("/").rsplit("/", 1)[-1])
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def list_model_sets(store_url: str) -> list[str]:
    """Return the names of the model sets stored with a store that hold at least one checkpoint."""
    fs, path = filesystem(join(store_url, MODELS_DIR))
    if not fs.exists(path):
        return []
    names = [str(e).rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)]
    return sorted(n for n in names if _NAME.match(n) and list_checkpoints(store_url, n))


def delete_model_set(store_url: str, model_set: str) -> None:
    """Remove a model set's folder (metadata first, so no half-deleted checkpoint is listed)."""
    fs, path = filesystem(model_set_url(store_url, model_set))
    if not fs.exists(path):
        return
    for replicate in list_checkpoints(store_url, model_set):
        _, json_url = checkpoint_urls(store_url, model_set, replicate)
        jfs, jpath = filesystem(json_url)
        jfs.rm(jpath)
    fs.rm(path, recursive=True)


def save_model_set_report(store_url: str, model_set: str, name: str, report: dict[str, Any]) -> str:
    """Write a JSON report (e.g. cross-validation metrics) beside a model set's checkpoints.

    Parameters
    ----------
    name
        File stem, e.g. ``"cv"`` -> ``<store>/models/<model_set>/cv.json``.

    Returns
    -------
    str
        URL of the report.
    """
    _check_name(name)
    url = f"{model_set_url(store_url, model_set)}/{name}.json"
    atomic_write_bytes(url, json.dumps(report, indent=1, sort_keys=True, default=str).encode())
    return url
