"""gexplain's DESeq2 and TMM against R (DESeq2 1.38.3, edgeR 3.40.2; tests/r/references from
tests/r/make_references.R): small residual df (the prior-variance simulation), many levels,
unbalanced groups with all-zero genes and Cook's outliers, large counts."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from gexplain.pipelines.de.deseq2 import dispersion, driver, rrandom, run_deseq2
from gexplain.pipelines.de.deseq2.backends import NumpyBackend
from gexplain.pipelines.de.deseq2.design import build_design
from gexplain.pipelines.normalize.size_factors import median_of_ratios
from gexplain.pipelines.normalize.tmm import tmm_factors

REFS = Path(__file__).parent / "r" / "references"
CASES = [
    ("small_df", "~ cell + dex", ("dex", "trt", "untrt")),
    ("small_df_scatter", "~ cell + dex", ("dex", "trt", "untrt")),
    ("many_levels", "~ tissue", ("tissue", "t2", "t1")),
    ("many_levels", "~ tissue", ("tissue", "t5", "t3")),
    ("unbalanced", "~ group", ("group", "case", "ctrl")),
    ("large_counts", "~ condition", ("condition", "B", "A")),
]
COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]

pytestmark = pytest.mark.skipif(not REFS.is_dir(), reason="R references absent (make r-references)")


def load(case: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = pd.read_csv(REFS / case / "counts.csv.gz", index_col=0)  # samples x genes
    coldata = pd.read_csv(REFS / case / "coldata.csv", index_col=0).astype(str)
    return counts, coldata


def dataset(counts: pd.DataFrame, coldata: pd.DataFrame) -> xr.Dataset:
    data = {f"sample_{c}": ("sample", coldata[c].to_numpy()) for c in coldata.columns}
    data["counts"] = (("sample", "gene"), counts.to_numpy(np.int64))
    return xr.Dataset(
        data, coords={"sample": counts.index.to_numpy(str), "gene": counts.columns.to_numpy(str)}
    )


def rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Relative error, with an absolute floor of 1e-12 (R writes exact zeros)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = ~np.isnan(b)
    return np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12)


@pytest.fixture(scope="module")
def fits() -> dict[tuple[str, tuple[str, ...]], pd.DataFrame]:
    out = {}
    for case, design, contrast in CASES:
        counts, coldata = load(case)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no raw warning leaks from the fit
            # alpha 0.1: R's results() default; gene blocks of 128 (several blocks per case)
            (res,) = run_deseq2(
                dataset(counts, coldata), design, [contrast], alpha=0.1, gene_block=128
            ).values()
        out[case, contrast] = res.to_dataframe()[COLUMNS]
    return out


@pytest.mark.parametrize(("case", "design", "contrast"), CASES)
def test_results_equal_r(fits, case, design, contrast) -> None:
    """Every column: median relative error to R <= 1e-10, 99.5 % of genes within 1e-6, all within 1e-2
    (the few beyond 1e-6 are degenerate genes whose IRLS diverges, refitted by L-BFGS-B as R does:
    SciPy's and R's L-BFGS-B stop at slightly different points there); same NaNs; the same calls
    at padj < 0.05 and 0.1."""
    ours = fits[case, contrast]
    r = pd.read_csv(REFS / case / f"deseq2_results_{'_'.join(contrast)}.csv.gz", index_col=0)
    assert list(r.index) == list(ours.index)
    for col in COLUMNS:
        assert (ours[col].isna() == r[col].isna()).all(), col
        err = rel(ours[col].to_numpy(), r[col].to_numpy())
        assert np.median(err) <= 1e-10, (col, np.median(err))
        assert np.quantile(err, 0.995) <= 1e-6, (col, np.quantile(err, 0.995))
        assert err.max() <= 1e-2, (col, err.max())
    for alpha in (0.05, 0.1):
        assert ((ours.padj < alpha) == (r.padj < alpha)).all()


@pytest.mark.parametrize(
    "case", ["small_df", "small_df_scatter", "many_levels", "unbalanced", "large_counts"]
)
def test_dispersion_steps_equal_r(case) -> None:
    """Size factors, gene-wise, trend, prior variance and final dispersions vs R's mcols(dds)."""
    counts, coldata = load(case)
    genes = pd.read_csv(REFS / case / "deseq2_genes.csv.gz", index_col=0)
    glob = pd.read_csv(REFS / case / "deseq2_global.csv", index_col=0)["value"]
    design = {"many_levels": "~ tissue", "unbalanced": "~ group"}.get(
        case, "~ cell + dex" if case.startswith("small_df") else "~ condition"
    )
    dsgn = build_design(dataset(counts, coldata), design)
    x = counts.to_numpy(np.float64)
    sf = median_of_ratios(x)
    r_sf = pd.read_csv(REFS / case / "size_factors.csv", index_col=0)["size_factor"].to_numpy()
    np.testing.assert_allclose(sf, r_sf, rtol=1e-12)
    model = driver._model(dsgn, sf, [(dsgn.columns[-1],)], True, NumpyBackend())
    means, genewise, beta_hat = driver._pass1(x, model)
    nz = ~genes["allZero"].to_numpy()
    assert (~np.isnan(genewise) == nz).all()
    # R overwrites the per-gene columns of genes refitted after Cook's replacement: compare the others
    kept = ~genes["replace"].eq(True).to_numpy()[nz]
    np.testing.assert_allclose(genewise[nz][kept], genes["dispGeneEst"][nz][kept], rtol=1e-8)
    trend = dispersion.fit_trend(means[nz], genewise[nz])
    assert trend.kind == "parametric"
    np.testing.assert_allclose(trend.coeffs, (glob["a0"], glob["a1"]), rtol=1e-8)
    prior = dispersion.fit_prior(genewise[nz], trend(means[nz]), *dsgn.matrix.shape)
    np.testing.assert_allclose(prior.squared_logres, glob["varLogDispEsts"], rtol=1e-8)
    np.testing.assert_allclose(prior.variance, glob["dispPriorVar"], rtol=1e-8)
    glb = driver._Global(trend, prior)
    disp = driver._dispersions_and_fit(x[:, nz], model, glb, (genewise[nz], beta_hat[nz]))[1]
    # the line search stops on a log-posterior change below 1e-6: a last-bit difference in the sums
    # can end it one step apart, a few 1e-6 relative in the dispersion (1 gene in 1000 here)
    np.testing.assert_allclose(disp[kept], genes["dispersion"][nz][kept], rtol=1e-5)
    assert np.median(np.abs(disp[kept] / genes["dispersion"][nz][kept] - 1)) <= 1e-12


