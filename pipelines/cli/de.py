"""``gexplain de STORE``: the ``de`` stage with one test (options from its params model).

Examples::

    gexplain de cohort.zarr --method deseq2 --design "~ cell + dex" --contrast dex trt untrt --out res.csv
    gexplain de cohort.zarr --method mannwhitney --one-vs-rest tissue --preset zhao --out res.parquet
    gexplain de cohort.zarr --method welch --per-group tissue status tumour normal --out res.csv

Results are always kept in the store (``results/de/<method>/<contrast>``). Tables and volcano
plots go to ``--out`` (one contrast: that file; several: ``<stem>.<contrast><suffix>`` beside it),
or by default to ``<run-dir>/de/<method>/<contrast>.csv``.
"""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command
from gexplain.pipelines.cli.show import console, summary
from gexplain.pipelines.de.registry import methods
from rich.table import Table


def _show(outputs: dict[str, Any]) -> None:
    table = Table("result", "genes", "padj below alpha", "table")
    for group, entry in outputs.items():
        if not isinstance(entry, dict):
            summary("skipped groups (fewer than 2 samples per level)", [("groups", entry)])
            continue
        if "n_genes" not in entry:  # the calibration table (calibrate = N), not a result
            summary("calibration under permuted labels", [("table", entry.get("table", entry))])
            continue
        below = next((v for k, v in entry.items() if k.startswith("n_padj_below_")), "")
        table.add_row(group, str(entry["n_genes"]), str(below), entry.get("table", ""))
    console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``de`` command to ``app``."""
    stage_command(
        app,
        "de",
        help=f"Differential expression ({', '.join(methods())}) per contrast, into the store.",
        show=_show,
    )
