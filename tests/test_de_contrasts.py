"""Contrasts from sample columns and the checks made before any compute."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from gexplain.pipelines.de.analysis import plan
from gexplain.pipelines.de.contrasts import one_vs_rest, pairwise, per_group
from gexplain.pipelines.de.stage import DeTest
from gexplain.storage.errors import InputError

TISSUE = ["lung"] * 6 + ["liver"] * 5 + ["brain"] * 4 + [np.nan]
STATUS = ["tumour", "tumour", "tumour", "normal", "normal", "normal"]
STATUS += ["tumour", "tumour", "normal", "normal", "normal"]
STATUS += ["tumour", "normal", "normal", "normal", "normal"]


def _ds() -> xr.Dataset:
    n = len(TISSUE)
    return xr.Dataset(
        {
            "sample_tissue": ("sample", np.array(TISSUE, dtype=object)),
            "sample_status": ("sample", np.array(STATUS, dtype=object)),
            "sample_age": ("sample", np.arange(n, dtype=np.float64)),
            "counts": (("sample", "gene"), np.ones((n, 3), dtype=np.int64)),
        },
        coords={"sample": [f"s{i}" for i in range(n)], "gene": ["g0", "g1", "g2"]},
    )


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"tissue": TISSUE, "status": STATUS})


def test_pairwise_groups_match_pandas() -> None:
    c = pairwise(_ds(), "sample_status", "tumour", "normal")
    frame = _frame()
    np.testing.assert_array_equal(c.test_index, np.flatnonzero(frame.status == "tumour"))
    np.testing.assert_array_equal(c.ref_index, np.flatnonzero(frame.status == "normal"))
    assert c.name == "status_tumour_vs_normal" and c.kind == "pairwise"


def test_one_vs_rest_every_level_leaves_out_missing_values() -> None:
    found = one_vs_rest(_ds(), "tissue")
    frame = _frame()
    assert [c.test for c in found] == sorted(frame.tissue.dropna().unique())
    for c in found:
        np.testing.assert_array_equal(c.test_index, np.flatnonzero(frame.tissue == c.test))
        others = np.flatnonzero(frame.tissue.notna() & (frame.tissue != c.test))
        np.testing.assert_array_equal(c.ref_index, others)
        assert c.name == f"tissue_{c.test}_vs_rest"


def test_per_group_only_where_both_levels_have_two_samples() -> None:
    found, skipped = per_group(_ds(), "tissue", "status", "tumour", "normal")
    frame = _frame()
    # brain has a single tumour sample: left out
    assert [c.within for c in found] == [("tissue", "liver"), ("tissue", "lung")]
    assert len(skipped) == 1 and skipped[0].startswith("brain")
    for c in found:
        inside = frame.tissue == c.within[1]
        np.testing.assert_array_equal(c.test_index, np.flatnonzero(inside & (frame.status == "tumour")))
        np.testing.assert_array_equal(c.ref_index, np.flatnonzero(inside & (frame.status == "normal")))


def test_bad_contrasts_name_the_fix() -> None:
    ds = _ds()
    with pytest.raises(InputError, match=r"levels present: normal, tumour"):
        pairwise(ds, "status", "tumor", "normal")
    with pytest.raises(InputError, match=r"sample_age, sample_status, sample_tissue"):
        pairwise(ds, "condition", "a", "b")
    with pytest.raises(InputError, match=r"at least 2"):
        pairwise(ds.isel(sample=[0, 1, 2, 6]), "tissue", "lung", "liver")  # one liver sample
    with pytest.raises(InputError, match=r"no level of 'tissue'"):
        per_group(ds.isel(sample=slice(11, 16)), "tissue", "status", "tumour", "normal")


def test_plan_rejects_before_compute() -> None:
    ds = _ds()
    with pytest.raises(InputError, match="cannot adjust for covariates"):
        plan(
            ds,
            DeTest(
                method="mannwhitney", design="~ age + status", contrasts=(("status", "tumour", "normal"),)
            ),
        )
    with pytest.raises(InputError, match="no contrast"):
        plan(ds, DeTest(method="welch"))
    with pytest.raises(ValueError, match="'deseq2', 'edger', 'mannwhitney' or 'welch'"):  # the params model
        DeTest(method="limma", contrasts=(("status", "tumour", "normal"),))
    with pytest.raises(InputError, match="unknown layer"):
        plan(ds, DeTest(method="welch", layer="fpkm", contrasts=(("status", "tumour", "normal"),)))
    checked = plan(ds, DeTest(method="welch", contrasts=(("status", "tumour", "normal"),)))
    assert checked.layer == "cpm"  # no log_expr stored: log2(cpm + 1)
