"""Issue 21: an installed gexplain puts one import package on the path, ``gexplain``: the
repository's ``storage/``, ``cluster/`` and ``pipelines/`` install as its subpackages, never as
generic top-level modules that would clash in a shared Jupyter kernel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_has_one_top_level_package(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = tmp_path.glob("gexplain-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"gexplain"}
    for sub in ("storage", "cluster", "pipelines"):
        assert f"gexplain/{sub}/__init__.py" in names
    assert "gexplain/pipelines/configs/quickstart.toml" in names  # the example the messages point at


def test_import_gexplain_is_light() -> None:
    code = "import sys, gexplain; print(sorted(m for m in ('torch', 'ray', 'xarray', 'dask') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
