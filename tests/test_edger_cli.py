"""``gexplain de --method edger --test ql|lrt``: the option reaches the kernel (tables equal R
edgeR 3.40.2's glmQLFTest / glmLRT FDR on the ``unbalanced`` reference case), and bad values exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.de.edger.driver import run_edger
from gexplain.storage.errors import InputError
from gexplain.storage.store import create_store
from test_deseq2_r_parity import REFS, dataset, load

CASE = REFS / "unbalanced"
R_TABLE = {"ql": "edger_results_group_case_ctrl.csv.gz", "lrt": "edger_lrt_results_group_case_ctrl.csv.gz"}

pytestmark = pytest.mark.skipif(
    not (CASE / R_TABLE["lrt"]).is_file(), reason="R edgeR references absent (make r-references)"
)


def _store(tmp_path: Path) -> str:
    counts, coldata = load("unbalanced")
    writer = create_store(
        str(tmp_path / "unbalanced.zarr"),
        sample_ids=counts.index.to_numpy(),
        gene_ids=counts.columns.to_numpy(),
        coords={"sample_group": ("sample", coldata["group"].to_numpy())},
        layers={"counts": "int64"},
        chunks={"sample": 8, "gene": 256},
    )
    writer.write_block({}, {"counts": counts.to_numpy()})
    return writer.commit()


def test_cli_test_option_selects_ql_or_lrt(tmp_path: Path) -> None:
    url = _store(tmp_path)
    base = ["de", url, "--method", "edger", "--contrast", "group", "case", "ctrl", "--no-volcano"]
    for test in ("ql", "lrt"):
        out = tmp_path / f"{test}.csv"
        assert main([*base, "--test", test, "--run-dir", str(tmp_path), "--out", str(out)]) == 0
        table = pd.read_csv(out, index_col=0)
        r = pd.read_csv(CASE / R_TABLE[test], index_col=0)
        assert list(table.index) == list(r.index)
        np.testing.assert_allclose(table["padj"], r["FDR"], rtol=1e-6, err_msg=test)
    assert main([*base, "--test", "wald", "--run-dir", str(tmp_path)]) == 2  # not an edger test
    deseq2 = ["de", url, "--method", "deseq2", "--contrast", "group", "case", "ctrl"]
    assert main([*deseq2, "--test", "lrt", "--run-dir", str(tmp_path)]) == 2  # an option of edger only


def test_unknown_test_is_an_input_error() -> None:
    counts, coldata = load("unbalanced")
    with pytest.raises(InputError, match="test='wald' is not an edger test; use 'ql'.*or 'lrt'"):
        run_edger(dataset(counts, coldata), "~ group", [("group", "case", "ctrl")], test="wald")
