"""Distinct counts per gene with their multiplicities, for sums over samples of terms of the count alone.

The negative binomial log likelihood of a gene holds ``sum_i lgamma(y_i + 1/alpha)`` and its
derivative ``sum_i digamma(y_i + 1/alpha)``: terms of the count and the gene's dispersion only.
Counts of one gene repeat across samples (a gene with mean 20 over 2,000 samples takes about 50
distinct values), so each such sum is taken over the gene's distinct counts, each term weighted
by how many samples hold it: the same sum up to floating-point rounding, with as many special
function calls as there are distinct (gene, count) pairs rather than samples x genes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CountTally:
    """The distinct counts of each gene of a block, flat over (gene, distinct count) pairs.

    Attributes
    ----------
    values
        Distinct non-zero counts, gene after gene in ascending order, dims (pair,), float64.
    weights
        Samples holding each, dims (pair,), float64.
    gene
        Gene (position in the block) of each pair, dims (pair,), int64.
    n_genes
        Genes in the block.
    """

    values: np.ndarray
    weights: np.ndarray
    gene: np.ndarray
    n_genes: int

    @classmethod
    def of(cls, counts: np.ndarray) -> CountTally:
        """From counts with genes as rows, dims (gene, sample)."""
        g, n = counts.shape
        ordered = np.sort(counts, axis=1)
        starts = np.ones((g, n), dtype=bool)  # first sample of each run of equal counts
        starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        rows, cols = np.nonzero(starts)
        ends = np.empty_like(cols)  # end of each run: the next start in its row, or n
        ends[:-1] = cols[1:]
        last = np.ones(rows.size, dtype=bool)
        last[:-1] = rows[1:] != rows[:-1]
        ends[last] = n
        nonzero = ordered[rows, cols] != 0  # a zero count adds func(s) - func(s) = 0: left out
        rows, cols, ends = rows[nonzero], cols[nonzero], ends[nonzero]
        return cls(
            np.asarray(ordered[rows, cols], dtype=np.float64),
            (ends - cols).astype(np.float64),
            rows.astype(np.int64),
            g,
        )

    def per_gene(
        self, func: Callable[[np.ndarray], np.ndarray], shift: np.ndarray, idx: np.ndarray
    ) -> np.ndarray:
        """``sum_i func(y_i + s) - func(s)`` over the samples of each gene of ``idx`` (``s`` its shift).

        Each term is the difference the per-sample formula takes (so no cancellation between
        large sums where ``s`` is large, e.g. ``1 / alpha`` for a small dispersion).

        Parameters
        ----------
        func
            Elementwise function (e.g. ``scipy.special.gammaln``), taking and returning float64 arrays.
        shift
            Per gene of ``idx``, dims (k,) (e.g. ``1 / alpha``).
        idx
            Gene positions, dims (k,), distinct.

        Returns
        -------
        numpy.ndarray
            Dims (k,).
        """
        slot = np.full(self.n_genes, -1, dtype=np.int64)
        slot[idx] = np.arange(idx.size)
        where = slot[self.gene]
        keep = where >= 0
        if keep.all():
            rows, values, weights = where, self.values, self.weights
        else:
            rows, values, weights = where[keep], self.values[keep], self.weights[keep]
        base = func(shift)
        terms = func(values + shift[rows])
        terms -= base[rows]
        terms *= weights
        return np.bincount(rows, weights=terms, minlength=idx.size)
