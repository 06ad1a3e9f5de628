"""The Mann-Whitney U (Wilcoxon rank-sum) test (:mod:`gexplain.pipelines.de.mannwhitney`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import xarray as xr
from gexplain.pipelines.de.mannwhitney import run_mannwhitney
from gexplain.pipelines.de.registry import DeMethod, NoOptions
from gexplain.pipelines.params import StageParams

if TYPE_CHECKING:
    from gexplain.pipelines.de.contrasts import Contrast
    from gexplain.pipelines.de.params import DeTest
    from gexplain.pipelines.progress import Progress


def _kernel(
    ds: xr.Dataset, req: DeTest, options: StageParams, contrast: Contrast, layer: str, progress: Progress
) -> xr.Dataset:
    return run_mannwhitney(ds, contrast, layer=layer, gene_block=req.gene_block, progress=progress)


METHOD = DeMethod(
    name="mannwhitney",
    description="Mann-Whitney U (Wilcoxon rank-sum) test",
    options=NoOptions,
    kernel=_kernel,
    layers=("cpm",),
)
