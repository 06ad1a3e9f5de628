"""One DE test (:class:`gexplain.pipelines.de.stage.DeTest`: a method, an optional design and its contrasts) — checked, then run.

:func:`plan` resolves every contrast and checks every option against the store *before* any
compute (unknown columns or levels, groups under 2 samples, covariates given to a rank test,
unknown layers or presets). :func:`execute` then runs the method per gene block and returns one
result Dataset per contrast (see :mod:`gexplain.pipelines.de.output`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from gexplain.pipelines.de import contrasts as cx
from gexplain.pipelines.de.blockwise import check_layer
from gexplain.pipelines.de.mannwhitney import run_mannwhitney
from gexplain.pipelines.de.presets import get_preset, with_calls
from gexplain.pipelines.de.welch import run_welch
from gexplain.pipelines.progress import SILENT, Progress
from gexplain.storage.errors import InputError
from gexplain.storage.schema import SAMPLE

if TYPE_CHECKING:
    from gexplain.pipelines.de.stage import DeTest

METHODS = ("deseq2", "mannwhitney", "welch")
DEFAULT_LAYER = {"mannwhitney": "cpm", "welch": "log_expr"}
DERIVED_LEVELS = ("level", "rest")


@dataclass
class Plan:
    """A checked request: its resolved contrasts, the layer and the groups left out."""

    request: DeTest
    contrasts: list[cx.Contrast]
    layer: str
    skipped: list[str] = field(default_factory=list)


def _resolve_layer(ds: xr.Dataset, req: DeTest) -> str:
    if req.method == "deseq2":
        if req.layer not in (None, "counts"):
            raise InputError(f"--layer {req.layer}: deseq2 models raw counts; drop --layer for deseq2")
        return "counts"
    layer = req.layer or DEFAULT_LAYER[req.method]
    if req.layer is None and layer == "log_expr" and "log_expr" not in ds:
        layer = "cpm"
    check_layer(ds, layer)
    return layer


def _check_rank_design(req: DeTest, factors: set[str]) -> None:
    if req.design is None:
        return
    from gexplain.pipelines.de.deseq2.design import parse_terms

    terms = parse_terms(req.design)
    extra = [t for t in terms if t not in factors]
    if extra:
        raise InputError(
            f"--design {req.design!r}: {req.method} compares two groups and cannot adjust for "
            f"covariates ({', '.join(extra)}); drop --design or use --method deseq2"
        )


def plan(ds: xr.Dataset, req: DeTest) -> Plan:
    """Resolve and check a request against the store, without computing anything.

    Raises
    ------
    InputError
        Unknown method, column, level, layer or preset; a group under 2 samples; no contrast;
        covariates for a rank/t test; for deseq2, a design that is not full rank or whose
        columns are missing (checked on the sample columns only; counts are checked by deseq2).
    """
    policy = req.unlabelled
    if req.preset is not None:
        get_preset(req.preset)
    found: list[cx.Contrast] = [cx.pairwise(ds, *c, unlabelled=policy) for c in req.contrasts]
    skipped: list[str] = []
    if req.one_vs_rest is not None:
        found += cx.one_vs_rest(ds, req.one_vs_rest.column, req.one_vs_rest.level, unlabelled=policy)
    if req.per_group is not None:
        pg = req.per_group
        groups, skipped = cx.per_group(ds, pg.by, pg.column, pg.test, pg.ref, unlabelled=policy)
        found += groups
    if not found:
        raise InputError(
            "no contrast given; pass --contrast COLUMN TEST REF, --one-vs-rest COLUMN or "
            "--per-group BY COLUMN TEST REF (config: contrasts, one_vs_rest, per_group)"
        )
    names = [c.name for c in found]
    if len(set(names)) != len(names):
        raise InputError(f"the same contrast is requested twice ({', '.join(names)}); list each once")
    if req.method == "deseq2":
        for contrast in found:
            _check_deseq2(ds, req, contrast)
    else:
        _check_rank_design(req, {c.factor for c in found})
    return Plan(req, found, _resolve_layer(ds, req), skipped)


def _deseq2_design(design: str | None, factor: str, replace: str | None = None) -> str:
    """The design for one deseq2 fit: the user's, with ``factor`` swapped for ``replace``."""
    if design is None:
        return f"~ {replace or factor}"
    if replace is None:
        return design
    from gexplain.pipelines.de.deseq2.design import parse_terms

    terms = parse_terms(design)
    terms = [replace if t == factor else t for t in terms]
    if replace not in terms:
        terms.append(replace)
    return "~ " + " + ".join(terms)


