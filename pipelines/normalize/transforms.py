"""Lazy per-sample normalizations of a (sample, gene) count matrix: CPM, TPM, size-factor
normalized counts and log2(x + 1).

Every function takes and returns :class:`xarray.DataArray` objects over ``(sample, gene)``; when
the input is dask-backed the result is a lazy graph computed chunk by chunk (library sizes are a
per-sample reduction over the gene chunks of a row).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from gexplain.storage.errors import InputError
from gexplain.storage.schema import GENE, SAMPLE


def _float(counts: xr.DataArray) -> xr.DataArray:
    return counts.astype(np.float64)


def cpm(counts: xr.DataArray) -> xr.DataArray:
    """Counts per million: each sample's counts divided by its library size, times 1e6.

    Parameters
    ----------
    counts
        Raw read counts, dims (sample, gene).

    Returns
    -------
    xarray.DataArray
        Dims (sample, gene), float64, units CPM. A sample with no reads gives NaN.
    """
    x = _float(counts)
    library = x.sum(GENE)
    return (x / library.where(library > 0) * 1e6).rename("cpm")


def tpm(counts: xr.DataArray, gene_length: xr.DataArray | None) -> xr.DataArray:
    """Transcripts per million from counts and effective gene lengths.

    ``rate = counts / length``; ``TPM = rate / sum over genes of rate * 1e6``. Genes whose length
    is unknown (NaN) get NaN and do not count in the per-sample total.

    Parameters
    ----------
    counts
        Raw read counts, dims (sample, gene).
    gene_length
        Effective gene lengths in bp, dims (gene,).

    Returns
    -------
    xarray.DataArray
        Dims (sample, gene), float64, units TPM.

    Raises
    ------
    InputError
        When ``gene_length`` is missing, entirely NaN or not positive.
    """
    fix = (
        "supply per-gene effective lengths in bp as the store variable 'gene_length' (an h5ad var "
        "column 'gene_length' at ingest, or gexplain.storage.store.add_variables), or normalize with cpm instead"
    )
    if gene_length is None:
        raise InputError(f"TPM needs gene lengths but the store has no 'gene_length' variable; {fix}")
    lengths = np.asarray(gene_length.values, dtype=np.float64)
    known = np.isfinite(lengths)
    if not known.any():
        raise InputError(f"TPM needs gene lengths but every 'gene_length' is NaN (unknown); {fix}")
    if (lengths[known] <= 0).any():
        bad = int(np.flatnonzero(known & (lengths <= 0))[0])
        raise InputError(
            f"gene_length must be positive (bp); gene at position {bad} has {lengths[bad]}; fix the "
            "gene-length source and re-ingest"
        )
    length = xr.DataArray(np.where(known, lengths, np.nan), dims=(GENE,))
    rate = _float(counts) / length
    total = rate.sum(GENE, skipna=True)
    return (rate / total.where(total > 0) * 1e6).rename("tpm")


def normalized_counts(counts: xr.DataArray, size_factors: np.ndarray | xr.DataArray) -> xr.DataArray:
    """Counts divided by per-sample size factors (DESeq2's ``counts(dds, normalized=TRUE)``).

    Parameters
    ----------
    counts
        Raw read counts, dims (sample, gene).
    size_factors
        Dims (sample,), float64, e.g. from
        :func:`gexplain.pipelines.normalize.size_factors.median_of_ratios`.

    Returns
    -------
    xarray.DataArray
        Dims (sample, gene), float64, units reads.
    """
    sf = (
        size_factors if isinstance(size_factors, xr.DataArray) else xr.DataArray(size_factors, dims=(SAMPLE,))
    )
    return (_float(counts) / sf).rename("norm_counts")


def log2p1(x: xr.DataArray) -> xr.DataArray:
    """``log2(x + 1)`` elementwise.

    Parameters
    ----------
    x
        Non-negative expression values (counts, CPM, TPM, ...), any dims.

    Returns
    -------
    xarray.DataArray
        Same dims, float64, units log2(unit + 1).
    """
    return np.log2(x + 1.0)
