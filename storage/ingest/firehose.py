"""Broad GDAC Firehose matrices (TCGA legacy ``...RSEM_genes__data.data.txt``): two header lines.

Layout::

    Hybridization REF  TCGA-3C-AAAU-01A-11R-A41B-07  TCGA-3C-AAAU-01A-11R-A41B-07  ...
    gene_id            raw_count                     scaled_estimate               transcript_id ...
    ?|100130426        0.00                          0                             uc011lsn.1 ...

Line 1 names each column's sample, line 2 its quantity; a sample has one column per quantity
(``raw_count``, ``scaled_estimate``, ``transcript_id`` for RSEM genes; ``normalized_count`` for
the normalized file). The value columns are those of one quantity: ``raw_count`` (RSEM expected
counts: ingest them with ``--values expected_counts``), else ``normalized_count``, else the only
numeric quantity.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from gexplain.storage.errors import InputError
from gexplain.storage.ingest.text_table import TextScan

FIREHOSE_HEADER = "hybridization ref"
PREFERRED = ("raw_count", "normalized_count", "expected_count", "read_count")
NOT_VALUES = frozenset({"transcript_id", "gene_id"})


def is_firehose(scan: TextScan) -> bool:
    """True when the header starts with ``Hybridization REF`` and the next row with ``gene_id``."""
    return (
        bool(scan.header)
        and scan.header[0].strip().lower() == FIREHOSE_HEADER
        and scan.n_rows > 1
        and str(scan.ids[0, 0]).strip().lower() in ("gene_id", "gene", "composite element ref")
    )


def firehose_scan(scan: TextScan, quantities: list[str]) -> tuple[TextScan, np.ndarray]:
    """Restrict a Firehose table to one quantity's columns.

    Parameters
    ----------
    scan
        The scan of the file (its first data row is the quantity row).
    quantities
        (field,) the quantity row's fields (``gene_id``, then one name per value column).

    Returns
    -------
    (scan, sample_ids)
        The scan without the quantity row and with ``columns`` set; the (sample,) ids.

    Raises
    ------
    InputError
        No numeric quantity, or a sample with two columns of the chosen quantity.
    """
    names = [q.strip() for q in quantities]
    present = [q for q in dict.fromkeys(names[1:]) if q.lower() not in NOT_VALUES]
    chosen = next((p for p in PREFERRED if p in present), present[0] if len(present) == 1 else None)
    if chosen is None:
        raise InputError(
            f"{scan.path}: line {scan.first_data_line}: a Firehose matrix with quantities {present}; keep one "
            f"quantity's columns ({', '.join(PREFERRED)}) and ingest that file"
        )
    columns = [i for i, q in enumerate(names) if i > 0 and q == chosen]
    samples = np.array([scan.header[i] for i in columns], dtype=object)
    restricted = replace(scan, ids=scan.ids[1:], first_data_line=scan.first_data_line + 1, columns=columns)
    return restricted, samples
