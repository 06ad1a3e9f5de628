"""Differential expression per gene block: deseq2 (:mod:`pipelines.de.deseq2`), the Mann-Whitney U
test (:mod:`pipelines.de.mannwhitney`) and Welch's t-test (:mod:`pipelines.de.welch`), with
contrasts from sample columns (:mod:`pipelines.de.contrasts`), results kept in the store and
exported as tables and volcano plots (:mod:`pipelines.de.output`, :mod:`pipelines.de.volcano`).
Entry points: :func:`pipelines.de.analysis.plan` / :func:`pipelines.de.analysis.execute`, the
``de`` stage and ``gexplain de``.
"""
