"""DESeq2 (:mod:`gexplain.pipelines.de.deseq2`): the negative binomial GLM with Wald tests, as R computes it.

One fit per contrast: all samples (pairwise contrasts), the contrast's samples with a derived
two-level factor ``<column>_vs_rest`` (one vs rest), or the group's samples (per group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import xarray as xr
from gexplain.pipelines.de.registry import STANDARD_COLUMNS, DeMethod
from gexplain.pipelines.normalize.size_factors import SizeFactorMethod
from gexplain.pipelines.params import StageParams
from gexplain.storage.schema import SAMPLE
from pydantic import Field

if TYPE_CHECKING:
    from gexplain.pipelines.de.contrasts import Contrast
    from gexplain.pipelines.de.params import DeTest
    from gexplain.pipelines.progress import Progress

DERIVED_LEVELS = ("level", "rest")
BackendName = Literal["numpy", "torch"]
"""The kernels' backends (:mod:`gexplain.pipelines.de.deseq2.backends`)."""


class DESeq2Options(StageParams):
    """Options of deseq2."""

    size_factors: SizeFactorMethod = Field(
        "ratio",
        description="Size factors: median of ratios ('ratio', 'poscounts') or edgeR's TMM effective "
        "library sizes ('tmm'). Default: deseq2 'ratio', edger 'tmm'.",
    )
    backend: BackendName = Field(
        "numpy",
        description="deseq2 kernels: 'numpy', or 'torch' (float64; on CUDA when a GPU is available, else "
        "the CPU). The two agree to rounding.",
    )


def fit_design(design: str | None, factor: str, replace: str | None = None) -> str:
    """The design of one fit: the user's, with ``factor`` swapped for ``replace``."""
    if design is None:
        return f"~ {replace or factor}"
    if replace is None:
        return design
    from gexplain.pipelines.de.deseq2.design import parse_terms

    terms = [replace if t == factor else t for t in parse_terms(design)]
    if replace not in terms:
        terms.append(replace)
    return "~ " + " + ".join(terms)


def fit_inputs(
    ds: xr.Dataset, req: DeTest, contrast: Contrast
) -> tuple[xr.Dataset, str, tuple[str, str, str]]:
    """The samples, design and contrast of one GLM fit (deseq2 and edger)."""
    from gexplain.pipelines.de import contrasts as cx

    factor, test, ref = contrast.factor, contrast.test, contrast.ref
    if contrast.kind == "one_vs_rest":
        rows = np.sort(np.concatenate([contrast.test_index, contrast.ref_index]))
        labels = np.full(ds.sizes[SAMPLE], DERIVED_LEVELS[1], dtype=object)
        labels[contrast.test_index] = DERIVED_LEVELS[0]
        derived = f"{factor}_vs_rest"
        data = ds.assign({f"sample_{derived}": (SAMPLE, labels)}).isel({SAMPLE: rows})
        return data, fit_design(req.design, factor, derived), (derived, *DERIVED_LEVELS)
    if contrast.within is not None:
        inside = cx.levels(ds, contrast.within[0], req.unlabelled) == contrast.within[1]
        return ds.isel({SAMPLE: np.flatnonzero(inside)}), fit_design(req.design, factor), (factor, test, ref)
    return ds, fit_design(req.design, factor), (factor, test, ref)


def check_fit(ds: xr.Dataset, req: DeTest, contrast: Contrast) -> None:
    """Build the design of one fit and check its contrast (no counts are read)."""
    from gexplain.pipelines.de.deseq2.design import build_design, check_contrast

    data, design, triple = fit_inputs(ds, req, contrast)
    check_contrast(build_design(data, design), triple)


def record(result: xr.Dataset, contrast: Contrast, design: str) -> xr.Dataset:
    """Add the contrast, design and layer to a GLM result's attrs."""
    result.attrs.update(
        contrast=[contrast.factor, contrast.test, contrast.ref], design=design, layer="counts"
    )
    if contrast.within is not None:
        result.attrs["within"] = list(contrast.within)
    return result


def _kernel(
    ds: xr.Dataset, req: DeTest, options: StageParams, contrast: Contrast, layer: str, progress: Progress
) -> xr.Dataset:
    from gexplain.pipelines.de.deseq2 import run_deseq2

    assert isinstance(options, DESeq2Options)
    data, design, triple = fit_inputs(ds, req, contrast)
    (result,) = run_deseq2(
        data,
        design,
        [triple],
        size_factors=options.size_factors,
        alpha=req.alpha,
        gene_block=req.gene_block,
        backend=options.backend,
        progress=progress,
    ).values()
    return record(result, contrast, design)


METHOD = DeMethod(
    name="deseq2",
    description="DESeq2 negative binomial GLM, Wald test (as R DESeq2)",
    options=DESeq2Options,
    kernel=_kernel,
    columns=STANDARD_COLUMNS,
    needs_counts=True,
    covariates=True,
    check=check_fit,
)
