"""The per-gene columns edger writes after the registry's standard ones."""

EXTRA_COLUMNS = ("logCPM", "dispersion", "tagwise_dispersion", "ql_dispersion", "df_total")
"""logCPM (edgeR's AveLogCPM, log2 counts per million), the trended NB dispersion the QL fit
uses, the tagwise NB dispersion, the posterior QL dispersion and the F test's denominator df."""
