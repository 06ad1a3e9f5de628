"""Splitting a dimension into consecutive blocks (the unit of streaming, writing and resuming)."""

from __future__ import annotations


def sample_blocks(n_samples: int, block: int) -> list[slice]:
    """Split ``range(n_samples)`` into consecutive slices of ``block`` samples (the last may be shorter).

    Parameters
    ----------
    n_samples
        Length of the ``sample`` dim.
    block
        Samples per block (> 0).
    """
    return [slice(start, min(start + block, n_samples)) for start in range(0, n_samples, block)]
