"""Reference (baseline) inputs for attributions, drawn deterministically per (seed, sample, repeat).

Kinds (all in the stored layer's units, e.g. log2(TPM + 1)):

* ``zero``: the all-zero input.
* ``normal``: per gene a truncated N(0, 1) restricted to [0, 1].
* ``universal``: per gene a truncated N(mu, sigma) with mu, sigma, min and max of the gene over all
  samples; draws lie within the observed [min, max].
* ``specific``: the same with the statistics of the sample's own class.
* ``samples``: real samples drawn uniformly from a pool of the cohort.

Every reference of sample ``s`` in repeat ``r`` comes from a generator seeded by
``(run_seed, REFERENCE_STREAM, s, r)``: references are shared by all models and independent of
block composition and processing order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from storage.errors import InputError

REFERENCE_KINDS = ("zero", "normal", "universal", "specific", "samples")
REFERENCE_STREAM = 1
POOL_SIZE = 512


@dataclass(frozen=True)
class ReferenceStats:
    """Per-gene statistics the references are drawn from.

    Attributes
    ----------
    mean, std, low, high
        float64 (genes,): mean, standard deviation (ddof=0), minimum and maximum over all samples.
    class_mean, class_std, class_low, class_high
        float64 (classes, genes): the same per class; row ``c`` is class code ``c``.
    pool
        float32 (pool, genes): up to ``POOL_SIZE`` real samples (evenly spaced rows) for ``samples``.
    """

    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray
    class_mean: np.ndarray
    class_std: np.ndarray
    class_low: np.ndarray
    class_high: np.ndarray
    pool: np.ndarray


def compute_reference_stats(x: np.ndarray, labels: np.ndarray, *, chunk: int = 1024) -> ReferenceStats:
    """Compute :class:`ReferenceStats` from a cohort, streaming over sample chunks.

    Parameters
    ----------
    x
        (samples, genes) expression in the model's input units (numpy, or anything with row slicing
        that ``np.asarray`` turns into numpy, e.g. a dask array).
    labels
        (samples,) integer class codes ``0 .. classes-1`` in the models' class order (the same coding
        as the explain targets), used for ``specific`` references.
    chunk
        Rows read at a time (memory is ``chunk x genes``).

    Returns
    -------
    ReferenceStats
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise InputError(f"labels must have one entry per sample ({x.shape[0]}), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise InputError("labels for reference statistics must be non-negative integer class codes")
    n, g = x.shape
    k = int(labels.max()) + 1 if labels.size else 0
    count = np.zeros(k, dtype=np.float64)
    s1 = np.zeros((k, g))
    s2 = np.zeros((k, g))
    low = np.full((k, g), np.inf)
    high = np.full((k, g), -np.inf)
    shift = np.asarray(x[: min(n, 1)], dtype=np.float64).reshape(-1, g).mean(axis=0) if n else np.zeros(g)
    for start in range(0, n, chunk):
        block = np.asarray(x[start : start + chunk], dtype=np.float64) - shift
        lab = labels[start : start + chunk]
        for c in np.unique(lab):
            rows = block[lab == c]
            count[c] += rows.shape[0]
            s1[c] += rows.sum(axis=0)
            s2[c] += (rows * rows).sum(axis=0)
            low[c] = np.minimum(low[c], rows.min(axis=0))
            high[c] = np.maximum(high[c], rows.max(axis=0))

    def moments(cnt: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        safe = np.maximum(cnt, 1.0)[..., None]
        m = a / safe
        return m + shift, np.sqrt(np.maximum(b / safe - m * m, 0.0))

    mean, std = moments(count.sum(keepdims=True), s1.sum(0, keepdims=True), s2.sum(0, keepdims=True))
    cmean, cstd = moments(count, s1, s2)
    pool_rows = np.unique(np.linspace(0, max(n - 1, 0), min(n, POOL_SIZE)).astype(np.int64))
    pool = np.asarray(x[pool_rows] if n else np.zeros((0, g)), dtype=np.float32)
    return ReferenceStats(
        mean=mean[0],
        std=std[0],
        low=low.min(axis=0) + shift,
        high=high.max(axis=0) + shift,
        class_mean=cmean,
        class_std=cstd,
        class_low=low + shift,
        class_high=high + shift,
        pool=pool,
    )


def parse_references(text: str) -> tuple[str, int]:
    """Parse ``"kind:count"`` (e.g. ``"universal:60"``; ``"zero"`` means one zero reference).

    Raises
    ------
    InputError
        Unknown kind or a count that is not a positive integer.
    """
    kind, _, count = text.partition(":")
    if kind not in REFERENCE_KINDS:
        raise InputError(
            f"--references '{text}': unknown kind '{kind}'; use one of {', '.join(REFERENCE_KINDS)}"
        )
    try:
        n = int(count) if count else 1
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(
            f"--references '{text}': the count after ':' must be a positive integer, e.g. universal:60"
        )
    return kind, n


class TruncatedNormal:
    """Per-gene truncated normals N(mean, std) restricted to [low, high], drawn by inversion.

    Parameters
    ----------
    mean, std, low, high
        (genes,) location, scale and bounds; genes with ``std == 0`` or ``low >= high`` always give
        the mean clipped into the bounds.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        mean, std, low, high = (np.asarray(v, dtype=np.float64) for v in (mean, std, low, high))
        degenerate = (std <= 0) | (high <= low)
        scale = np.where(degenerate, 1.0, std)
        a = (low - mean) / scale
        b = (high - mean) / scale
        # invert on the side of the distribution with the better-resolved tail
        flip = a > 0
        lo_cdf = np.where(flip, ndtr(-b), ndtr(a))
        hi_cdf = np.where(flip, ndtr(-a), ndtr(b))
        self.lo_cdf = np.where(degenerate, 0.5, lo_cdf)
        self.span = np.where(degenerate, 0.0, hi_cdf - lo_cdf)
        self.signed_scale = np.where(degenerate, 0.0, np.where(flip, -scale, scale))
        self.center = np.where(degenerate, np.clip(mean, low, np.maximum(low, high)), mean)
        self.low, self.high = low, np.maximum(low, high)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Return float64 (size, genes) draws within ``[low, high]`` from ``size x genes`` uniforms of ``rng``."""
        z = rng.random((size, self.lo_cdf.shape[0]))
        z *= self.span
        z += self.lo_cdf
        ndtri(z, out=z)
        z *= self.signed_scale
        z += self.center
        return np.clip(z, self.low, self.high, out=z)


def truncated_normal(
    rng: np.random.Generator, mean: np.ndarray, std: np.ndarray, low: np.ndarray, high: np.ndarray, size: int
) -> np.ndarray:
    """Draw ``size`` rows of per-gene truncated normals (see :class:`TruncatedNormal`): float64 (size, genes)."""
    return TruncatedNormal(mean, std, low, high).draw(rng, size)


def draw_references(
    kind: str,
    n_references: int,
    stats: ReferenceStats | None,
    sample_index: np.ndarray,
    repeat: int,
    classes: np.ndarray | None,
    run_seed: int,
    n_genes: int,
) -> np.ndarray:
    """Draw the references of a set of samples for one repeat.

    Parameters
    ----------
    kind
        One of :data:`REFERENCE_KINDS`.
    n_references
        References per sample (R).
    stats
        Cohort statistics (not needed for ``zero`` and ``normal``).
    sample_index
        (n,) global sample indices (the draws depend only on these, the repeat and the seed).
    repeat
        Repeat index.
    classes
        (n,) class codes of the samples, for ``specific``.
    run_seed
        Run seed.
    n_genes
        Number of genes.

    Returns
    -------
    numpy.ndarray
        float32 (n, R, genes).
    """
    n = len(sample_index)
    out = np.zeros((n, n_references, n_genes), dtype=np.float32)
    if kind == "zero":
        return out
    if kind not in REFERENCE_KINDS:
        raise InputError(f"unknown reference kind '{kind}'; use one of {', '.join(REFERENCE_KINDS)}")
    if kind != "normal" and stats is None:
        raise ValueError(f"references '{kind}' need ReferenceStats")
    if kind == "specific" and classes is None:
        raise ValueError("references 'specific' need the samples' classes")
    laws: dict[int, TruncatedNormal] = {}

    def law(c: int) -> TruncatedNormal:
        """The truncated normal of class ``c`` (-1: all samples; -2: standard on [0, 1])."""
        if c not in laws:
            if c == -2:
                zeros, ones = np.zeros(n_genes), np.ones(n_genes)
                laws[c] = TruncatedNormal(zeros, ones, zeros, ones)
            elif c == -1:
                assert stats is not None
                laws[c] = TruncatedNormal(stats.mean, stats.std, stats.low, stats.high)
            else:
                assert stats is not None
                if c >= stats.class_mean.shape[0]:
                    raise InputError(f"class code {c} never occurs in the reference statistics' labels")
                laws[c] = TruncatedNormal(
                    stats.class_mean[c], stats.class_std[c], stats.class_low[c], stats.class_high[c]
                )
        return laws[c]

    for i, s in enumerate(np.asarray(sample_index, dtype=np.int64)):
        rng = np.random.default_rng([int(run_seed), REFERENCE_STREAM, int(s), int(repeat)])
        if kind == "samples":
            assert stats is not None
            out[i] = stats.pool[rng.integers(0, stats.pool.shape[0], size=n_references)]
        else:
            c = {"normal": -2, "universal": -1}.get(kind)
            if c is None:
                assert classes is not None
                c = int(classes[i])
            out[i] = law(c).draw(rng, n_references)
    return out
