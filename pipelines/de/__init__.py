"""Differential expression per gene block: deseq2 (:mod:`gexplain.pipelines.de.deseq2`), the Mann-Whitney U
test (:mod:`gexplain.pipelines.de.mannwhitney`) and Welch's t-test (:mod:`gexplain.pipelines.de.welch`), with
contrasts from sample columns (:mod:`gexplain.pipelines.de.contrasts`), results kept in the store and
exported as tables and volcano plots (:mod:`gexplain.pipelines.de.output`, :mod:`gexplain.pipelines.de.volcano`).
Entry points: :func:`gexplain.pipelines.de.analysis.plan` / :func:`gexplain.pipelines.de.analysis.execute`, the
``de`` stage and ``gexplain de``.
"""
