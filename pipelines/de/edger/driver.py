"""edgeR's GLM tests over gene blocks, as R edgeR 3.40.2 computes them.

``y <- calcNormFactors(DGEList(counts)); y <- estimateDisp(y, design)``, then either the
quasi-likelihood F test (``test = "ql"``: ``fit <- glmQLFit(y, design); glmQLFTest(fit, contrast = c)``)
or the likelihood-ratio test of McCarthy et al. (2012) (``test = "lrt"``: ``fit <- glmFit(y, design);
glmLRT(fit, contrast = c)``, at the tagwise dispersions), with topTags' BH. Counts are read one gene
block at a time (three passes: APL grid, abundance, fits at the trended dispersions; for ``"ql"`` a
fourth only for genes below the Poisson bound, for ``"lrt"`` a fourth at the tagwise dispersions);
what is kept across blocks is per gene (21 grid values and a few scalars), so memory is bounded by
``n_samples * gene_block``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from gexplain.pipelines.de.deseq2.design import build_design, check_contrast
from gexplain.pipelines.de.edger import dispersion as dsp
from gexplain.pipelines.de.edger.columns import EXTRA_COLUMNS
from gexplain.pipelines.de.edger.glm import add_prior_count, ave_log_cpm, glm_fit
from gexplain.pipelines.de.edger.squeeze import squeeze_var
from gexplain.pipelines.de.multitest import benjamini_hochberg
from gexplain.pipelines.de.registry import STANDARD_COLUMNS
from gexplain.pipelines.normalize.size_factors import check_method, size_factors_of
from gexplain.pipelines.normalize.tmm import tmm_factors
from gexplain.storage.errors import InputError
from scipy.stats import chi2, f

PRIOR_COUNT = 0.125
TESTS = ("ql", "lrt")
"""``"ql"``: glmQLFit / glmQLFTest (quasi-likelihood F test); ``"lrt"``: glmFit / glmLRT (chi-square)."""


@dataclass(frozen=True)
class _Contrast:
    name: str
    vector: np.ndarray  # (coefficient,)
    null_design: np.ndarray  # (sample, coefficient - 1)


def contrast_name(contrast: tuple[str, ...]) -> str:
    """``"<factor>_<test>_vs_<ref>"`` (or the covariate's name)."""
    return contrast[0] if len(contrast) == 1 else f"{contrast[0]}_{contrast[1]}_vs_{contrast[2]}"


def null_design(design: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """glmLRT's null design for one contrast: the design rotated onto the contrast's complement."""
    q, _ = np.linalg.qr(vector[:, None], mode="complete")
    return design @ q[:, 1:]


def _blocks(counts: da.Array, gene_block: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first gene, counts)`` per gene block, counts as float64 (gene, sample)."""
    for lo in range(0, counts.shape[1], gene_block):
        yield lo, np.asarray(counts[:, lo : lo + gene_block].compute(), dtype=np.float64).T


def _check_counts(counts: da.Array, genes: np.ndarray, samples: np.ndarray) -> None:
    """InputError for negative, non-integer or missing counts."""
    if counts.dtype.kind not in "iuf":
        raise InputError(f"layer 'counts' has dtype {counts.dtype}; edger needs integer read counts")
    bad = (
        counts < 0
        if counts.dtype.kind in "iu"
        else (counts < 0) | (counts != da.floor(counts)) | ~da.isfinite(counts)
    )
    per_gene = np.asarray(bad.any(axis=0).compute())
    if per_gene.any():
        g = int(np.flatnonzero(per_gene)[0])
        s = int(np.flatnonzero(np.asarray(bad[:, g].compute()))[0])
        raise InputError(
            f"layer 'counts' holds {int(per_gene.sum())} gene(s) with negative, non-integer or missing "
            f"values, e.g. sample '{samples[s]}', gene '{genes[g]}'; edger needs raw non-negative integer "
            "read counts (not normalised or TPM values)"
        )


def effective_library_sizes(counts: da.Array, size_factors: str) -> np.ndarray:
    """Effective library sizes (reads), dims (sample,): ``lib.size * norm.factors``.

    ``"tmm"``: edgeR's TMM factors. ``"ratio"`` / ``"poscounts"``: DESeq2's size factors as
    normalisation factors (``sf / lib.size`` scaled to a geometric mean of 1).
    """
    lib = np.asarray(counts.sum(axis=1).compute(), dtype=np.float64)
    if (lib <= 0).any():
        first = int(np.flatnonzero(lib <= 0)[0])
        raise InputError(f"sample at position {first} has zero counts in every gene; remove it first")
    if size_factors == "tmm":
        return lib * tmm_factors(counts, lib)
    sf = size_factors_of(counts, size_factors)
    nf = sf / lib
    return lib * nf / np.exp(np.mean(np.log(nf)))


def _pass_grid(
    counts: da.Array, design: np.ndarray, offset: np.ndarray, gene_block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Genes with row sum >= 5 (mask) and their APL grid (selected gene, 21)."""
    sel, grids = [], []
    for _, y in _blocks(counts, gene_block):
        keep = y.sum(axis=1) >= dsp.MIN_ROW_SUM
        sel.append(keep)
        grids.append(dsp.apl_grid(y[keep], design, offset))
    return np.concatenate(sel), np.concatenate(grids)


def _fits(
    y: np.ndarray, design: np.ndarray, offset: np.ndarray, disp: np.ndarray, contrasts: list[_Contrast]
) -> dict[str, np.ndarray]:
    """glmQLFit's fit and glmLRT's null fits of one block (dispersions ``disp``, dims (gene,))."""
    off = np.broadcast_to(offset, y.shape)
    beta, mu, dev = glm_fit(y, design, off, disp)
    yp, offp = add_prior_count(y, offset, PRIOR_COUNT)
    shrunk, _, _ = glm_fit(yp, design, np.broadcast_to(offp, y.shape), disp)
    out = {
        "deviance": dev,
        "df_zero": dsp.residual_df(dsp.zero_fitted(y, mu), design),
        "min_mu": mu.min(axis=1),
    }
    for c in contrasts:
        _, _, dev0 = glm_fit(y, c.null_design, off, disp)
        out[f"lr:{c.name}"] = dev0 - dev
        out[f"lfc:{c.name}"] = shrunk @ c.vector / np.log(2)
    del beta
    return out


def _fit_pass(
    counts: da.Array,
    design: np.ndarray,
    offset: np.ndarray,
    disp: np.ndarray,
    contrasts: list[_Contrast],
    gene_block: int,
) -> dict[str, np.ndarray]:
    """:func:`_fits` over every gene block, concatenated over genes (dispersions ``disp``, (gene,))."""
    parts: dict[str, list[np.ndarray]] = {}
    for lo, y in _blocks(counts, gene_block):
        for key, value in _fits(y, design, offset, disp[lo : lo + y.shape[0]], contrasts).items():
            parts.setdefault(key, []).append(value)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _poisson_pvalues(y: np.ndarray, design: np.ndarray, offset: np.ndarray, c: _Contrast) -> np.ndarray:
    """glmLRT p-values at dispersion 0 (glmQLFTest's Poisson bound), dims (gene,)."""
    off = np.broadcast_to(offset, y.shape)
    zero = np.zeros(y.shape[0])
    _, _, dev = glm_fit(y, design, off, zero)
    _, _, dev0 = glm_fit(y, c.null_design, off, zero)
    return chi2.sf(dev0 - dev, df=design.shape[1] - c.null_design.shape[1])


def run_edger(
    ds: xr.Dataset,
    design: str,
    contrasts: list[tuple[str, ...]],
    *,
    size_factors: str = "tmm",
    test: str = "ql",
    gene_block: int = 2048,
    progress: Any | None = None,
) -> dict[str, xr.Dataset]:
    """edgeR's QL F test or LR test per contrast after estimateDisp, gene block by block.

    Parameters
    ----------
    ds
        Store dataset with ``counts`` (sample, gene) raw read counts and the ``sample_<term>``
        variables named in ``design``.
    design
        Formula such as ``"~ cell + dex"`` (treatment coding, first level alphabetically the
        reference, as R's ``model.matrix``).
    contrasts
        ``[(factor, test_level, ref_level), ...]`` (log2 fold change test over ref) or ``(covariate,)``.
    size_factors
        ``"tmm"`` (edgeR's ``calcNormFactors``) or DESeq2's ``"ratio"`` / ``"poscounts"``.
    test
        ``"ql"``: glmQLFit at the trended dispersions and glmQLFTest's F test (with its Poisson
        bound). ``"lrt"``: glmFit at the tagwise dispersions and glmLRT's chi-square test.
    gene_block
        Genes per block; memory is bounded by ``n_samples * gene_block`` float64 arrays.
    progress
        ``gexplain.pipelines.progress.Progress`` or None.

    Returns
    -------
    dict[str, xarray.Dataset]
        Keyed ``"<factor>_<test>_vs_<ref>"``; over ``gene``: ``baseMean`` (mean TMM-normalised
        count), ``log2FoldChange`` (edgeR's logFC, prior count 0.125, at the test's dispersions),
        ``lfcSE`` (NaN), ``stat`` (the QL F statistic, or the LR statistic: deviance difference),
        ``pvalue``, ``padj`` (BH over all genes) and :data:`EXTRA_COLUMNS` (``ql_dispersion``
        and ``df_total`` NaN for ``"lrt"``).

    Raises
    ------
    InputError
        No counts layer, bad design or contrast, negative or non-integer counts, bad options.
    """
    if "counts" not in ds:
        raise InputError(
            "the store has no 'counts' layer; edger needs raw read counts (ingest a counts file)"
        )
    if not contrasts:
        raise InputError("no contrast given; pass at least one [factor, test_level, ref_level]")
    check_method(size_factors)
    if test not in TESTS:
        raise InputError(f"test={test!r} is not an edger test; use 'ql' (F test) or 'lrt' (likelihood ratio)")
    if gene_block < 1:
        raise InputError(f"gene_block={gene_block} must be a positive number of genes")
    dsgn = build_design(ds, design)
    wanted = [tuple(str(x) for x in c) for c in contrasts]
    for c in wanted:
        check_contrast(dsgn, c)
    x = dsgn.matrix
    n, p = x.shape
    tests = [
        _Contrast(contrast_name(c), dsgn.contrast_vector(c), null_design(x, dsgn.contrast_vector(c)))
        for c in wanted
    ]
    stored = ds["counts"].data
    counts = (
        stored if isinstance(stored, da.Array) else da.from_array(np.asarray(stored), chunks=(-1, gene_block))
    )
    genes = np.asarray(ds["gene"].values)
    _check_counts(counts, genes, np.asarray(ds["sample"].values))
    n_genes = counts.shape[1]

    effective = effective_library_sizes(counts, size_factors)
    offset = np.log(effective)
    track = (
        progress.task("edger: dispersions, fits and tests", total=3)
        if progress is not None
        else nullcontext()
    )
    with track as task:
        sel, l0 = _pass_grid(counts, x, offset, gene_block)
        if not sel.any():
            raise InputError("no gene has 5 or more reads in total; edger cannot estimate dispersions")
        common = 0.1 * 2 ** float(dsp.maximize_interpolant(dsp.GRID_POINTS, l0.sum(axis=0)[None, :])[0])
        ave = np.empty(n_genes)
        base_mean = np.empty(n_genes)
        scale = effective / np.exp(np.mean(np.log(effective)))
        for lo, y in _blocks(counts, gene_block):
            ave[lo : lo + y.shape[0]] = ave_log_cpm(y, offset, common)
            base_mean[lo : lo + y.shape[0]] = (y / scale).mean(axis=1)
        if task is not None:
            task.advance(1)

        span = dsp.wleb_span(int(sel.sum()))
        m0 = dsp.locfit_by_col(l0, ave[sel], span)
        trend = 0.1 * 2 ** dsp.maximize_interpolant(dsp.GRID_POINTS, m0)
        trended = np.full(n_genes, trend[np.argmin(ave[sel])])
        trended[sel] = trend

        # the LR test refits at the tagwise dispersions below: here only the deviances
        fits = _fit_pass(counts, x, offset, trended, tests if test == "ql" else [], gene_block)
        if task is not None:
            task.advance(1)

        df_zero = fits["df_zero"]
        with np.errstate(divide="ignore", invalid="ignore"):
            s2 = np.maximum(np.where(df_zero == 0, 0.0, fits["deviance"] / df_zero), 0.0)
        disp_prior_df, _, _ = squeeze_var(s2[sel], df_zero[sel], ave[sel])
        prior_n = disp_prior_df / (n - p)
        tagwise = trended.copy()
        if prior_n <= 1e6:
            tagwise[sel] = 0.1 * 2 ** dsp.maximize_interpolant(dsp.GRID_POINTS, l0 + prior_n * m0)
        if test == "ql":
            df_prior, _, s2_post = squeeze_var(s2, df_zero, ave)
            df_total = np.minimum(df_prior + df_zero, n_genes * (n - p))
            below = (1 + trended * fits["min_mu"]) * s2_post < 1
        else:
            fits = _fit_pass(counts, x, offset, tagwise, tests, gene_block)
            df_prior, s2_post, df_total = np.nan, np.full(n_genes, np.nan), np.full(n_genes, np.nan)

        results: dict[str, xr.Dataset] = {}
        symbols = ds["gene_symbol"].values if "gene_symbol" in ds else np.full(n_genes, "", dtype=object)
        for c in tests:
            df_test = p - c.null_design.shape[1]
            if test == "ql":
                stat = fits[f"lr:{c.name}"] / df_test / s2_post
                pvalue = f.sf(stat, df_test, df_total)
                if below.any():
                    for lo, y in _blocks(counts, gene_block):
                        rows = np.flatnonzero(below[lo : lo + y.shape[0]])
                        if rows.size:
                            pois = _poisson_pvalues(y[rows], x, offset, c)
                            pvalue[lo + rows] = np.maximum(pvalue[lo + rows], pois)
            else:
                stat = fits[f"lr:{c.name}"]
                pvalue = chi2.sf(stat, df=df_test)
            values = {
                "baseMean": base_mean,
                "log2FoldChange": fits[f"lfc:{c.name}"],
                "lfcSE": np.full(n_genes, np.nan),
                "stat": stat,
                "pvalue": pvalue,
                "padj": benjamini_hochberg(pvalue),
                "logCPM": ave,
                "dispersion": trended,
                "tagwise_dispersion": tagwise,
                "ql_dispersion": s2_post,
                "df_total": df_total,
            }
            results[c.name] = xr.Dataset(
                {
                    k: ("gene", np.asarray(values[k], dtype=np.float64))
                    for k in (*STANDARD_COLUMNS, *EXTRA_COLUMNS)
                },
                coords={"gene": genes, "gene_symbol": ("gene", np.asarray(symbols))},
                attrs={
                    "method": "edger",
                    "test": test,
                    "design": design,
                    "common_dispersion": common,
                    "dispersion_prior_df": disp_prior_df,
                    "ql_prior_df": float(df_prior),
                    "span": span,
                },
            )
        if task is not None:
            task.advance(1)
    return results
