"""Classifier models (MLP, CNN), their training on Ray, cross-validation and loading.

``load_models(store_url, model_set="default", genes=None, fill=None) -> list[LoadedModel]`` is the
entry point for code that uses trained models (see :mod:`gexplain.pipelines.models.load`).
"""

from gexplain.pipelines.models.load import LoadedModel, load_models

__all__ = ["LoadedModel", "load_models"]
