"""gexplain's edger against R edgeR 3.40.2 (tests/r/references from tests/r/make_references.R):
``calcNormFactors``, ``estimateDisp``, ``glmQLFit``, ``glmQLFTest`` and topTags' BH on small
residual df, many levels (a contrast between two non-reference levels), unbalanced groups with
all-zero genes and large counts.

R's locfit evaluates the dispersion trend on a kd tree and interpolates; gexplain evaluates it
at every gene. The steps are compared with R run both ways: with ``ev = dat()`` (direct, the
same computation) they agree to rounding; with R's default they differ by locfit's interpolation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.de.edger.driver import run_edger
from test_deseq2_r_parity import REFS, load, rel
from test_deseq2_r_parity import dataset as make_dataset

CASES = [
    ("small_df", "~ cell + dex", ("dex", "trt", "untrt")),
    ("small_df_scatter", "~ cell + dex", ("dex", "trt", "untrt")),
    ("many_levels", "~ tissue", ("tissue", "t2", "t1")),
    ("many_levels", "~ tissue", ("tissue", "t5", "t3")),
    ("unbalanced", "~ group", ("group", "case", "ctrl")),
    ("large_counts", "~ condition", ("condition", "B", "A")),
]

pytestmark = pytest.mark.skipif(
    not (REFS / "small_df" / "edger_genes.csv.gz").is_file(), reason="R edgeR references absent (make r-references)"
)


@pytest.fixture(scope="module")
def fits() -> dict[tuple[str, tuple[str, ...]], tuple[pd.DataFrame, dict]]:
    out = {}
    for case, design, contrast in CASES:
        counts, coldata = load(case)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no raw warning leaks from the fit
            # gene blocks of 128: several blocks per case, as on a store
            (res,) = run_edger(make_dataset(counts, coldata), design, [contrast], gene_block=128).values()
        out[case, contrast] = res.to_dataframe(), dict(res.attrs)
    return out


def _r(case: str) -> tuple[pd.DataFrame, pd.Series]:
    genes = pd.read_csv(REFS / case / "edger_genes.csv.gz", index_col=0)
    glob = pd.read_csv(REFS / case / "edger_global.csv", index_col=0)["value"]
    return genes, glob


@pytest.mark.parametrize(("case", "design", "contrast"), CASES)
def test_steps_equal_r_with_direct_locfit(fits, case, design, contrast) -> None:
    """Common dispersion, AveLogCPM, span, trended and tagwise dispersions and the prior df equal R's
    when R's locfit is evaluated at every gene (ev = dat())."""
    ours, attrs = fits[case, contrast]
    genes, glob = _r(case)
    assert list(genes.index) == list(ours.index)
    assert rel(attrs["common_dispersion"], glob["common_dispersion"]).max() < 1e-5
    assert abs(attrs["span"] - glob["span"]) < 1e-12
    assert np.median(rel(ours.logCPM, genes.AveLogCPM)) < 1e-8
    assert rel(ours.logCPM, genes.AveLogCPM).max() < 1e-6
    trended = rel(ours.dispersion, genes.trended_direct)
    assert np.median(trended) < 1e-7 and trended.max() < 1e-3
    tagwise = rel(ours.tagwise_dispersion, genes.tagwise_direct)
    assert np.median(tagwise) < 1e-7 and np.mean(tagwise < 1e-4) >= 0.99
    assert rel(attrs["dispersion_prior_df"], glob["disp_prior_df_direct"]).max() < 1e-5


@pytest.mark.parametrize(("case", "design", "contrast"), CASES)
def test_results_near_r(fits, case, design, contrast) -> None:
    """Against R's defaults (locfit's kd-tree interpolation): trend within 0.8 % (median), QL prior
    df within 1.5 %, logFC median relative error < 3e-4, F and p-values within 1 % (median), the
    zero-fitted residual df equal, and >= 99.5 % of the FDR < 0.05 calls the same."""
    ours, attrs = fits[case, contrast]
    genes, glob = _r(case)
    r = pd.read_csv(REFS / case / f"edger_results_{'_'.join(contrast)}.csv.gz", index_col=0)
    assert np.median(rel(ours.dispersion, genes.trended)) < 8e-3
    assert rel(attrs["ql_prior_df"], glob["ql_df_prior"]).max() < 1.5e-2
    assert np.median(rel(ours.log2FoldChange, r.logFC)) < 3e-4
    assert np.median(rel(ours.stat, r.F)) < 1e-2
    assert np.median(rel(ours.pvalue, r.PValue)) < 1e-2
    assert np.median(rel(ours.padj, r.FDR)) < 1e-2
    assert np.median(rel(ours.ql_dispersion, genes.s2_post)) < 1e-2
    assert np.allclose(ours.logCPM, r.logCPM, rtol=1e-6)
    df_zero = ours.df_total.to_numpy() - attrs["ql_prior_df"]
    assert np.allclose(df_zero, genes.df_residual_zeros, atol=1e-9)
    agree = np.mean((ours.padj < 0.05).to_numpy() == (r.FDR < 0.05).to_numpy())
    assert agree >= 0.995
    assert ours.lfcSE.isna().all()
