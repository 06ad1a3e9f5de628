"""Streamed aggregation of attributions over repeats, references and models.

Per sample and gene the accumulator keeps a count, a mean and the sum of squared deviations
(Welford / Chan et al.'s pairwise update) in float64; it never holds the individual repeats.
Merging two accumulators is exact up to rounding; merge in a fixed order (e.g. sorted task keys)
for bitwise-identical results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Running count, mean and M2 (sum of squared deviations) per sample and gene.

    Attributes
    ----------
    count
        int64 (samples,): values folded in per sample.
    mean
        float64 (samples, genes).
    m2
        float64 (samples, genes).
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, n_samples: int, n_genes: int) -> Moments:
        """Return an accumulator with no values for (n_samples, n_genes)."""
        return cls(
            np.zeros(n_samples, dtype=np.int64),
            np.zeros((n_samples, n_genes), dtype=np.float64),
            np.zeros((n_samples, n_genes), dtype=np.float64),
        )

    def add(self, values: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Fold in ``k`` values per sample.

        Parameters
        ----------
        values
            (n, k, genes): ``k`` values for each of ``n`` samples (each sample appears once).
        rows
            (n,) positions of those samples in this accumulator; ``None`` = all, in order.
        """
        v = np.asarray(values)
        k = v.shape[1]
        if k == 0:
            return
        if k == 1:
            bmean = v[:, 0].astype(np.float64)
            bm2 = np.zeros_like(bmean)
        else:
            # batch moments accumulate in float64 over the (float32) values; the deviations from the
            # batch mean carry no cancellation, so they are squared in the values' precision
            bmean = v.mean(axis=1, dtype=np.float64)
            dev = v - bmean.astype(v.dtype)[:, None, :]
            bm2 = np.einsum("nkg,nkg->ng", dev, dev, dtype=np.float64)
        idx = np.arange(self.count.shape[0]) if rows is None else np.asarray(rows)
        self._merge_rows(idx, np.full(len(idx), k, dtype=np.int64), bmean, bm2)

    def copy(self) -> Moments:
        """A deep copy (arrays from Ray's object store are read-only)."""
        return Moments(self.count.copy(), self.mean.copy(), self.m2.copy())

    def add_mean(self, mean: np.ndarray, count: int, rows: np.ndarray | None = None) -> None:
        """Fold in the mean (n, genes) of ``count`` values per sample whose spread is not kept
        (collapsed repeats): the mean and count are exact, M2 gains only the between-part term."""
        self.add_summary(mean, np.zeros_like(mean, dtype=np.float64), count, rows)

    def add_summary(
        self, mean: np.ndarray, m2: np.ndarray, count: int, rows: np.ndarray | None = None
    ) -> None:
        """Fold in ``count`` values per sample given by their mean and M2, both (n, genes)."""
        idx = np.arange(self.count.shape[0]) if rows is None else np.asarray(rows)
        self._merge_rows(
            idx,
            np.full(len(idx), count, dtype=np.int64),
            np.asarray(mean, np.float64),
            np.asarray(m2, np.float64),
        )

    def _merge_rows(self, idx: np.ndarray, nb: np.ndarray, mb: np.ndarray, m2b: np.ndarray) -> None:
        if not self.count[idx].any():  # nothing folded in yet: the update reduces to a copy, bit for bit
            self.mean[idx] = mb
            self.m2[idx] = m2b
            self.count[idx] = nb
            return
        na = self.count[idx].astype(np.float64)[:, None]
        nbf = nb.astype(np.float64)[:, None]
        n = np.maximum(na + nbf, 1.0)
        delta = mb - self.mean[idx]
        self.mean[idx] = self.mean[idx] + delta * (nbf / n)
        self.m2[idx] = self.m2[idx] + m2b + delta * delta * (na * nbf / n)
        self.count[idx] = self.count[idx] + nb

    def merge(self, other: Moments) -> None:
        """Fold another accumulator over the same samples and genes into this one."""
        self._merge_rows(np.arange(self.count.shape[0]), other.count, other.mean, other.m2)

    def finalize(self, ddof: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (mean float32 (samples, genes), std float32 (samples, genes), count int32 (samples,)).

        ``std`` uses ``ddof`` (default 1, the sample standard deviation); it is 0 where the count is
        at most ``ddof`` and NaN-free; the mean is NaN where the count is 0.
        """
        cnt = self.count.astype(np.float64)[:, None]
        var = np.where(cnt > ddof, self.m2 / np.maximum(cnt - ddof, 1.0), 0.0)
        mean = np.where(cnt > 0, self.mean, np.nan)
        return (
            mean.astype(np.float32),
            np.sqrt(np.maximum(var, 0.0)).astype(np.float32),
            self.count.astype(np.int32),
        )


def reduce_references(values: np.ndarray, how: str | None) -> np.ndarray:
    """Optionally reduce the reference axis of (n, R, genes) values: ``None`` keeps it, ``"median"``
    collapses it to (n, 1, genes)."""
    if how is None:
        return values
    if how == "median":
        return np.median(values, axis=1, keepdims=True)
    raise ValueError(f"unknown reference reduction '{how}'")
