"""DESeq2 differential expression per gene block (see :func:`run_deseq2`)."""

from gexplain.pipelines.de.deseq2.driver import run_deseq2

__all__ = ["run_deseq2"]
