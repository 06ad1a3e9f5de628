"""Reference (baseline) inputs for attributions, drawn deterministically.

Kinds (all in the stored layer's units, e.g. log2(TPM + 1)); docs/explain.md compares the three
versions of ``universal``/``specific`` (Zhao et al.'s released code, their paper's text, and
gexplain's earlier definition):

* ``zero``: the all-zero input.
* ``normal``: per gene a truncated N(0, 1) restricted to [0, 1].
* ``universal`` (Zhao et al.'s code, ``src/prepareDatasets_v2.0.0.py``): per gene, mu and sigma are
  the mean and the standard deviation (ddof=0) of the per-class medians; values are drawn from
  N(mu, sigma + 0.01) truncated to mu +- (sigma + 0.01) and made absolute.
* ``specific`` (Zhao et al.'s code): the same with mu, sigma the mean and standard deviation of the
  sample's own class.
* ``universal_range`` (gexplain's earlier ``universal``): per gene a truncated N(mu, sigma) with mu,
  sigma, min and max of the gene over all samples; draws lie within the observed [min, max].
* ``specific_range``: the same with the statistics of the sample's own class.
* ``samples``: real samples drawn uniformly from a pool of the cohort.

Scopes: with ``reference_scope = "cohort"`` (default, as Zhao et al.) reference ``r`` comes from a
generator seeded by ``(run_seed, SHARED_STREAM, r, class)`` (class -1 for class-free kinds), so
every sample and repeat sees the same R references (:func:`draw_reference_sets`). With
``"sample"`` the references of sample ``s`` in repeat ``r`` come from ``(run_seed, REFERENCE_STREAM,
s, r)`` (:func:`draw_references`). Either way they are shared by all models and independent of block
composition and processing order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gexplain.storage.errors import InputError
from scipy.special import ndtr, ndtri

REFERENCE_KINDS = (
    "zero",
    "normal",
    "universal",
    "specific",
    "universal_range",
    "specific_range",
    "samples",
)
CLASS_KINDS = ("specific", "specific_range")
REFERENCE_STREAM = 1
SHARED_STREAM = 6
POOL_STREAM = 7
POOL_SIZE = 512
ZHAO_SIGMA_OFFSET = 0.01  # Zhao et al.'s code widens sigma by 0.01 before truncating at mu +- sigma
MEDIAN_BUDGET_BYTES = 256 * 2**20  # rows held at once while computing per-class medians


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
    median_mean, median_std
        float64 (genes,): mean and standard deviation (ddof=0) over classes of the per-class
        medians (Zhao et al.'s ``universal``); NaN when not computed.
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
    median_mean: np.ndarray
    median_std: np.ndarray


def class_medians(
    x: np.ndarray, labels: np.ndarray, *, chunk: int = 1024, budget_bytes: int = MEDIAN_BUDGET_BYTES
) -> np.ndarray:
    """Per-class medians of every gene, float64 (classes, genes), exact.

    Classes are packed into passes over ``x`` so that one pass holds at most about ``budget_bytes``
    of rows (float32); a class larger than the budget gets a pass of its own.

    Parameters
    ----------
    x
        (samples, genes) expression with row slicing (numpy or dask).
    labels
        (samples,) class codes ``0 .. classes-1``.
    chunk
        Rows read at a time.
    budget_bytes
        Rows kept per pass, in bytes.
    """
    labels = np.asarray(labels)
    n, g = x.shape
    k = int(labels.max()) + 1 if labels.size else 0
    out = np.full((k, g), np.nan)
    counts = np.bincount(labels, minlength=k) if labels.size else np.zeros(0, dtype=np.int64)
    passes: list[list[int]] = []
    held = 0
    for c in range(k):
        size = int(counts[c]) * g * 4
        if not passes or held + size > budget_bytes:
            passes.append([])
            held = 0
        passes[-1].append(c)
        held += size
    for classes in passes:
        rows: dict[int, list[np.ndarray]] = {c: [] for c in classes}
        for start in range(0, n, chunk):
            lab = labels[start : start + chunk]
            if not np.isin(lab, classes).any():
                continue
            block = np.asarray(x[start : start + chunk], dtype=np.float32)
            for c in classes:
                if (lab == c).any():
                    rows[c].append(block[lab == c])
        for c in classes:
            if rows[c]:
                out[c] = np.median(np.concatenate(rows[c]).astype(np.float64), axis=0)
    return out


def compute_reference_stats(
    x: np.ndarray, labels: np.ndarray, *, chunk: int = 1024, medians: bool = True
) -> ReferenceStats:
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
    medians
        Also compute the per-class medians for Zhao et al.'s ``universal`` (extra passes, see
        :func:`class_medians`).

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
    if medians and n:
        med = class_medians(x, labels, chunk=chunk)
        med = med[~np.isnan(med).all(axis=1)]
        med_mean, med_std = med.mean(axis=0), med.std(axis=0)
    else:
        med_mean = med_std = np.full(g, np.nan)
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
        median_mean=med_mean,
        median_std=med_std,
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


class FoldedTruncatedNormal(TruncatedNormal):
    """Zhao et al.'s reference law: N(mean, s) truncated to mean +- s with s = std + 0.01, then
    made absolute (``np.absolute(truncated_norm(mu, sigma))`` in their code).

    Parameters
    ----------
    mean, std
        (genes,) location and the standard deviation before the 0.01 offset.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        mean = np.asarray(mean, dtype=np.float64)
        scale = np.asarray(std, dtype=np.float64) + ZHAO_SIGMA_OFFSET
        super().__init__(mean, scale, mean - scale, mean + scale)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Return float64 (size, genes) absolute values of the truncated draws."""
        return np.abs(super().draw(rng, size))


def reference_law(kind: str, stats: ReferenceStats | None, cls: int, n_genes: int) -> TruncatedNormal:
    """The per-gene law of a drawn reference kind (``normal``, ``universal*``, ``specific*``).

    Parameters
    ----------
    kind
        Reference kind.
    stats
        Cohort statistics (not needed for ``normal``).
    cls
        Class code for the ``specific`` kinds (ignored otherwise).
    n_genes
        Number of genes.
    """
    if kind == "normal":
        zeros, ones = np.zeros(n_genes), np.ones(n_genes)
        return TruncatedNormal(zeros, ones, zeros, ones)
    if stats is None:
        raise ValueError(f"references '{kind}' need ReferenceStats")
    if kind in CLASS_KINDS and cls >= stats.class_mean.shape[0]:
        raise InputError(f"class code {cls} never occurs in the reference statistics' labels")
    if kind == "universal":
        if np.isnan(stats.median_mean).all():
            raise ValueError("references 'universal' need ReferenceStats computed with medians=True")
        return FoldedTruncatedNormal(stats.median_mean, stats.median_std)
    if kind == "specific":
        return FoldedTruncatedNormal(stats.class_mean[cls], stats.class_std[cls])
    if kind == "universal_range":
        return TruncatedNormal(stats.mean, stats.std, stats.low, stats.high)
    if kind == "specific_range":
        return TruncatedNormal(
            stats.class_mean[cls], stats.class_std[cls], stats.class_low[cls], stats.class_high[cls]
        )
    raise ValueError(f"reference kind '{kind}' has no law")


@dataclass(frozen=True)
class ReferenceSets:
    """The cohort-scope references: one set of R references per class (or one for every class).

    Attributes
    ----------
    values
        float32 (sets, R, genes).
    by_class
        True when set ``c`` belongs to class code ``c`` (``specific`` kinds); else one set.
    """

    values: np.ndarray
    by_class: bool

    def index(self, classes: np.ndarray) -> np.ndarray:
        """Set index of each sample, int64 (samples,), from its class codes."""
        classes = np.asarray(classes, dtype=np.int64)
        return classes if self.by_class else np.zeros(len(classes), dtype=np.int64)


def draw_reference_sets(
    kind: str, n_references: int, stats: ReferenceStats | None, run_seed: int, n_classes: int, n_genes: int
) -> ReferenceSets:
    """Draw the shared (cohort-scope) references.

    Reference ``r`` of class ``c`` comes from a generator seeded by ``(run_seed, SHARED_STREAM, r, c)``
    (``c = -1`` for kinds without classes), so a set does not depend on R beyond its length.

    Parameters
    ----------
    kind, n_references
        Reference kind and R.
    stats
        Cohort statistics (not needed for ``zero`` and ``normal``).
    run_seed
        Run seed.
    n_classes
        Number of class codes (sets drawn for the ``specific`` kinds).
    n_genes
        Number of genes.
    """
    if kind not in REFERENCE_KINDS:
        raise InputError(f"unknown reference kind '{kind}'; use one of {', '.join(REFERENCE_KINDS)}")
    by_class = kind in CLASS_KINDS
    classes = list(range(n_classes)) if by_class else [-1]
    out = np.zeros((len(classes), n_references, n_genes), dtype=np.float32)
    if kind == "zero":
        return ReferenceSets(out, by_class)
    for i, c in enumerate(classes):
        law = None if kind == "samples" else reference_law(kind, stats, c, n_genes)
        for r in range(n_references):
            rng = np.random.default_rng([int(run_seed), SHARED_STREAM, r, c + 1])
            if law is None:
                assert stats is not None
                out[i, r] = stats.pool[rng.integers(0, stats.pool.shape[0])]
            else:
                out[i, r] = law.draw(rng, 1)[0]
    return ReferenceSets(out, by_class)


def repeat_reference_index(
    run_seed: int, repeats: range, set_key: int, pool_size: int, n_references: int
) -> np.ndarray:
    """The references of each repeat drawn from a cohort pool (``reference_scope = "repeat"``).

    As Zhao et al.'s code reshuffles its reference pool before every run and takes the first R
    (``mlp_v2.0.0.py`` l.324-334, ``-y yes``, ``-S 64``; pool of 128 from
    ``prepareDatasets_v2.0.0.py`` l.541), repeat ``k`` uses the first R of a permutation of the
    pool drawn from ``(run_seed, POOL_STREAM, k, set_key)``.

    Parameters
    ----------
    run_seed
        Run seed.
    repeats
        Repeat indices.
    set_key
        Class code of the pool (``-1`` for class-free kinds).
    pool_size, n_references
        P and R (R <= P).

    Returns
    -------
    numpy.ndarray
        int64 (repeats, R): pool rows of each repeat's references.
    """
    out = np.empty((len(repeats), n_references), dtype=np.int64)
    for i, k in enumerate(repeats):
        rng = np.random.default_rng([int(run_seed), POOL_STREAM, int(k), int(set_key) + 1])
        out[i] = rng.permutation(pool_size)[:n_references]
    return out


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
    """Draw the sample-scope references of a set of samples for one repeat.

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
    if kind in CLASS_KINDS and classes is None:
        raise ValueError("references 'specific' need the samples' classes")
    laws: dict[int, TruncatedNormal] = {}

    def law(c: int) -> TruncatedNormal:
        if c not in laws:
            laws[c] = reference_law(kind, stats, c, n_genes)
        return laws[c]

    for i, s in enumerate(np.asarray(sample_index, dtype=np.int64)):
        rng = np.random.default_rng([int(run_seed), REFERENCE_STREAM, int(s), int(repeat)])
        if kind == "samples":
            assert stats is not None
            out[i] = stats.pool[rng.integers(0, stats.pool.shape[0], size=n_references)]
        else:
            c = int(classes[i]) if kind in CLASS_KINDS and classes is not None else -1
            out[i] = law(c).draw(rng, n_references)
    return out
