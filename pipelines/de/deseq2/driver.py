"""``run_deseq2``: the DESeq2 model on a (sample, gene) count store, one gene block at a time.

Pass 1 (per gene block): mean normalised counts, gene-wise dispersion MLEs and the coefficients of
the initial fit they rest on (pass 2 rebuilds those means from them instead of refitting).
Global: dispersion trend and prior variance over all genes.
Pass 2 (per gene block): MAP dispersions, IRLS coefficients, Cook's distances, outlier replacement
and refit, Wald tests of every contrast.
Global: Cook's p-value filter, independent filtering and BH.
Each block task holds one (sample, gene_block) slice of counts, so memory is bounded by the block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import get_scheduler
from dask.callbacks import Callback
from dask.utils import key_split
from gexplain.pipelines.de.deseq2 import cooks, dispersion, filtering, wald
from gexplain.pipelines.de.deseq2.backends import Backend, get_backend
from gexplain.pipelines.de.deseq2.design import Design, build_design, check_contrast
from gexplain.pipelines.de.multitest import benjamini_hochberg
from gexplain.pipelines.normalize.size_factors import check_method, size_factors_of
from gexplain.storage.errors import InputError
from threadpoolctl import threadpool_limits

RESULT_VARS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj")


@dataclass(frozen=True)
class _Model:
    """Everything a block task needs besides its counts (small, picklable)."""

    design: np.ndarray
    design_df: pd.DataFrame
    size_factors: np.ndarray
    linear_mu: bool
    contrasts: np.ndarray  # (contrast, coefficient)
    groups: np.ndarray  # (contrast, 2, sample): test / ref samples of a factor contrast (all False: a slope)
    replaceable: np.ndarray
    use_for_max: np.ndarray
    cutoff: float
    cooks_refit: bool
    backend: Backend


@dataclass(frozen=True)
class _Global:
    """Results of the global steps between the two passes."""

    trend: dispersion.Trend
    prior: dispersion.Prior


def contrast_name(contrast: Sequence[str]) -> str:
    """Result key: ``"<factor>_<test>_vs_<ref>"``, or the covariate name for a slope."""
    if len(contrast) == 1:
        return str(contrast[0])
    factor, test, ref = contrast
    return f"{factor}_{test}_vs_{ref}"


def _fit_genewise(counts: np.ndarray, model: _Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gene-wise dispersions of non-zero genes and the initial fit they rest on.

    Returns ``(normed_means (gene,), beta_hat (gene, coefficient) or None, genewise (gene,))``:
    ``beta_hat`` holds the IRLS coefficients of the initial means (None where the initial means
    come from the linear fit, which is cheap to redo).
    """
    normed = counts / model.size_factors[:, None]
    mom = dispersion.moments_dispersions(normed, model.size_factors, model.design)
    beta_hat = None
    if model.linear_mu:
        mu_hat = dispersion.linear_mu(counts, model.size_factors, model.design)
    else:
        beta_hat, mu_hat, _, _ = model.backend.irls(counts, model.size_factors, model.design, mom)
        mu_hat = np.maximum(mu_hat, dispersion.MIN_MU)
    genewise = dispersion.genewise_dispersions(counts, model.design, mu_hat, mom, model.backend)
    return normed.mean(axis=0), beta_hat, genewise


def _initial_mu(counts: np.ndarray, model: _Model, beta_hat: np.ndarray) -> np.ndarray:
    """The initial means of :func:`_fit_genewise` again (floored at ``MIN_MU``), dims (sample, gene),
    from its ``beta_hat``."""
    if model.linear_mu:
        return dispersion.linear_mu(counts, model.size_factors, model.design)
    return np.maximum(model.size_factors[:, None] * np.exp(model.design @ beta_hat.T), dispersion.MIN_MU)


