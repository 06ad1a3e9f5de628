"""Machine description and result-file helpers shared by the benchmark scripts."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import sys
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """Return the CPU model name (Linux /proc/cpuinfo, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line naming the machine: CPU, cores, RAM, Python, date."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram = psutil.virtual_memory().total / 2**30
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d")
    return f"Machine: {cpu_model()}, {cores} cores, {ram:.0f} GiB RAM, Python {platform.python_version()}; date {date}."


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB), from getrusage."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_result(name: str, title: str, body: str, *, quick: bool) -> Path:
    """Write benchmarks/results/<name>.md (or <name>.quick.md for smoke runs) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (f"{name}.quick.md" if quick else f"{name}.md")
    cmd = "python " + " ".join(["benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    path.write_text(f"## {title}\n\n{machine_line()}\nCommand: `{cmd}`\n\n{body.strip()}\n")
    return path
