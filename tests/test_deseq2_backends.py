"""The DESeq2 kernels' backends: torch (on the CPU here) against numpy and R on the R reference
cases, the distinct-count tally against a direct sum over samples, and the device choice."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.de.deseq2 import run_deseq2
from gexplain.pipelines.de.deseq2.backends import NumpyBackend, TorchBackend, get_backend, torch_device
from gexplain.pipelines.de.deseq2.tally import CountTally
from gexplain.storage.errors import InputError
from scipy.special import digamma, gammaln
from test_deseq2_r_parity import COLUMNS, REFS, dataset, load, rel

torch = pytest.importorskip("torch")

CASES = [
    ("small_df_scatter", "~ cell + dex", ("dex", "trt", "untrt")),  # the simulated prior, 3 coefficients
    ("many_levels", "~ tissue", ("tissue", "t5", "t3")),  # many coefficients
    ("unbalanced", "~ group", ("group", "case", "ctrl")),  # all-zero genes, Cook's outliers refitted
]


def fit(case: str, design: str, contrast: tuple[str, ...], backend: str) -> pd.DataFrame:
    counts, coldata = load(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw warning leaks from either backend
        (res,) = run_deseq2(
            dataset(counts, coldata), design, [contrast], alpha=0.1, gene_block=128, backend=backend
        ).values()
    return res.to_dataframe()[COLUMNS]


@pytest.mark.skipif(not REFS.is_dir(), reason="R references absent (make r-references)")
@pytest.mark.parametrize(("case", "design", "contrast"), CASES)
def test_torch_cpu_equals_numpy_and_r(case, design, contrast) -> None:
    """torch on the CPU against numpy: median relative difference <= 1e-12, 99 % of genes within
    1e-10, all within 1e-6 (p-values 1e-4), same NaNs and calls; and as close to R as the parity
    test asks of numpy.

    The few genes beyond 1e-10 (3 of 1,000, 1 of 600) are where the dispersion line search stops on
    a log-posterior change below 1e-6: a last-bit difference between the two backends' sums ends it
    one step apart (as between numpy and R, test_deseq2_r_parity.py).
    """
    ours = fit(case, design, contrast, "torch")
    base = fit(case, design, contrast, "numpy")
    r = pd.read_csv(REFS / case / f"deseq2_results_{'_'.join(contrast)}.csv.gz", index_col=0)
    for col in COLUMNS:
        assert (ours[col].isna() == base[col].isna()).all(), col
        diff = rel(ours[col].to_numpy(), base[col].to_numpy())
        # a p-value's relative error is the Wald statistic's times about z^2: 1e-6 in z = 6.3
        # (p = 3e-10, small_df_scatter g0834) is 4e-5 in p
        worst = 1e-4 if col in ("pvalue", "padj") else 1e-6
        assert np.median(diff) <= 1e-12 and np.quantile(diff, 0.99) <= 1e-10 and diff.max() <= worst, col
        err = rel(ours[col].to_numpy(), r[col].to_numpy())
        assert np.median(err) <= 1e-10 and np.quantile(err, 0.995) <= 1e-6, col
    assert ((ours.padj < 0.1) == (base.padj < 0.1)).all()


def _block(seed: int = 3, n: int = 30, g: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NB counts (sample, gene) with an all-zero gene and ties, their means and a 3-column design."""
    rng = np.random.default_rng(seed)
    mu = rng.lognormal(2.0, 1.5, (1, g)) * rng.lognormal(0, 0.3, (n, 1))
    counts = rng.negative_binomial(5, 5 / (5 + mu)).astype(np.float64)
    counts[:, 0] = 0
    design = np.column_stack([np.ones(n), np.arange(n) % 2, np.arange(n) % 3 == 1]).astype(np.float64)
    return counts, np.maximum(mu * np.ones((n, 1)), 0.5), design


def test_tally_sums_equal_direct_sums() -> None:
    """sum over samples of lgamma(y + s) - lgamma(s) and digamma(y + s) - digamma(s), gene by gene."""
    counts, _, _ = _block()
    tally = CountTally.of(counts.T)
    shift = np.geomspace(1e-3, 1e8, counts.shape[1])
    idx = np.array([5, 0, 17, 1, 39])
    for func in (gammaln, digamma):
        direct = [np.sum(func(counts[:, j] + shift[k]) - func(shift[k])) for k, j in enumerate(idx)]
        np.testing.assert_allclose(
            tally.per_gene(func, shift[: idx.size], idx), direct, rtol=1e-12, atol=1e-9
        )
    assert tally.weights.sum() == (counts != 0).sum()


def test_torch_kernels_equal_numpy() -> None:
    """Log posterior, its derivative and IRLS of one block: torch (CPU) vs numpy to 1e-10."""
    counts, mu, design = _block()
    log_alpha = np.linspace(-4, 1, counts.shape[1])
    idx = np.arange(counts.shape[1])
    prior = np.full(counts.shape[1], -2.0)
    ours = TorchBackend("cpu").posterior(counts, mu, design, prior, 0.7)
    base = NumpyBackend().posterior(counts, mu, design, prior, 0.7)
    np.testing.assert_allclose(ours.value(log_alpha, idx), base.value(log_alpha, idx), rtol=1e-10)
    np.testing.assert_allclose(ours.derivative(log_alpha, idx), base.derivative(log_alpha, idx), rtol=1e-10)
    sub = np.array([3, 7])
    np.testing.assert_allclose(
        ours.subset(sub).value(log_alpha[sub], np.arange(2)), base.value(log_alpha[sub], sub), rtol=1e-10
    )
    sf = np.exp(np.linspace(-0.3, 0.3, counts.shape[0]))
    disp = np.exp(log_alpha)
    for a, b in zip(
        TorchBackend("cpu").irls(counts, sf, design, disp),
        NumpyBackend().irls(counts, sf, design, disp),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_device_selection(monkeypatch) -> None:
    """CUDA when torch sees a GPU, else the CPU (decided without touching a GPU)."""
    assert torch_device(cuda_available=True).type == "cuda"
    assert torch_device(cuda_available=False).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_backend("torch").device == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_backend("torch").device == "cpu"
    assert get_backend("torch", "cuda:1").device == "cuda:1"


def test_unknown_backend_is_an_input_error() -> None:
    counts, coldata = load("unbalanced") if REFS.is_dir() else (None, None)
    if counts is None:
        pytest.skip("R references absent")
    with pytest.raises(InputError, match="unknown deseq2 backend 'jax'.*numpy, torch"):
        run_deseq2(dataset(counts, coldata), "~ group", [("group", "case", "ctrl")], backend="jax")
