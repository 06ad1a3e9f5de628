"""Run every benchmark (one script per question) and assemble BENCHMARKS.md.

Usage::

    python benchmarks/run_all.py            # full sizes (long: see each script)
    python benchmarks/run_all.py --quick    # tiny sizes, a smoke run
    python benchmarks/run_all.py --only de train
    python benchmarks/run_all.py --assemble # only rebuild BENCHMARKS.md from benchmarks/results/*.md

Each script writes ``benchmarks/results/<name>.md`` (a section with machine and date);
this runner concatenates them in a fixed order into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = (
    "ingest",
    "chunking",
    "checksums",
    "memory_bounds",
    "de",
    "de_big",
    "de_mannwhitney",
    "train",
    "explain",
    "explain_e2e",
)


def assemble() -> Path:
    """Concatenate benchmarks/results/*.md into BENCHMARKS.md and return its path."""
    parts = [
        "# Benchmarks",
        "",
        "Each section comes from one script in `benchmarks/` (run all with `make bench`, or",
        "`python benchmarks/<name>.py`); each states its machine, date and command. Timings are",
        "never asserted in tests.",
        "",
    ]
    results = HERE / "results"
    names = [n for n in ORDER if (results / f"{n}.md").exists()]
    names += sorted(
        p.stem for p in results.glob("*.md") if p.stem not in ORDER and not p.stem.endswith(".quick")
    )
    for name in names:
        parts.append((results / f"{name}.md").read_text().strip())
        parts.append("")
    out = HERE.parent / "BENCHMARKS.md"
    out.write_text("\n".join(parts) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    parser.add_argument("--assemble", action="store_true", help="only rebuild BENCHMARKS.md")
    args = parser.parse_args()
    failed = []
    if not args.assemble:
        for name in args.only or ORDER:
            script = HERE / f"{name}.py"
            if not script.exists():
                print(f"skip {name}: no script", file=sys.stderr)
                continue
            cmd = [sys.executable, str(script), *(["--quick"] if args.quick else [])]
            print("$", " ".join(cmd), flush=True)
            if subprocess.run(cmd, check=False).returncode != 0:
                failed.append(name)
    print(f"wrote {assemble()}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
