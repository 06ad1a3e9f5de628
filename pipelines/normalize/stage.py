"""The ``normalize`` stage: size factors, CPM/TPM/normalized counts and a log layer, written
into the store as new variables.

Config example::

    [[stage]]
    kind = "normalize"
    [stage.params]
    size_factors = "ratio"          # "ratio", "poscounts", "tmm" or "none"
    layers = ["cpm", "norm_counts"]
    log = "cpm"                     # writes log_expr = log2(cpm + 1); "none" keeps log_expr as is
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr
from gexplain.pipelines.normalize.size_factors import size_factors_of
from gexplain.pipelines.normalize.transforms import cpm, log2p1, normalized_counts, tpm
from gexplain.pipelines.progress import dask_tasks
from gexplain.pipelines.stages import Stage, StageContext, StageParams
from gexplain.storage.errors import InputError
from gexplain.storage.schema import SAMPLE
from gexplain.storage.store import add_variables, open_store
from pydantic import Field, model_validator

Layer = Literal["cpm", "tpm", "norm_counts"]


class NormalizeParams(StageParams):
    """Parameters of the ``normalize`` stage."""

    size_factors: Literal["ratio", "poscounts", "tmm", "none"] = Field(
        "ratio",
        description="Size factors written as 'size_factors': DESeq2 median of ratios ('ratio', "
        "'poscounts'), edgeR TMM effective library sizes ('tmm'), or 'none'.",
    )
    layers: list[Layer] = Field(default_factory=lambda: ["cpm"], description="Layers to write.")
    log: Literal["cpm", "tpm", "norm_counts", "none"] = Field(
        "none", description="Write log_expr = log2(<layer> + 1) of this layer ('none': leave log_expr)."
    )

    @model_validator(mode="after")
    def _norm_counts_need_size_factors(self) -> NormalizeParams:
        if self.size_factors == "none" and "norm_counts" in (*self.layers, self.log):
            raise ValueError(
                "layer 'norm_counts' needs size factors; set size_factors to 'ratio' or 'poscounts'"
            )
        return self


def normalize_dataset(ds: xr.Dataset, params: NormalizeParams) -> xr.Dataset:
    """Compute normalized layers of a store's counts (lazily when the counts are dask-backed).

    Parameters
    ----------
    ds
        A store Dataset with ``counts`` (sample, gene) and, for TPM, ``gene_length`` (gene,) in bp.
    params
        Which size factors (DESeq2 median of ratios, computed now: two streamed passes), layers
        and log layer (checked by the model).

    Returns
    -------
    xarray.Dataset
        New variables: ``size_factors`` (sample,) float64 and the requested (sample, gene)
        layers as float32; ``log_expr`` carries ``attrs['log_expr_source']``.

    Raises
    ------
    InputError
        Missing counts, TPM without gene lengths.
    """
    if "counts" not in ds:
        raise InputError("the store has no 'counts' layer; normalization needs raw read counts")
    size_factors, layers, log = params.size_factors, params.layers, params.log
    wanted = list(dict.fromkeys([*layers, *([log] if log != "none" else [])]))
    counts = ds["counts"]
    out: dict[str, xr.DataArray] = {}
    sf: np.ndarray | None = None
    if size_factors != "none":
        sf = size_factors_of(counts.data, size_factors)
        out["size_factors"] = xr.DataArray(sf, dims=(SAMPLE,), attrs={"method": size_factors})
    computed: dict[str, xr.DataArray] = {}
    for name in wanted:
        if name == "cpm":
            computed[name] = cpm(counts)
        elif name == "tpm":
            computed[name] = tpm(counts, ds["gene_length"] if "gene_length" in ds else None)
        else:
            assert sf is not None
            computed[name] = normalized_counts(counts, sf)
    for name in layers:
        out[name] = computed[name].astype(np.float32)
    if log != "none":
        out["log_expr"] = log2p1(computed[log]).astype(np.float32)
        out["log_expr"].attrs["log_expr_source"] = log
    return xr.Dataset(out)


def run(ctx: StageContext, params: NormalizeParams) -> dict[str, Any]:
    """Normalize the run's store and add the new variables to it."""
    ds = open_store(ctx.store_url)
    with ctx.progress.task("normalize: size factors (dask tasks)") as task, dask_tasks(task):
        new = normalize_dataset(ds, params)
    with ctx.progress.task("normalize: write layers (dask tasks)") as task, dask_tasks(task):
        names = add_variables(ctx.store_url, new)
    outputs: dict[str, Any] = {"variables": names}
    if "size_factors" in new:
        sf = new["size_factors"].values
        outputs["size_factors"] = {"min": float(sf.min()), "max": float(sf.max())}
    return outputs


STAGE = Stage(
    kind="normalize",
    params=NormalizeParams,
    run=run,
    description="Size factors, CPM/TPM/normalized counts and log2(x+1), written into the store.",
)
