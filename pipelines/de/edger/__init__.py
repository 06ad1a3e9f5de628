"""edgeR's quasi-likelihood GLM test (glmQLFit / glmQLFTest) as R edgeR 3.40.2 computes it.

:mod:`.driver` runs it over gene blocks; :mod:`.glm` holds the NB GLM fits, :mod:`.dispersion`
the APL grid and its smoothing, :mod:`.squeeze` limma's empirical Bayes variance prior and
:mod:`.columns` the output columns (light, for the method registry).
"""
