"""GTEx GCT 1.2 matrices (plain or gzip): genes x samples, streamed in gene blocks.

Layout::

    #1.2
    <n_genes>\\t<n_samples>
    Name\\tDescription\\t<sample id>...
    <gene id>\\t<symbol>\\t<value>...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.common import Source
from gexplain.storage.ingest.text_table import scan_text, text_blocks


def scan_gct(path: Path) -> Source:
    """Scan a GCT 1.2 file and return its :class:`Source` (values are streamed later).

    Parameters
    ----------
    path
        ``*.gct`` or ``*.gct.gz``.

    Raises
    ------
    InputError
        Missing ``#1.2`` line, a dimensions line that disagrees with the table, ragged rows,
        truncated gzip, empty file.
    """
    preamble: list[str] = []
    scan = scan_text(path, sep="\t", n_id=2, skip_lines=2, what="GCT file", preamble=preamble)
    if not preamble or preamble[0].strip() != "#1.2":
        raise InputError(
            f"{path}: line 1 is {preamble[0][:40] if preamble else ''!r}, expected '#1.2'; "
            "this is not a GCT 1.2 file (use --format matrix for a plain table)"
        )
    dims = preamble[1].split("\t") if len(preamble) > 1 else []
    try:
        n_genes, n_samples = int(dims[0]), int(dims[1])
    except (IndexError, ValueError) as exc:
        raise InputError(
            f"{path}: line 2 should hold '<genes>\\t<samples>', found {preamble[1][:60]!r}; fix the "
            "dimensions line"
        ) from exc
    n_value_cols = len(scan.header) - 2
    if (n_genes, n_samples) != (scan.n_rows, n_value_cols):
        raise InputError(
            f"{path}: line 2 declares {n_genes} genes x {n_samples} samples but the table has "
            f"{scan.n_rows} gene rows x {n_value_cols} sample columns; the file is truncated or the "
            "dimensions line is wrong"
        )
    return Source(
        fmt="gct",
        path=str(path),
        sample_ids=np.array(scan.header[2:], dtype=object),
        gene_ids=scan.ids[:, 0],
        gene_symbols=scan.ids[:, 1],
        rows="gene",
        read_blocks=lambda block_rows: text_blocks(scan, n_id=2, block_rows=block_rows, col_kind="sample"),
        hashes={str(path): scan.sha256},
        gene_where=lambda i: f"{path}: line {scan.first_data_line + i}, column 1 (Name)",
        sample_where=lambda j: f"{path}: line {scan.first_data_line - 1}, column {j + 3}",
        default_values="counts",
        label_column=None,
    )