def test_small_df_takes_the_simulation_branch() -> None:
    """m - p = 3: the prior variance is R's simulated one, not mad^2 - trigamma (which differs)."""
    glob = pd.read_csv(REFS / "small_df_scatter" / "deseq2_global.csv", index_col=0)["value"]
    from scipy.special import polygamma

    m, p = int(glob["n"]), int(glob["p"])
    assert m - p == 3
    closed_form = max(glob["varLogDispEsts"] - polygamma(1, (m - p) / 2), 0.25)
    assert glob["dispPriorVar"] > 0.25  # above the floor, so the simulation decides it
    assert abs(closed_form - glob["dispPriorVar"]) > 0.05  # the branch matters on this data


def test_r_random_numbers() -> None:
    """set.seed(2); rchisq(20, df); rnorm(20) as R draws them (df 1: GS algorithm; 2, 3: GD)."""
    r = pd.read_csv(REFS / "r_rng.csv")
    for df, rows in r.groupby("df"):
        chisq, norm = rrandom.r_draws(2, float(df), len(rows))
        np.testing.assert_allclose(chisq, rows["chisq"], rtol=1e-12)
        np.testing.assert_allclose(norm, rows["norm"], rtol=1e-12)


@pytest.mark.parametrize("case", ["small_df", "many_levels", "unbalanced", "large_counts"])
def test_tmm_equals_edger(case) -> None:
    """edgeR calcNormFactors(method = "TMM"): factors and library sizes; numpy and dask the same."""
    import dask.array as da

    counts, _ = load(case)
    r = pd.read_csv(REFS / case / "edger_tmm.csv", index_col=0)
    x = counts.to_numpy(np.int64)
    np.testing.assert_allclose(x.sum(axis=1), r["lib_size"], rtol=0)
    np.testing.assert_allclose(tmm_factors(x), r["norm_factor"], rtol=1e-12)
    lazy = tmm_factors(da.from_array(x, chunks=(3, 100)), block_rows=2)
    np.testing.assert_allclose(lazy, r["norm_factor"], rtol=1e-12)
