"""Classifier models (MLP, CNN), their training on Ray, cross-validation and loading.

``load_models(store_url, model_set="default", genes=None, fill=None) -> list[LoadedModel]`` is the
entry point for code that uses trained models (see :mod:`gexplain.pipelines.models.load`). Both names
are imported on first use, so that importing :mod:`gexplain.pipelines.models.params` stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LoadedModel", "load_models"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("gexplain.pipelines.models.load"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
