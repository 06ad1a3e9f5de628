"""The ``simulate`` stage in a run config and the ``gexplain simulate`` command."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.config import parse_config
from gexplain.pipelines.progress import SILENT
from gexplain.pipelines.runner import run_config
from gexplain.pipelines.simulate import simulate_cohort
from gexplain.storage.errors import InputError
from gexplain.storage.store import open_store


def _config(tmp_path, params: str):
    path = tmp_path / "sim.toml"
    path.write_text(
        textwrap.dedent(f"""
        [run]
        name = "sim"
        out = "{tmp_path / "run"}"
        store = "store.zarr"
        seed = 4
        [[stage]]
        kind = "simulate"
        params = {{ {params} }}
    """)
    )
    return path


def test_stage_writes_the_run_store_with_the_run_seed(tmp_path, local_runtime):
    cfg = parse_config(_config(tmp_path, 'simulator = "sabbatini", dataset = "A", n_per_group = 30'))
    out = run_config(cfg, progress=SILENT, runtime=local_runtime)
    assert out["ran"] == ["simulate"]
    ds = open_store(cfg.store_url)
    assert ds.sizes == {"sample": 60, "gene": 20}
    assert ds.attrs["simulator"] == {
        "name": "sabbatini",
        "params": {**ds.attrs["simulator"]["params"], "dataset": "A", "seed": 4, "n_per_group": 30},
    }
    again = run_config(cfg, progress=SILENT, runtime=local_runtime)
    assert again["skipped"] == ["simulate"]


def test_options_of_another_simulator_are_rejected_by_name(tmp_path):
    with pytest.raises(InputError, match="n_genes"):
        parse_config(_config(tmp_path, 'simulator = "sabbatini", n_genes = 10'))


def test_cli_simulate_cohort_and_bad_dataset_exit_codes(tmp_path):
    path = str(tmp_path / "cli.zarr")
    argv = ["simulate", "cohort", "--out", path, "--samples", "30", "--genes", "120", "--classes", "2"]
    argv += ["--program-genes", "5", "--xor-pairs", "2", "--circle-pairs", "2", "--seed", "9"]
    assert main(argv) == 0
    direct = simulate_cohort(
        "memory://sim-stage/direct.zarr",
        n_samples=30,
        n_genes=120,
        n_classes=2,
        seed=9,
        n_program_genes=5,
        n_xor_pairs=2,
        n_circle_pairs=2,
    )
    np.testing.assert_array_equal(open_store(path)["counts"].values, open_store(direct)["counts"].values)
    assert main(argv) == 2  # exists, no --overwrite
    assert main(["simulate", "sabbatini", "--out", str(tmp_path / "x.zarr"), "--dataset", "Z"]) == 2
    assert not (tmp_path / "x.zarr").exists()
