"""Bad input to run_deseq2 is refused before any model compute, with a message that says the fix."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from gexplain.pipelines.de.deseq2 import driver, run_deseq2
from gexplain.storage.errors import InputError


def make_ds(counts: np.ndarray | None = None, **columns: list) -> xr.Dataset:
    """8 samples x 5 genes with sample columns (default: 'dex' 4/4, 'cell' 2 levels)."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(20, (8, 5)) + 1 if counts is None else counts
    cols = {"dex": ["trt", "untrt"] * 4, "cell": ["a", "a", "b", "b"] * 2} | columns
    data = {f"sample_{k}": ("sample", np.asarray(v)) for k, v in cols.items()}
    data["counts"] = (("sample", "gene"), da.from_array(counts, chunks=(8, 2)))
    return xr.Dataset(
        data, coords={"sample": [f"s{i}" for i in range(8)], "gene": [f"g{j}" for j in range(5)]}
    )


@pytest.fixture(autouse=True)
def no_compute(monkeypatch):
    """Any size-factor computation means the model started: fail the test."""

    def boom(*args, **kwargs):
        raise AssertionError("model compute started before input validation")

    monkeypatch.setattr(driver, "size_factors_of", boom)


def raises(ds: xr.Dataset, design: str, contrasts: list, *needles: str) -> None:
    with pytest.raises(InputError) as err:
        run_deseq2(ds, design, contrasts)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_non_integer_counts() -> None:
    counts = np.full((8, 5), 10.0)
    counts[3, 2] = 2.5
    raises(
        make_ds(counts), "~dex", [("dex", "trt", "untrt")], "non-integer", "sample 's3'", "gene 'g2'", "raw"
    )


def test_negative_counts() -> None:
    counts = np.full((8, 5), 10, dtype=np.int64)
    counts[6, 4] = -1
    raises(make_ds(counts), "~dex", [("dex", "trt", "untrt")], "negative", "sample 's6'", "gene 'g4'")


def test_unknown_contrast_level_lists_levels() -> None:
    raises(make_ds(), "~dex", [("dex", "treated", "untrt")], "'treated' does not exist", "levels: trt, untrt")


def test_group_with_one_sample() -> None:
    ds = make_ds(dex=["trt", "untrt", "untrt", "untrt", "ctl", "ctl", "ctl", "ctl"])
    raises(ds, "~dex", [("dex", "trt", "ctl")], "'dex=trt' has 1 sample", "at least 2 samples")


def test_design_not_full_rank_names_columns() -> None:
    ds = make_ds(batch=["x", "y"] * 4)  # batch is dex under another name
    raises(ds, "~dex + batch", [("dex", "trt", "untrt")], "not full rank", "dex[T.untrt]", "batch[T.y]")


def test_unknown_factor_lists_sample_columns() -> None:
    raises(
        make_ds(),
        "~ cell + treatment",
        [("dex", "trt", "untrt")],
        "no sample column 'treatment'",
        "cell, dex",
    )


def test_contrast_factor_not_in_design() -> None:
    raises(make_ds(), "~cell", [("dex", "trt", "untrt")], "not a categorical term", "cell")


def test_bad_formula() -> None:
    raises(make_ds(), "cell + dex", [("dex", "trt", "untrt")], "must start with '~'")
