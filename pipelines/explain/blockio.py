"""What a worker writes for one finished sample block: its region of the result, then its marker.

The result group is created by the driver with chunks aligned to the sample blocks, so each block
is a set of whole chunks: workers writing different blocks side by side never touch the same
chunk. A block's ledger marker is written only after all its arrays, so a marker always means a
fully written block. Both writes fence against the driver's leases, which the worker writes under
(:func:`gexplain.storage.lease.accept`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from gexplain.pipelines.explain.compute import BlockPartial
from gexplain.pipelines.explain.params import ExplainParams
from gexplain.storage.lease import WriteGrant
from gexplain.storage.paths import host_name
from gexplain.storage.schema import SAMPLE
from gexplain.storage.store import BlockLedger, write_result_region


@dataclass(frozen=True)
class BlockOutput:
    """Where and under which leases a worker writes a finished block.

    Attributes
    ----------
    group
        The result group, e.g. ``"explain/quickstart"``.
    collapsed
        Explainer name -> runs collapsed (collapsed explainers have no ``attr_<e>_std``).
    grants
        The driver's leases on the store, granted to the worker (:func:`gexplain.storage.lease.grant`).
    """

    group: str
    collapsed: dict[str, bool]
    grants: tuple[WriteGrant, ...]


@dataclass(frozen=True)
class BlockDone:
    """What a worker reports for a block it wrote: no attribution data, only where it went.

    Attributes
    ----------
    block
        Sample-block index (its ledger key is :func:`block_key`).
    writer
        ``<host>-<pid>`` of the process that wrote it (also in the marker).
    """

    block: int
    writer: str


def block_key(block: int) -> str:
    """Return the ledger key of a finished sample block."""
    return f"block-{block:06d}"


def block_arrays(
    merged: BlockPartial, params: ExplainParams, collapsed: dict[str, bool]
) -> dict[str, np.ndarray]:
    """Arrays of one finished block, by result variable name."""
    arrays: dict[str, np.ndarray] = {}
    for explainer, (mean, std, count) in merged.finalize().items():
        arrays[f"attr_{explainer}"] = mean
        if not collapsed[explainer]:
            arrays[f"attr_{explainer}_std"] = std
        arrays[f"attr_{explainer}_count"] = count
    for explainer, rstd in merged.repeat_std().items():
        arrays[f"attr_{explainer}_repeat_std"] = rstd
    if params.per_model:
        for explainer, by_model in merged.model_means().items():
            arrays[f"attr_{explainer}_model"] = np.stack([by_model[m] for m in sorted(by_model)])
    return arrays


def write_block(
    store_url: str, out: BlockOutput, block: int, rows: slice, arrays: dict[str, np.ndarray]
) -> BlockDone:
    """Write a block's arrays into its rows of the result (whole chunks), then its ledger marker.

    Parameters
    ----------
    store_url
        The store.
    out
        The result and the leases written under.
    block
        Sample-block index.
    rows
        The block's global sample positions.
    arrays
        Result variable name -> the block's values (:func:`block_arrays`).

    Raises
    ------
    gexplain.storage.lease.LeaseLostError
        When the driver's lease was lost or expired: nothing more is written.
    """
    write_result_region(store_url, out.group, {SAMPLE: rows}, arrays, whole_chunks=True)
    writer = f"{host_name()}-{os.getpid()}"
    BlockLedger(store_url, out.group).mark_done(
        block_key(block), {"samples": [rows.start, rows.stop], "writer": writer}
    )
    return BlockDone(block=block, writer=writer)
