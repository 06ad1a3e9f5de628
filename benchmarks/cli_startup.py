"""How long does the CLI take to answer? ``gexplain --help``, ``train --help``, ``--version`` and
``info STORE`` against ``python -c "import pandas"`` (issue 21's bound: at most 3x), CPU and wall time
of fresh interpreters, median of ``--repeats`` runs.

    python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_line  # noqa: E402


def _run(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "s.zarr")
        from gexplain.storage.ingest import ingest

        (Path(tmp) / "m.csv").write_text("gene_id,S1,S2\nENSG00000000001,1,2\nENSG00000000002,3,4\n")
        ingest(Path(tmp) / "m.csv", store)
        cases = {
            'python -c "import pandas"': [py, "-c", "import pandas"],
            "gexplain --version": [py, "-m", "gexplain.pipelines.cli", "--version"],
            "gexplain --help": [py, "-m", "gexplain.pipelines.cli", "--help"],
            "gexplain train --help": [py, "-m", "gexplain.pipelines.cli", "train", "--help"],
            "gexplain info STORE": [py, "-m", "gexplain.pipelines.cli", "info", store],
        }
        rows = []
        for name, argv in cases.items():
            runs = [_run(argv) for _ in range(args.repeats)]
            rows.append((name, statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)))
    base = rows[0][2]
    print(machine_line())
    print(
        f"Load average before {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; after {os.getloadavg()[0]:.1f}"
    )
    print(f"| command | wall s (median of {args.repeats}) | CPU s | CPU / import pandas |")
    print("|---|---|---|---|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {cpu / base:.1f}x |")


if __name__ == "__main__":
    main()
