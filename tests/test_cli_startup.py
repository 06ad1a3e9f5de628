"""Issue 21: the CLI answers at once. ``gexplain --help``, every ``gexplain COMMAND --help``,
``--version`` and ``info`` import neither torch nor Ray (checked in a fresh interpreter; no timings
asserted), and each stage's light params model is the one its stage runs with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.cli.main import COMMANDS
from gexplain.pipelines.stages import PARAMS, REGISTRY, get_params, get_stage
from gexplain.storage.ingest import ingest

PROBE = """
import contextlib, io, json, sys
from gexplain.pipelines.cli.main import main
results = []
for argv in {argvs!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    results.append({{"argv": argv, "code": code, "out": out.getvalue()}})
print(json.dumps({{"torch": "torch" in sys.modules, "ray": "ray" in sys.modules, "results": results}}))
"""


def _probe(argvs: list[list[str]], cwd: Path) -> dict:
    """Run ``gexplain ARGV`` for each of ``argvs`` in one fresh interpreter; report each exit code
    and output, and whether torch or Ray got imported by any of them."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argvs=argvs)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "HOME": str(cwd)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


HELP_ARGV = [
    ["--help"],
    *[[name, "--help"] for name in COMMANDS],
    ["simulate", "cohort", "--help"],
]


def test_help_and_version_import_neither_torch_nor_ray(tmp_path: Path) -> None:
    from gexplain import __version__

    probe = _probe([["--version"], *HELP_ARGV], tmp_path)
    assert not probe["torch"], "help or --version imported torch"
    assert not probe["ray"], "help or --version imported ray"
    version, *helps = probe["results"]
    assert version["code"] == 0 and version["out"].strip() == f"gexplain {__version__}"
    for result in helps:
        shown = " ".join(result["argv"])
        assert result["code"] == 0, shown
        assert "Usage: gexplain" in result["out"], shown
        assert "…" not in result["out"], f"{shown}: an option name or word was cut"
        assert "<bool>" not in result["out"], shown
    for name in COMMANDS:  # the top-level help lists every command
        assert f" {name} " in helps[0]["out"]
    by_command = {" ".join(r["argv"][:-1]): r["out"] for r in helps}
    for panel in ("─ Data ", "─ Method ", "─ Runtime ", "─ Output "):  # help in panels per concern
        assert panel in by_command["train"], panel
    assert "--cluster" in by_command["train"] and "--cluster" not in by_command["ingest"]


def test_info_imports_neither_torch_nor_ray(tmp_path: Path) -> None:
    genes = [f"ENSG{i:011d}" for i in range(5)]
    matrix = pd.DataFrame(
        np.arange(20).reshape(5, 4),
        index=pd.Index(genes, name="gene_id"),
        columns=[f"S{i}" for i in range(4)],
    )
    matrix.to_csv(tmp_path / "counts.csv")
    ingest(tmp_path / "counts.csv", str(tmp_path / "s.zarr"))
    probe = _probe([["info", str(tmp_path / "s.zarr"), "--json"]], tmp_path)
    assert not probe["torch"] and not probe["ray"]
    (result,) = probe["results"]
    assert result["code"] == 0
    assert json.loads(result["out"])["dims"] == {"sample": 4, "gene": 5}


@pytest.mark.parametrize("kind", list(REGISTRY))
def test_the_light_params_model_is_the_one_the_stage_runs_with(kind: str) -> None:
    assert set(PARAMS) == set(REGISTRY)
    assert get_params(kind) is get_stage(kind).params
