"""Streaming ingest of expression data into gexplain stores.

Readers: GTEx GCT 1.2 (:mod:`~storage.ingest.gct`), GDC STAR gene counts
(:mod:`~storage.ingest.gdc`), CSV/TSV/Parquet matrices (:mod:`~storage.ingest.matrix`; Broad
Firehose two-header-line matrices: :mod:`~storage.ingest.firehose`), AnnData ``.h5ad``
(:mod:`~storage.ingest.h5ad`); gene-id layouts (``SYMBOL|ENTREZ``, symbol-only:
:mod:`~storage.ingest.gene_ids`); sample sheets (:mod:`~storage.ingest.samplesheet`);
cohort merging (:mod:`~storage.ingest.merge`); gene annotation tables and GTFs
(:mod:`~storage.ingest.annotation`). Entry point: :func:`ingest`.
"""

from storage.ingest.annotation import GeneAnnotation, read_gene_annotation
from storage.ingest.api import FORMATS, IngestReport, detect_format, ingest, ingest_one, read_gene_lengths
from storage.ingest.common import VALUE_TYPES, strip_versions
from storage.ingest.matrix import ORIENTATIONS
from storage.ingest.merge import MergeReport, merge_stores

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
