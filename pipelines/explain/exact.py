"""Zhao et al.'s aggregation for the MLP, exactly, as large GEMMs and one streamed reduction.

The released code (``mlp_v2.0.0.py``, ``explain()`` l.647-649) keeps every (sample, reference)
attribution of a run, takes ``np.abs`` and then ``np.median`` over the references (for an even
count the mean of the two middle values, not ``torch.median``'s lower one); repeats (runs) and
models are averaged afterwards. Nothing there is linear in the dropout mask, so repeats cannot
collapse (:mod:`gexplain.pipelines.explain.collapse`): every (sample, repeat, reference) row must be
computed. For the one-hidden-layer MLP (:mod:`gexplain.pipelines.explain.fastpath`) each row is

``A[i, k, r, :] = f[i, k, r, :] * (gamma[i, k, r, :] @ W~)``

with ``gamma = path weight (i, ref(k, r)) * head(i) * mask(i, k)`` a (hidden,) vector, ``W~`` the
first layer over the standardisation (hidden, genes) and ``f`` the factor ``x_i - ref`` (integrated
gradients, DeepLIFT), ``x_i`` (input x gradient) or 1 (saliency). So the rows of a chunk of
samples and repeats are one (genes x hidden) @ (hidden x rows) GEMM (the faster orientation of
MKL's sgemm for a long gene side), and the reduction (factor, ``abs``, then the median or the mean over the R references
of each repeat) runs on it in a compiled loop (:func:`reduce_rows`) over blocks of
:data:`GENE_BLOCK` genes: the R values of a block are transposed into a small buffer, multiplied
and made absolute in one pass, and
the median is taken by a fixed network of compare-exchanges (:func:`median_network`) applied to
all genes of the block at once (branch-free, SIMD over genes), instead of one selection per gene.
The selection is exact in any dtype (comparisons do not round); the two middle values are
averaged in float64. Samples x repeats x references x genes is never materialised.

Memory: one chunk of ``genes x rows`` GEMM output, sized by the caller's budget, plus
``R x GENE_BLOCK`` values per thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numba
import numpy as np
import torch

Factor = Literal["none", "input", "delta"]
FACTORS: dict[str, int] = {"none": 0, "input": 1, "delta": 2}
GENE_BLOCK = 256  # genes per compare-exchange pass: R x 256 float32 values stay in L1/L2


@dataclass(frozen=True)
class ReduceOptions:
    """How the R values of one (sample, repeat) become one value per gene.

    Attributes
    ----------
    factor
        What multiplies the projected gradient: ``"none"`` (saliency), ``"input"`` (input x
        gradient) or ``"delta"`` (``x - reference``: integrated gradients, DeepLIFT).
    take_abs
        Absolute values before the reduction (Zhao et al.).
    median
        Median over references (``np.median``: the mean of the two middle values for even R);
        else the mean, with the sum of squared deviations over the references.
    """

    factor: Factor
    take_abs: bool
    median: bool


def _merge_sort_pairs(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort on ``n`` wires: compare-exchanges (i < j; min to i, max to j).

    Built for the next power of two; comparators touching wires >= n are dropped, which is the
    network on n values padded with +inf (those comparators would leave the padding in place).
    """
    size = 1
    while size < n:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return pairs


@lru_cache(maxsize=64)
def median_network(n: int) -> tuple[np.ndarray, int, int]:
    """The compare-exchanges that put the middle value(s) of ``n`` values in place.

    Batcher's merge-sort network pruned backwards to the comparators the middle outputs depend on.

    Returns
    -------
    (pairs, lower, upper)
        (C, 2) int64 wire pairs in application order, and the wires holding the lower and upper
        middle values after them (equal for odd ``n``).
    """
    lower, upper = (n - 1) // 2, n // 2
    needed = {lower, upper}
    kept: list[tuple[int, int]] = []
    for a, b in reversed(_merge_sort_pairs(n)):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    pairs = np.array(kept[::-1], dtype=np.int64).reshape(-1, 2)
    return pairs, lower, upper


@numba.njit(cache=True, nogil=True, parallel=True)
def _reduce_blocks(
    proj: np.ndarray,
    x: np.ndarray,
    pool: np.ndarray,
    index: np.ndarray,
    factor: int,
    take_abs: bool,
    median: bool,
    pairs: np.ndarray,
    lower: int,
    upper: int,
    center: np.ndarray,
    m2: np.ndarray,
) -> None:  # pragma: no cover - compiled
    n, kc, genes = center.shape
    n_refs = index.shape[1]
    blocks = (genes + GENE_BLOCK - 1) // GENE_BLOCK
    for unit in numba.prange(n * kc * blocks):
        b = unit % blocks
        sk = unit // blocks
        s = sk // kc
        k = sk % kc
        g0 = b * GENE_BLOCK
        w = min(GENE_BLOCK, genes - g0)
        buf = np.empty((n_refs, GENE_BLOCK), dtype=proj.dtype)
        for r in range(n_refs):
            row = proj[g0 : g0 + w, sk * n_refs + r]
            out = buf[r, :w]
            if factor == 2:
                ref = pool[index[k, r], g0 : g0 + w]
                xs = x[s, g0 : g0 + w]
                for g in range(w):
                    out[g] = row[g] * (xs[g] - ref[g])
            elif factor == 1:
                xs = x[s, g0 : g0 + w]
                for g in range(w):
                    out[g] = row[g] * xs[g]
            else:
                for g in range(w):
                    out[g] = row[g]
            if take_abs:
                for g in range(w):
                    out[g] = abs(out[g])
        if median:
            for c in range(pairs.shape[0]):
                lo = buf[pairs[c, 0], :w]
                hi = buf[pairs[c, 1], :w]
                for g in range(w):
                    a = lo[g]
                    v = hi[g]
                    lo[g] = a if a < v else v
                    hi[g] = v if a < v else a
            for g in range(w):
                center[s, k, g0 + g] = (np.float64(buf[lower, g]) + np.float64(buf[upper, g])) * 0.5
        else:
            total = np.zeros(GENE_BLOCK)
            for r in range(n_refs):
                for g in range(w):
                    total[g] += buf[r, g]
            mean = total / n_refs
            dev = np.zeros(GENE_BLOCK)
            for r in range(n_refs):
                for g in range(w):
                    d = buf[r, g] - mean[g]
                    dev[g] += d * d
            for g in range(w):
                center[s, k, g0 + g] = mean[g]
                m2[s, k, g0 + g] = dev[g]


