"""Issue 21: the README's ``python`` block runs as-is from an empty folder (the notebook API)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_python_block_runs_in_an_empty_folder(tmp_path: Path) -> None:
    (block,) = _python_blocks()
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_TMPDIR": "/tmp"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert "{'sample': 120, 'gene': 200}" in out
    assert "test_accuracy" in out and "padj" in out
    assert "(120, 200)" in out  # one attribution per sample and gene
    assert "explain/ig" in out and "evaluate/default/ground_truth" in out
    assert (tmp_path / "cohort.zarr").is_dir()
