"""Streaming ingest of expression data into gexplain stores.

Readers: GTEx GCT 1.2 (:mod:`~gexplain.storage.ingest.gct`), GDC STAR gene counts
(:mod:`~gexplain.storage.ingest.gdc`), CSV/TSV/Parquet matrices (:mod:`~gexplain.storage.ingest.matrix`; Broad
Firehose two-header-line matrices: :mod:`~gexplain.storage.ingest.firehose`), AnnData ``.h5ad``
(:mod:`~gexplain.storage.ingest.h5ad`); gene-id layouts (``SYMBOL|ENTREZ``, symbol-only:
:mod:`~gexplain.storage.ingest.gene_ids`); sample sheets (:mod:`~gexplain.storage.ingest.samplesheet`);
cohort merging (:mod:`~gexplain.storage.ingest.merge`); gene annotation tables and GTFs
(:mod:`~gexplain.storage.ingest.annotation`). Entry point: :func:`ingest`.
"""

from gexplain.storage.ingest.annotation import GeneAnnotation, read_gene_annotation
from gexplain.storage.ingest.api import (
    FORMATS,
    IngestReport,
    detect_format,
    ingest,
    ingest_one,
    read_gene_lengths,
)
from gexplain.storage.ingest.common import VALUE_TYPES, strip_versions
from gexplain.storage.ingest.matrix import ORIENTATIONS
from gexplain.storage.ingest.merge import MergeReport, merge_stores

__all__ = [
    "FORMATS",
    "GeneAnnotation",
    "ORIENTATIONS",
    "VALUE_TYPES",
    "IngestReport",
    "MergeReport",
    "detect_format",
    "ingest",
    "ingest_one",
    "merge_stores",
    "read_gene_annotation",
    "read_gene_lengths",
    "strip_versions",
]
