"""Zhao et al.'s aggregation for the MLP, exactly, as large GEMMs and one streamed reduction.

The released code (``mlp_v2.0.0.py``, ``explain()`` l.647-649) keeps every (sample, reference)
attribution of a run, takes ``np.abs`` and then ``np.median`` over the references; repeats (runs)
and models are averaged afterwards. Nothing there is linear in the dropout mask, so repeats cannot
collapse (:mod:`gexplain.pipelines.explain.collapse`): every (sample, repeat, reference) row must be
computed. For the one-hidden-layer MLP (:mod:`gexplain.pipelines.explain.fastpath`) each row is

``A[i, k, r, :] = f[i, k, r, :] * (gamma[i, k, r, :] @ W~)``

with ``gamma = path weight (i, ref(k, r)) * head(i) * mask(i, k)`` a (hidden,) vector, ``W~`` the
first layer over the standardisation (hidden, genes) and ``f`` the factor ``x_i - ref`` (integrated
gradients, DeepLIFT), ``x_i`` (input x gradient) or 1 (saliency). So the rows of a chunk of
samples and repeats are one (genes x hidden) @ (hidden x rows) GEMM, and the reduction
(``abs`` -> median or mean over the R references of each repeat) runs on its output in a compiled
loop (:func:`reduce_rows`) that never holds more than one chunk: samples x repeats x references x
genes is never materialised.

Memory: one chunk of ``genes x rows`` GEMM output, sized by the caller's budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import torch

Factor = Literal["none", "input", "delta"]
FACTORS: dict[str, int] = {"none": 0, "input": 1, "delta": 2}


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


@numba.njit(cache=True, nogil=True)
def _select(buf: np.ndarray, k: int) -> None:  # pragma: no cover - compiled
    """Partially order ``buf`` in place so that ``buf[k]`` is its k-th smallest value (Hoare)."""
    lo, hi = 0, buf.shape[0] - 1
    while hi > lo:
        mid = (lo + hi) // 2
        # median of three as pivot
        a, b, c = buf[lo], buf[mid], buf[hi]
        pivot = b if (a <= b <= c or c <= b <= a) else (a if (b <= a <= c or c <= a <= b) else c)
        i, j = lo, hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@numba.njit(cache=True, nogil=True)
def _median(buf: np.ndarray) -> float:  # pragma: no cover - compiled
    """``np.median`` of ``buf`` (reorders it)."""
    n = buf.shape[0]
    half = n // 2
    _select(buf, half)
    upper = buf[half]
    if n % 2:
        return upper
    # after the selection every value left of `half` is <= buf[half]: the lower middle is their maximum
    lower = buf[0]
    for t in range(1, half):
        if buf[t] > lower:
            lower = buf[t]
    return (lower + upper) / 2.0


@numba.njit(cache=True, nogil=True)
def _reduce_rows(
    proj: np.ndarray,
    x: np.ndarray,
    pool: np.ndarray,
    index: np.ndarray,
    factor: int,
    take_abs: bool,
    median: bool,
    center: np.ndarray,
    m2: np.ndarray,
) -> None:  # pragma: no cover - compiled
    genes, n, kc, n_refs = proj.shape
    buf = np.empty(n_refs, dtype=np.float64)
    for g in range(genes):
        for s in range(n):
            for k in range(kc):
                for r in range(n_refs):
                    v = proj[g, s, k, r]
                    if factor == 1:
                        v = v * x[g, s]
                    elif factor == 2:
                        v = v * (x[g, s] - pool[g, index[k, r]])
                    if take_abs:
                        v = abs(v)
                    buf[r] = v
                if median:
                    center[s, k, g] = _median(buf)
                else:
                    total = 0.0
                    for r in range(n_refs):
                        total += buf[r]
                    mean = total / n_refs
                    dev = 0.0
                    for r in range(n_refs):
                        dev += (buf[r] - mean) * (buf[r] - mean)
                    center[s, k, g] = mean
                    m2[s, k, g] = dev


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
        (genes, samples, repeats, R) input gradients ``gamma @ W~`` in the model's dtype.
    x
        (genes, samples) inputs (transposed).
    pool
        (genes, P) reference pool (transposed), or None for reference-free explainers.
    index
        (repeats, R) int64: pool column of reference r in repeat k.
    options
        Factor, abs, median or mean.

    Returns
    -------
    (center, m2)
        float64 (samples, repeats, genes): the median (or mean) over references, and for the mean
        the sum of squared deviations over references (None with the median).
    """
    genes, n, kc, n_refs = proj.shape
    factor = FACTORS[options.factor]
    if factor == 2 and pool is None:
        raise ValueError("factor 'delta' needs a reference pool")
    if proj.device.type != "cpu":
        return _reduce_torch(proj, x, pool, index, options)
    center = np.empty((n, kc, genes), dtype=np.float64)
    m2 = np.empty((n, kc, genes), dtype=np.float64) if not options.median else np.empty((0, 0, 0))
    pool_np = pool.numpy() if pool is not None else np.zeros((genes, 1), dtype=proj.numpy().dtype)
    _reduce_rows(
        proj.numpy(),
        x.numpy(),
        pool_np,
        np.ascontiguousarray(index, dtype=np.int64),
        factor,
        options.take_abs,
        options.median,
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
    v = proj
    if options.factor == "input":
        v = v * x[:, :, None, None]
    elif options.factor == "delta":
        assert pool is not None
        idx = torch.as_tensor(index, device=proj.device)
        v = v * (x[:, :, None, None] - pool[:, idx][:, None, :, :])
    if options.take_abs:
        v = v.abs()
    v = v.to(torch.float64)
    n_refs = v.shape[-1]
    if options.median:
        ordered = torch.sort(v, dim=-1).values
        half = n_refs // 2
        center = ordered[..., half] if n_refs % 2 else (ordered[..., half - 1] + ordered[..., half]) / 2
        return center.permute(1, 2, 0).cpu().numpy(), None
    mean = v.mean(dim=-1)
    m2 = ((v - mean[..., None]) ** 2).sum(dim=-1)
    return mean.permute(1, 2, 0).cpu().numpy(), m2.permute(1, 2, 0).cpu().numpy()


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