def reduce_rows(
    proj: torch.Tensor,
    x: torch.Tensor,
    pool: torch.Tensor | None,
    index: np.ndarray,
    options: ReduceOptions,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Reduce projected gradients over the references of each (sample, repeat).

    Parameters
    ----------
    proj
        (genes, samples x repeats x R) input gradients ``(gamma @ W~).T`` in the model's dtype,
        columns ordered (sample, repeat, reference): the layout of the faster GEMM orientation
        (``W~.T @ gamma.T``, genes as its long side); the compiled loop transposes one gene block
        at a time.
    x
        (samples, genes) inputs.
    pool
        (P, genes) reference pool, or None for reference-free explainers.
    index
        (repeats, R) int64: pool row of reference r in repeat k.
    options
        Factor, abs, median or mean.

    Returns
    -------
    (center, m2)
        float64 (samples, repeats, genes): the median (or mean) over references, and for the mean
        the sum of squared deviations over references (None with the median).

    Notes
    -----
    On CPU the compiled loop uses as many threads as torch (``torch.get_num_threads()``, set per
    actor), so the GEMM and the reduction share the actor's cores.
    """
    kc, n_refs = index.shape
    n, genes = x.shape
    if proj.shape != (genes, n * kc * n_refs):
        raise ValueError(f"proj has shape {tuple(proj.shape)}, expected ({genes}, {n * kc * n_refs})")
    factor = FACTORS[options.factor]
    if factor == 2 and pool is None:
        raise ValueError("factor 'delta' needs a reference pool")
    if proj.device.type != "cpu":
        return _reduce_torch(proj, x, pool, index, options)
    center = np.empty((n, kc, genes), dtype=np.float64)
    m2 = np.empty((n, kc, genes), dtype=np.float64) if not options.median else np.empty((0, 0, 0))
    proj_np = proj.contiguous().numpy()
    pool_np = pool.contiguous().numpy() if pool is not None else np.zeros((1, genes), dtype=proj_np.dtype)
    pairs, lower, upper = median_network(n_refs)
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    _reduce_blocks(
        proj_np,
        x.contiguous().numpy(),
        pool_np,
        np.ascontiguousarray(index, dtype=np.int64),
        factor,
        options.take_abs,
        options.median,
        pairs,
        lower,
        upper,
        center,
        m2,
    )
    return center, (None if options.median else m2)


def _reduce_torch(
    proj: torch.Tensor,
    x: torch.Tensor,
    pool: torch.Tensor | None,
    index: np.ndarray,
    options: ReduceOptions,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`reduce_rows` with torch operations (accelerators; same numbers up to rounding)."""
    kc, n_refs = index.shape
    n, genes = x.shape
    v = proj.T.reshape(n, kc, n_refs, genes)
    if options.factor == "input":
        v = v * x[:, None, None, :]
    elif options.factor == "delta":
        assert pool is not None
        idx = torch.as_tensor(index, device=proj.device)
        v = v * (x[:, None, None, :] - pool[idx][None])
    if options.take_abs:
        v = v.abs()
    if options.median:
        ordered = torch.sort(v, dim=2).values.to(torch.float64)
        center = (ordered[:, :, (n_refs - 1) // 2] + ordered[:, :, n_refs // 2]) / 2
        return center.cpu().numpy(), None
    v = v.to(torch.float64)
    mean = v.mean(dim=2)
    m2 = ((v - mean[:, :, None]) ** 2).sum(dim=2)
    return mean.cpu().numpy(), m2.cpu().numpy()


@dataclass(frozen=True)
class RowChunk:
    """The reduced rows of a chunk of samples and repeats.

    Attributes
    ----------
    positions
        (samples,) positions of the chunk's samples in the caller's block.
    repeats
        The chunk's repeats (a sub-range of the caller's).
    center
        float64 (samples, repeats, genes): median (or mean) over the references.
    m2
        float64 (samples, repeats, genes): sum of squared deviations over the references (mean
        only), else None.
    """

    positions: np.ndarray
    repeats: range
    center: np.ndarray
    m2: np.ndarray | None


def chunk_shape(
    n: int, n_repeats: int, n_refs: int, n_genes: int, itemsize: int, budget_bytes: int
) -> tuple[int, int]:
    """(samples, repeats) per GEMM so that its (genes x rows) output stays within ``budget_bytes``."""
    rows = max(n_refs, budget_bytes // max(n_genes * itemsize, 1))
    if n_repeats * n_refs <= rows:
        return max(1, min(n, rows // (n_repeats * n_refs))), n_repeats
    return 1, max(1, rows // n_refs)
