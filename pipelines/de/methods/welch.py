"""Welch's t-test on log2 expression (:mod:`gexplain.pipelines.de.welch`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import xarray as xr
from gexplain.pipelines.de.registry import DeMethod, NoOptions
from gexplain.pipelines.de.welch import run_welch
from gexplain.pipelines.params import StageParams

if TYPE_CHECKING:
    from gexplain.pipelines.de.contrasts import Contrast
    from gexplain.pipelines.de.params import DeTest
    from gexplain.pipelines.progress import Progress


def _kernel(
    ds: xr.Dataset, req: DeTest, options: StageParams, contrast: Contrast, layer: str, progress: Progress
) -> xr.Dataset:
    return run_welch(ds, contrast, layer=layer, gene_block=req.gene_block, progress=progress)


METHOD = DeMethod(
    name="welch",
    description="Welch's t-test on log2 expression",
    options=NoOptions,
    kernel=_kernel,
    layers=("log_expr", "cpm"),
)
