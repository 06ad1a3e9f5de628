"""gexplain's edger against R edgeR 3.40.2 (tests/r/references from tests/r/make_references.R):
``calcNormFactors``, ``estimateDisp``, ``glmQLFit``, ``glmQLFTest`` and topTags' BH on small
residual df, many levels (a contrast between two non-reference levels), unbalanced groups with
all-zero genes and large counts. Each step is compared, not only the results. ``test = "lrt"``
against R's ``glmFit`` + ``glmLRT`` (McCarthy et al. 2012, "edgeR-GLM") on the same cases.
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
    not (REFS / "small_df" / "edger_genes.csv.gz").is_file(),
    reason="R edgeR references absent (make r-references)",
)


def _run_all(test: str) -> dict[tuple[str, tuple[str, ...]], tuple[pd.DataFrame, dict]]:
    out = {}
    for case, design, contrast in CASES:
        counts, coldata = load(case)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no raw warning leaks from the fit
            # gene blocks of 512: several blocks in the larger cases, as on a store
            (res,) = run_edger(
                make_dataset(counts, coldata), design, [contrast], test=test, gene_block=512
            ).values()
        out[case, contrast] = res.to_dataframe(), dict(res.attrs)
    return out


@pytest.fixture(scope="module")
def fits() -> dict[tuple[str, tuple[str, ...]], tuple[pd.DataFrame, dict]]:
    return _run_all("ql")


@pytest.fixture(scope="module")
def lrt_fits() -> dict[tuple[str, tuple[str, ...]], tuple[pd.DataFrame, dict]]:
    return _run_all("lrt")


def _r(case: str) -> tuple[pd.DataFrame, pd.Series]:
    genes = pd.read_csv(REFS / case / "edger_genes.csv.gz", index_col=0)
    glob = pd.read_csv(REFS / case / "edger_global.csv", index_col=0)["value"]
    return genes, glob


@pytest.mark.parametrize(("case", "design", "contrast"), CASES)
def test_dispersion_steps_equal_r(fits, case, design, contrast) -> None:
    """estimateDisp: common dispersion, span, AveLogCPM, the locfit trend (kd-tree vertices,
    linear interpolation) and the tagwise dispersions, and its prior df, equal R's."""
    ours, attrs = fits[case, contrast]
    genes, glob = _r(case)
    assert list(genes.index) == list(ours.index)
    assert rel(attrs["common_dispersion"], glob["common_dispersion"]).max() < 1e-5
    assert abs(attrs["span"] - glob["span"]) < 1e-12
    assert np.median(rel(ours.logCPM, genes.AveLogCPM)) < 1e-8
    assert rel(ours.logCPM, genes.AveLogCPM).max() < 1e-6
    trended = rel(ours.dispersion, genes.trended)
    assert np.median(trended) < 1e-7 and trended.max() < 1e-3
    tagwise = rel(ours.tagwise_dispersion, genes.tagwise)
    assert np.median(tagwise) < 1e-7 and np.mean(tagwise < 1e-4) >= 0.99
    assert rel(attrs["dispersion_prior_df"], glob["disp_prior_df"]).max() < 1e-5


@pytest.mark.parametrize(("case", "design", "contrast"), CASES)
def test_ql_results_equal_r(fits, case, design, contrast) -> None:
    """glmQLFit and glmQLFTest: zero-fitted residual df equal; QL prior df, posterior QL
    dispersions, logFC, F, p-values and FDR within 1e-5 (median) of R's; every FDR < 0.05 call
    the same (goal: >= 99.5 %)."""
    ours, attrs = fits[case, contrast]
    genes, glob = _r(case)
    r = pd.read_csv(REFS / case / f"edger_results_{'_'.join(contrast)}.csv.gz", index_col=0)
    df_zero = ours.df_total.to_numpy() - attrs["ql_prior_df"]
    assert np.allclose(df_zero, genes.df_residual_zeros, atol=1e-9)
    assert rel(attrs["ql_prior_df"], glob["ql_df_prior"]).max() < 1e-5
    post = rel(ours.ql_dispersion, genes.s2_post)
    assert np.median(post) < 1e-5 and post.max() < 1e-3
    lfc = rel(ours.log2FoldChange, r.logFC)
    assert np.median(lfc) < 1e-8 and lfc.max() < 1e-3
    stat = rel(ours.stat, r.F)  # F near 0 (LR of rounding size) is relatively noisy
    assert np.median(stat) < 1e-5 and np.mean(stat < 1e-4) >= 0.99
    for col, ref in (("pvalue", "PValue"), ("padj", "FDR")):
        err = rel(ours[col], r[ref])
        assert np.median(err) < 1e-5 and err.max() < 1e-3, col
    assert np.allclose(ours.logCPM, r.logCPM, rtol=1e-6)
    assert ((ours.padj < 0.05).to_numpy() == (r.FDR < 0.05).to_numpy()).all()
    assert ours.lfcSE.isna().all()


@pytest.mark.parametrize(("case", "design", "contrast"), CASES)
def test_lrt_results_equal_r(lrt_fits, case, design, contrast) -> None:
    """glmFit at the tagwise dispersions and glmLRT: logFC, LR, p-values and FDR within 1e-5
    (median) of R's, every FDR < 0.05 call the same. The largest p-value difference (1.5 %,
    small_df_scatter) is a gene whose tagwise dispersion already differs from R's by 1.6 %."""
    ours, attrs = lrt_fits[case, contrast]
    r = pd.read_csv(REFS / case / f"edger_lrt_results_{'_'.join(contrast)}.csv.gz", index_col=0)
    assert attrs["test"] == "lrt"
    lfc = rel(ours.log2FoldChange, r.logFC)
    assert np.median(lfc) < 1e-8 and lfc.max() < 1e-3
    stat = rel(ours.stat, r.LR)  # LR near 0 (rounding size) is relatively noisy
    assert np.median(stat) < 1e-5 and np.mean(stat < 1e-4) >= 0.99
    for col, ref in (("pvalue", "PValue"), ("padj", "FDR")):
        err = rel(ours[col], r[ref])
        assert np.median(err) < 1e-5 and np.mean(err < 1e-4) >= 0.98 and err.max() < 0.02, col
    assert np.allclose(ours.logCPM, r.logCPM, rtol=1e-6)
    assert ((ours.padj < 0.05).to_numpy() == (r.FDR < 0.05).to_numpy()).all()
    assert ours.lfcSE.isna().all() and ours.ql_dispersion.isna().all() and ours.df_total.isna().all()