def _deseq2_inputs(
    ds: xr.Dataset, req: DeTest, contrast: cx.Contrast
) -> tuple[xr.Dataset, str, tuple[str, str, str]]:
    """The samples, design and contrast of one deseq2 fit: all samples (pairwise), a derived
    two-level factor (one vs rest) or the group's samples (per group)."""
    factor, test, ref = contrast.factor, contrast.test, contrast.ref
    if contrast.kind == "one_vs_rest":
        rows = np.sort(np.concatenate([contrast.test_index, contrast.ref_index]))
        labels = np.full(ds.sizes[SAMPLE], DERIVED_LEVELS[1], dtype=object)
        labels[contrast.test_index] = DERIVED_LEVELS[0]
        derived = f"{factor}_vs_rest"
        data = ds.assign({f"sample_{derived}": (SAMPLE, labels)}).isel({SAMPLE: rows})
        return data, _deseq2_design(req.design, factor, derived), (derived, *DERIVED_LEVELS)
    if contrast.within is not None:
        inside = cx.levels(ds, contrast.within[0], req.unlabelled) == contrast.within[1]
        return (
            ds.isel({SAMPLE: np.flatnonzero(inside)}),
            _deseq2_design(req.design, factor),
            (factor, test, ref),
        )
    return ds, _deseq2_design(req.design, factor), (factor, test, ref)


def _check_deseq2(ds: xr.Dataset, req: DeTest, contrast: cx.Contrast) -> None:
    """Build the design of one deseq2 fit and check its contrast (no counts are read)."""
    from gexplain.pipelines.de.deseq2.design import build_design, check_contrast

    data, design, triple = _deseq2_inputs(ds, req, contrast)
    check_contrast(build_design(data, design), triple)


def _run_deseq2(ds: xr.Dataset, req: DeTest, contrast: cx.Contrast, progress: Progress) -> xr.Dataset:
    """Fit DESeq2 for one contrast (see :func:`_deseq2_inputs`)."""
    from gexplain.pipelines.de.deseq2 import run_deseq2

    data, design, triple = _deseq2_inputs(ds, req, contrast)
    results = run_deseq2(
        data,
        design,
        [triple],
        size_factors=req.size_factors,
        alpha=req.alpha,
        gene_block=req.gene_block,
        progress=progress,
    )
    (result,) = results.values()
    result.attrs.update(
        contrast=[contrast.factor, contrast.test, contrast.ref], design=design, layer="counts"
    )
    if contrast.within is not None:
        result.attrs["within"] = list(contrast.within)
    return result


def execute(ds: xr.Dataset, checked: Plan, *, progress: Progress | None = None) -> dict[str, xr.Dataset]:
    """Run a checked request; return one result Dataset per contrast, keyed by contrast name."""
    progress = progress or SILENT
    req = checked.request
    out: dict[str, xr.Dataset] = {}
    for contrast in checked.contrasts:
        if req.method == "deseq2":
            result = _run_deseq2(ds, req, contrast, progress)
        else:
            run = run_mannwhitney if req.method == "mannwhitney" else run_welch
            result = run(ds, contrast, layer=checked.layer, gene_block=req.gene_block, progress=progress)
        if req.preset is not None:
            result = with_calls(result, get_preset(req.preset))
        out[contrast.name] = result
    return out