def _pass1(block: np.ndarray, model: _Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block: mean normalised counts (0 for all-zero genes), gene-wise dispersions (NaN) and
    initial IRLS coefficients (dims (gene, coefficient), NaN; all NaN with the linear fit)."""
    with threadpool_limits(1):  # tiny per-gene BLAS calls: threaded BLAS only adds contention
        return _pass1_block(np.asarray(block, dtype=np.float64), model)


def _pass1_block(counts: np.ndarray, model: _Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nz = ~(counts == 0).all(axis=0)
    means = np.zeros(counts.shape[1])
    genewise = np.full(counts.shape[1], np.nan)
    beta_hat = np.full((counts.shape[1], model.design.shape[1]), np.nan)
    if nz.any():
        means[nz], beta_nz, genewise[nz] = _fit_genewise(counts[:, nz], model)
        if beta_nz is not None:
            beta_hat[nz] = beta_nz
    return means, genewise, beta_hat


def _dispersions_and_fit(
    counts: np.ndarray, model: _Model, glob: _Global, pass1: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MAP dispersions and IRLS fit of non-zero genes: ``(means, disp, beta, mu, hat, cov)``.

    ``pass1`` is ``(genewise, beta_hat)`` of these genes from pass 1, or None to fit them here.
    """
    if pass1 is None:
        means, beta_hat, genewise = _fit_genewise(counts, model)
    else:
        means = (counts / model.size_factors[:, None]).mean(axis=0)
        genewise, beta_hat = pass1
    mu_hat = _initial_mu(counts, model, beta_hat)
    fitted = glob.trend(means)
    map_disp = dispersion.map_dispersions(
        counts, model.design, mu_hat, genewise, fitted, glob.prior.variance, model.backend
    )
    disp = dispersion.final_dispersions(genewise, fitted, map_disp, glob.prior)
    beta, mu, hat, cov = model.backend.irls(counts, model.size_factors, model.design, disp)
    return means, disp, beta, mu, hat, cov


def _pass2(
    block: np.ndarray, genewise_block: np.ndarray, beta_block: np.ndarray, model: _Model, glob: _Global
) -> np.ndarray:
    """Per block: rows ``[baseMean, cooks_outlier, (lfc, se, stat, pvalue) per contrast]``, dims (row, gene).

    ``genewise_block`` (gene,) and ``beta_block`` (gene, coefficient) are this block's pass-1 results.
    """
    with threadpool_limits(1):
        return _pass2_block(np.asarray(block, dtype=np.float64), genewise_block, beta_block, model, glob)


def _pass2_block(
    counts_all: np.ndarray, genewise_block: np.ndarray, beta_block: np.ndarray, model: _Model, glob: _Global
) -> np.ndarray:
    n_genes = counts_all.shape[1]
    n_con = model.contrasts.shape[0]
    out = np.full((2 + 4 * n_con, n_genes), np.nan)
    out[0] = 0.0
    out[1] = 0.0
    nz = ~(counts_all == 0).all(axis=0)
    if not nz.any():
        return out
    counts = counts_all[:, nz]
    means, disp, beta, mu, hat, cov = _dispersions_and_fit(
        counts, model, glob, (genewise_block[nz], beta_block[nz])
    )
    normed = counts / model.size_factors[:, None]
    cook = cooks.cooks_distance(counts, normed, model.design_df, mu, hat)
    refitted = np.zeros(counts.shape[1], dtype=bool)
    zeroed = np.zeros(counts.shape[1], dtype=bool)
    if model.cooks_refit:
        replaced, sub = cooks.replace_outliers(
            counts, model.size_factors, cook, model.replaceable, model.cutoff
        )
        new_zero = (sub == 0).all(axis=0)
        idx = np.flatnonzero(replaced)
        zeroed[idx[new_zero]] = True
        refitted[idx[~new_zero]] = True
        if refitted.any():
            r_means, r_disp, r_beta, _, _, r_cov = _dispersions_and_fit(sub[:, ~new_zero], model, glob, None)
            means[refitted], disp[refitted], beta[refitted], cov[refitted] = r_means, r_disp, r_beta, r_cov
        means[zeroed] = 0.0
        beta[zeroed] = 0.0
    flagged = cooks.cooks_outliers(counts, cook, refitted, model.replaceable, model.use_for_max, model.cutoff)
    out[0, nz] = means
    out[1, nz] = flagged
    for k, vec in enumerate(model.contrasts):
        lfc, se, stat, pvalue = wald.wald_test(beta, cov, vec)
        se[zeroed], stat[zeroed], pvalue[zeroed] = 0.0, 0.0, 1.0
        # R's results(): no reads in either compared group -> LFC 0, statistic 0, p-value 1
        test, ref = model.groups[k]
        both_zero = (counts[test].sum(axis=0) == 0) & (counts[ref].sum(axis=0) == 0) & test.any()
        lfc[both_zero], stat[both_zero], pvalue[both_zero] = 0.0, 0.0, 1.0
        out[2 + 4 * k : 6 + 4 * k, nz] = np.stack([lfc, se, stat, pvalue])
    return out


def _check_counts(counts: da.Array, gene_ids: np.ndarray, sample_ids: np.ndarray) -> None:
    """Raise InputError for negative, non-integer or missing counts (one pass over the data)."""
    if counts.dtype.kind in "iu":
        bad = counts < 0
    elif counts.dtype.kind == "f":
        bad = (counts < 0) | (counts != da.floor(counts)) | ~da.isfinite(counts)
    else:
        raise InputError(f"layer 'counts' has dtype {counts.dtype}; deseq2 needs integer read counts")
    per_gene = np.asarray(bad.any(axis=0).compute())
    if per_gene.any():
        g = int(np.flatnonzero(per_gene)[0])
        column = np.asarray(counts[:, g].compute())
        s = int(np.flatnonzero(np.asarray(bad[:, g].compute()))[0])
        raise InputError(
            f"layer 'counts' holds {int(per_gene.sum())} gene(s) with negative, non-integer or missing values, "
            f"e.g. sample '{sample_ids[s]}', gene '{gene_ids[g]}' = {column[s]}; deseq2 needs raw "
            "non-negative integer read counts (not normalised or TPM values)"
        )


MIN_TASK_GENES = 128
TARGET_TASKS = 64


def task_genes(n_genes: int, gene_block: int) -> int:
    """Genes per block task: at most ``gene_block`` (the memory bound), small enough for about
    ``TARGET_TASKS`` tasks (load balance over workers), at least ``MIN_TASK_GENES`` (overhead).
    It does not depend on the number of workers, so neither do the results."""
    balanced = -(-n_genes // TARGET_TASKS)
    return max(1, min(gene_block, max(MIN_TASK_GENES, balanced)))


def _active_client() -> Any | None:
    """The Dask distributed client that ``dask.compute`` would use now, else None."""
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return None
    return client if get_scheduler() == client.get else None


class _BlockCounter(Callback):
    """Advances a progress task each time one of the named block tasks finishes (local schedulers)."""

    def __init__(self, name: str, task: Any) -> None:
        super().__init__()
        self._name, self._task = name, task

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key_split(key) == self._name:
            self._task.advance(1)


def _compute_blocks(tasks: list[Any], progress: Any, description: str) -> list[Any]:
    """Compute delayed block tasks in one graph (no barrier between blocks), advancing
    ``progress`` as each block finishes when it is tracked."""
    if progress is None:
        return list(dask.compute(*tasks))
    with progress.task(description, total=len(tasks)) as task:
        client = _active_client()
        if client is None:
            with _BlockCounter(key_split(tasks[0].key), task):
                return list(dask.compute(*tasks))
        from distributed import as_completed

        futures = client.compute(tasks)
        for _ in as_completed(futures):
            task.advance(1)
        return list(client.gather(futures))


def _group_masks(design: Design, contrast: tuple[str, ...], n: int) -> np.ndarray:
    """Samples of the test and reference levels of a factor contrast, dims (2, sample) bool."""
    if len(contrast) == 1:
        return np.zeros((2, n), dtype=bool)
    labels = np.asarray(design.labels[contrast[0]]).astype(str)
    return np.stack([labels == contrast[1], labels == contrast[2]])


def _model(
    design: Design,
    size_factors: np.ndarray,
    contrasts: list[tuple[str, ...]],
    refit: bool,
    backend: Backend,
) -> _Model:
    df = pd.DataFrame(design.matrix, columns=list(design.columns))
    n, p = design.matrix.shape
    return _Model(
        design=design.matrix,
        design_df=df,
        size_factors=size_factors,
        linear_mu=len(df.value_counts()) == p,
        contrasts=np.stack([design.contrast_vector(c) for c in contrasts]),
        groups=np.stack([_group_masks(design, c, n) for c in contrasts]),
        replaceable=cooks.replicate_mask(df, cooks.MIN_REPLICATES),
        use_for_max=cooks.replicate_mask(df, 3),
        cutoff=cooks.cooks_cutoff(n, p),
        cooks_refit=refit,
        backend=backend,
    )


def run_deseq2(
    ds: xr.Dataset,
    design: str,
    contrasts: list[tuple[str, str, str]],
    *,
    size_factors: str = "ratio",
    cooks_refit: bool = True,
    independent_filter: bool = True,
    alpha: float = 0.05,
    gene_block: int = 2048,
    backend: str = "numpy",
    progress: Any | None = None,
) -> dict[str, xr.Dataset]:
    """Differential expression with the DESeq2 model, per gene block on Dask.

    Parameters
    ----------
    ds
        Store dataset with ``counts`` (sample, gene) raw read counts (numpy or dask) and the
        ``sample_<term>`` variables named in ``design``.
    design
        Formula such as ``"~ cell + dex"``; string columns are factors (reference = first level
        alphabetically), numeric columns continuous covariates.
    contrasts
        ``[(factor, test_level, ref_level), ...]``; log2 fold changes are test over ref. A
        continuous covariate is tested as ``(covariate,)`` (log2 fold change per unit).
    size_factors
        ``"ratio"`` or ``"poscounts"`` median-of-ratios size factors, or ``"tmm"``: edgeR's TMM
        effective library sizes scaled to a geometric mean of 1.
    cooks_refit
        Replace Cook's outliers in cells with >= 7 replicates and refit those genes.
    independent_filter
        DESeq2's independent filtering on the mean count before BH (else plain BH).
    alpha
        FDR target used by independent filtering.
    gene_block
        Most genes per block task; a task holds a few (sample, block) float64 arrays, so memory
        is bounded by ``n_samples * gene_block``. Smaller blocks are used when there are too few
        blocks to keep every Dask worker busy; results do not depend on the block size.
    backend
        Kernels of the dispersion fits and IRLS (:mod:`gexplain.pipelines.de.deseq2.backends`):
        ``"numpy"``, or ``"torch"`` (float64, on CUDA when a GPU is available, else the CPU);
        the two agree to rounding.
    progress
        ``gexplain.pipelines.progress.Progress`` to report block progress, or None.

    Returns
    -------
    dict[str, xarray.Dataset]
        Keyed ``"<factor>_<test>_vs_<ref>"``; each over ``gene`` with float64 ``baseMean``
        (normalised counts), ``log2FoldChange`` and ``lfcSE`` (log2 units), ``stat``, ``pvalue``,
        ``padj``; coords ``gene``, ``gene_symbol``; attrs ``method``, ``contrast``, ``design``.

    Raises
    ------
    InputError
        Before any model compute: unknown design column, design not full rank, unknown contrast
        level, a compared group with < 2 samples, negative/non-integer counts, bad options.
    """
    if "counts" not in ds:
        raise InputError(
            "the store has no 'counts' layer; deseq2 needs raw read counts (ingest a counts file)"
        )
    if not contrasts:
        raise InputError("no contrast given; pass at least one [factor, test_level, ref_level]")
    check_method(size_factors)
    kernels = get_backend(backend)
    if gene_block < 1:
        raise InputError(f"gene_block={gene_block} must be a positive number of genes")
    if not 0 < alpha < 1:
        raise InputError(f"alpha={alpha} must lie strictly between 0 and 1")
    dsgn = build_design(ds, design)
    wanted = [tuple(str(x) for x in c) for c in contrasts]
    for c in wanted:
        check_contrast(dsgn, c)
    stored = ds["counts"].data
    if not isinstance(stored, da.Array):
        stored = da.from_array(np.asarray(stored), chunks=(-1, gene_block))
    block = task_genes(stored.shape[1], gene_block)
    counts = stored.rechunk({0: -1, 1: block})
    genes = np.asarray(ds["gene"].values)
    _check_counts(counts, genes, np.asarray(ds["sample"].values))

    # size factors walk sample rows over all genes, reading the store's own chunks: a row block of
    # two gene blocks' float64 (with its ~4 temporaries, about what one block task holds) keeps
    # memory bounded by the gene block while every stored chunk is read only a few times
    row_bytes = max(1, stored.shape[0] * gene_block * 8 * 2)
    sf = size_factors_of(stored, size_factors, block_bytes=row_bytes)
    model = _model(dsgn, sf, wanted, cooks_refit, kernels)
    blocks = list(counts.to_delayed()[0])
    run1 = dask.delayed(_pass1, pure=True)
    first = _compute_blocks([run1(b, model) for b in blocks], progress, "deseq2: gene-wise dispersions")
    means = np.concatenate([r[0] for r in first])
    genewise = np.concatenate([r[1] for r in first])
    beta_hat = np.concatenate([r[2] for r in first])
    nz = ~np.isnan(genewise)
    if not nz.any():
        raise InputError("every gene has zero counts in all samples; the counts layer holds no reads")
    trend = dispersion.fit_trend(means[nz], genewise[nz])
    prior = dispersion.fit_prior(genewise[nz], trend(means[nz]), *dsgn.matrix.shape)
    glob = _Global(trend, prior)

    bounds = np.cumsum((0, *counts.chunks[1]))
    run2 = dask.delayed(_pass2, pure=True)
    tasks = [
        run2(b, genewise[lo:hi], beta_hat[lo:hi], model, glob)
        for b, lo, hi in zip(blocks, bounds[:-1], bounds[1:], strict=True)
    ]
    table = np.concatenate(_compute_blocks(tasks, progress, "deseq2: fits and Wald tests"), axis=1)

    base_mean, outlier = table[0], table[1].astype(bool)
    symbols = ds["gene_symbol"].values if "gene_symbol" in ds else np.full(genes.size, "", dtype=object)
    results: dict[str, xr.Dataset] = {}
    for k, c in enumerate(wanted):
        lfc, se, stat, pvalue = table[2 + 4 * k : 6 + 4 * k]
        pvalue = np.where(outlier, np.nan, pvalue)
        padj = (
            filtering.independent_filtering(base_mean, pvalue, alpha)
            if independent_filter
            else benjamini_hochberg(pvalue)
        )
        values = {
            "baseMean": base_mean,
            "log2FoldChange": lfc / np.log(2),
            "lfcSE": se / np.log(2),
            "stat": stat,
            "pvalue": pvalue,
            "padj": padj,
        }
        results[contrast_name(c)] = xr.Dataset(
            {name: ("gene", np.asarray(values[name], dtype=np.float64)) for name in RESULT_VARS},
            coords={"gene": genes, "gene_symbol": ("gene", np.asarray(symbols))},
            attrs={"method": "deseq2", "contrast": list(c), "design": design},
        )
    return results
