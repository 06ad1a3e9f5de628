"""One DE test (:class:`gexplain.pipelines.de.params.DeTest`: a method, an optional design and its contrasts) — checked, then run.

:func:`plan` resolves every contrast and checks every option against the store *before* any
compute (unknown columns or levels, groups under 2 samples, covariates given to a method that
cannot adjust for them, unknown layers or presets, the method's own checks). :func:`execute`
then runs the method's kernel (:mod:`gexplain.pipelines.de.registry`) per contrast and returns
one result Dataset per contrast (see :mod:`gexplain.pipelines.de.output`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import xarray as xr
from gexplain.pipelines.de import contrasts as cx
from gexplain.pipelines.de.blockwise import check_layer
from gexplain.pipelines.de.params import DeTest
from gexplain.pipelines.de.presets import get_preset, with_calls
from gexplain.pipelines.de.registry import DeMethod, get_method
from gexplain.pipelines.progress import SILENT, Progress
from gexplain.storage.errors import InputError


@dataclass
class Plan:
    """A checked request: its resolved contrasts, the layer and the groups left out."""

    request: DeTest
    contrasts: list[cx.Contrast]
    layer: str
    skipped: list[str] = field(default_factory=list)


def _resolve_layer(ds: xr.Dataset, req: DeTest, method: DeMethod) -> str:
    if method.needs_counts:
        if req.layer not in (None, "counts"):
            raise InputError(
                f"--layer {req.layer}: {method.name} models raw counts; drop --layer for {method.name}"
            )
        return "counts"
    layer = req.layer or next((name for name in method.layers if name in ds), method.layers[-1])
    check_layer(ds, layer)
    return layer


def _check_covariates(req: DeTest, factors: set[str]) -> None:
    if req.design is None:
        return
    from gexplain.pipelines.de.deseq2.design import parse_terms

    extra = [t for t in parse_terms(req.design) if t not in factors]
    if extra:
        raise InputError(
            f"--design {req.design!r}: {req.method} compares two groups and cannot adjust for "
            f"covariates ({', '.join(extra)}); drop --design or use --method deseq2 or edger"
        )


def plan(ds: xr.Dataset, req: DeTest) -> Plan:
    """Resolve and check a request against the store, without computing anything.

    Raises
    ------
    InputError
        Unknown column, level, layer or preset; a group under 2 samples; no contrast;
        covariates for a method without them; the method's own checks (for the GLMs, a design
        that is not full rank or whose columns are missing, checked on the sample columns only;
        counts are checked by the kernel).
    """
    method = get_method(req.method)
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
    if not method.covariates:
        _check_covariates(req, {c.factor for c in found})
    if method.check is not None:
        for contrast in found:
            method.check(ds, req, contrast)
    return Plan(req, found, _resolve_layer(ds, req, method), skipped)


def execute(ds: xr.Dataset, checked: Plan, *, progress: Progress | None = None) -> dict[str, xr.Dataset]:
    """Run a checked request; return one result Dataset per contrast, keyed by contrast name."""
    progress = progress or SILENT
    req = checked.request
    method = get_method(req.method)
    options = method.options_of(req)
    out: dict[str, xr.Dataset] = {}
    for contrast in checked.contrasts:
        result = method.kernel(ds, req, options, contrast, checked.layer, progress)
        if req.preset is not None:
            result = with_calls(result, get_preset(req.preset))
        out[contrast.name] = result
    return out
