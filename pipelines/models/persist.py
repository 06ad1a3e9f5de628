"""Turn trained modules into checkpoint bytes + metadata and back (torch side of gexplain.storage.checkpoints)."""

from __future__ import annotations

import io
from typing import Any

import torch
from gexplain.pipelines.versions import library_versions
from gexplain.storage.checkpoints import ModelSetWriter, load_checkpoint, save_checkpoint
from torch import nn

CHECKPOINT_LIBRARIES = ("gexplain", "torch", "numpy", "ray", "xarray", "zarr", "scikit-learn")


def state_bytes(module: nn.Module) -> bytes:
    """Serialise a module's state_dict (moved to CPU) with ``torch.save``."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def state_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    """Deserialise a state_dict written by :func:`state_bytes` (tensors only, ``weights_only``)."""
    state: dict[str, torch.Tensor] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return state


def save_model(
    store_url: str, model_set: str, replicate: int, weights: bytes, metadata: dict[str, Any]
) -> str:
    """Store one trained replicate with the store; adds library versions to the metadata.

    Returns
    -------
    str
        URL of the checkpoint's metadata file.
    """
    return save_checkpoint(
        store_url,
        model_set,
        replicate,
        weights,
        {**metadata, "versions": library_versions(CHECKPOINT_LIBRARIES)},
    )


def add_model(writer: ModelSetWriter, replicate: int, weights: bytes, metadata: dict[str, Any]) -> str:
    """Add one trained replicate to a model set being written; adds library versions to the metadata."""
    return writer.add(replicate, weights, {**metadata, "versions": library_versions(CHECKPOINT_LIBRARIES)})


def read_model(
    store_url: str, model_set: str, replicate: int
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, metadata) of one stored replicate."""
    data, meta = load_checkpoint(store_url, model_set, replicate)
    return state_from_bytes(data), meta
