"""edgeR (:mod:`gexplain.pipelines.de.edger`): the NB GLM quasi-likelihood F test or LR test, as R edgeR computes them.

One fit per contrast, with the samples and design of :func:`gexplain.pipelines.de.methods.deseq2.fit_inputs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import xarray as xr
from gexplain.pipelines.de.edger.columns import EXTRA_COLUMNS
from gexplain.pipelines.de.methods.deseq2 import check_fit, fit_inputs, record
from gexplain.pipelines.de.registry import STANDARD_COLUMNS, DeMethod
from gexplain.pipelines.normalize.size_factors import SizeFactorMethod
from gexplain.pipelines.params import StageParams
from pydantic import Field

if TYPE_CHECKING:
    from gexplain.pipelines.de.contrasts import Contrast
    from gexplain.pipelines.de.params import DeTest
    from gexplain.pipelines.progress import Progress

COLUMNS = (*STANDARD_COLUMNS, *EXTRA_COLUMNS)
EdgeRTest = Literal["ql", "lrt"]
"""edger's tests (:data:`gexplain.pipelines.de.edger.driver.TESTS`)."""


class EdgeROptions(StageParams):
    """Options of edger."""

    size_factors: SizeFactorMethod = Field(
        "tmm",
        description="Size factors: median of ratios ('ratio', 'poscounts') or edgeR's TMM effective "
        "library sizes ('tmm'). Default: deseq2 'ratio', edger 'tmm'.",
    )
    test: EdgeRTest = Field(
        "ql",
        description="The edger test: 'ql' (glmQLFit / glmQLFTest, quasi-likelihood F test) or 'lrt' "
        "(glmFit / glmLRT at the tagwise dispersions, the 'edgeR-GLM' likelihood-ratio test).",
    )


def _kernel(
    ds: xr.Dataset, req: DeTest, options: StageParams, contrast: Contrast, layer: str, progress: Progress
) -> xr.Dataset:
    from gexplain.pipelines.de.edger.driver import run_edger

    assert isinstance(options, EdgeROptions)
    data, design, triple = fit_inputs(ds, req, contrast)
    (result,) = run_edger(
        data,
        design,
        [triple],
        size_factors=options.size_factors,
        test=options.test,
        gene_block=req.gene_block,
        progress=progress,
    ).values()
    return record(result, contrast, design)


METHOD = DeMethod(
    name="edger",
    description="edgeR NB GLM: quasi-likelihood F test (glmQLFit / glmQLFTest) or LR test (glmLRT), as R edgeR",
    options=EdgeROptions,
    kernel=_kernel,
    columns=COLUMNS,
    needs_counts=True,
    covariates=True,
    check=check_fit,
)
