"""The ``de`` stage: several DE tests, each with one or more contrasts, in one run.

Config example::

    [[stage]]
    kind = "de"
    [stage.params]
    export = "csv"                    # "csv", "parquet" or "none"
    volcano = true
    calibrate = 20                    # label permutations per contrast: calls under permuted labels
    [[stage.params.tests]]
    method = "deseq2"
    design = "~ cell + dex"
    contrasts = [["dex", "trt", "untrt"]]
    [[stage.params.tests]]
    method = "mannwhitney"
    one_vs_rest = { column = "tissue" }
    preset = "zhao"
    [[stage.params.tests]]
    method = "welch"
    per_group = { by = "tissue", column = "status", test = "tumour", ref = "normal" }

``gexplain de`` is generated from the same models and runs one test (its fields as options,
e.g. ``--method``, ``--contrast COLUMN TEST REF``, ``--one-vs-rest COLUMN``).

Every test is checked against the store before any is computed (deseq2's count checks, which
read the data, run first). Results are written to the
store under ``results/de/<method>/<contrast>``, tables and volcano plots to
``<run folder>/de/<method>/<contrast>.{csv,parquet,png}``, or to ``out`` (one test only). With
``calibrate = N`` every test reruns on N label permutations per contrast
(:mod:`gexplain.pipelines.de.calibration`); the table goes to ``results/calibration/de`` and
``<run folder>/de/calibration.csv`` and into the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from gexplain.pipelines.de.analysis import execute, plan
from gexplain.pipelines.de.calibration import calibrate, write_calibration
from gexplain.pipelines.de.output import (
    begin_results,
    check_table_path,
    export_table,
    finish_results,
    result_group,
    save_result,
)
from gexplain.pipelines.de.params import DeTest, OneVsRest, PerGroup
from gexplain.pipelines.de.registry import get_method, methods
from gexplain.pipelines.de.volcano import volcano_png
from gexplain.pipelines.params import StageParams
from gexplain.pipelines.stages import Stage, StageContext
from gexplain.storage.store import open_store
from pydantic import Field, field_validator, model_validator

__all__ = ["DeParams", "DeTest", "OneVsRest", "PerGroup", "STAGE", "run"]


class DeParams(StageParams):
    """Parameters of the ``de`` stage."""

    tests: list[DeTest] = Field(min_length=1, description="The tests (the CLI runs one).")
    export: Literal["csv", "parquet", "none"] = Field("csv", description="Table format written per contrast.")
    volcano: bool = Field(True, description="Write a volcano PNG beside each table.")
    calibrate: int = Field(
        0, ge=0, le=1000, description="Label permutations per contrast for an FDR check (0 = none)."
    )
    out: str | None = Field(
        None,
        description="Table file (.csv/.parquet) of the one test, relative to the run folder; with several "
        "contrasts <stem>.<contrast><suffix>. Default de/<method>/<contrast>.<export>.",
    )

    @field_validator("out")
    @classmethod
    def _table_suffix(cls, value: str | None) -> str | None:
        if value is not None:
            check_table_path(value)
        return value

    @model_validator(mode="after")
    def _out_needs_one_test(self) -> DeParams:
        if self.out is not None and len(self.tests) > 1:
            raise ValueError("out names the table of one test; with several tests leave it unset")
        return self


def table_paths(out: Path, names: list[str]) -> dict[str, Path]:
    """Output table per contrast: ``out`` itself for one contrast, ``<stem>.<name><suffix>`` for several."""
    if len(names) == 1:
        return {names[0]: out}
    return {name: out.with_name(f"{out.stem}.{name}{out.suffix}") for name in names}


def run(ctx: StageContext, params: DeParams) -> dict[str, Any]:
    """Check every test, then run them; return per-result store groups, files and call counts."""
    ds = open_store(ctx.store_url)
    plans = [plan(ds, test) for test in params.tests]
    # count models first: their count checks (integers, non-negative) need a pass over the data,
    # so a bad count matrix fails the stage before the other methods compute anything
    plans.sort(key=lambda p: not get_method(p.request.method).needs_counts)
    outputs: dict[str, Any] = {}
    permuted = []
    begin_results(ctx.store_url, {p.request.method for p in plans})
    for checked in plans:
        method = checked.request.method
        results = execute(ds, checked, progress=ctx.progress)
        if params.calibrate:
            permuted.append(
                calibrate(ds, checked, results, params.calibrate, ctx.seed, progress=ctx.progress)
            )
        if params.out is not None:
            paths = table_paths(ctx.run_dir / params.out, list(results))
        else:
            folder = ctx.run_dir / "de" / method
            paths = {name: folder / f"{name}.{params.export}" for name in results}
        for name, result in results.items():
            group = result_group(method, name)
            entry: dict[str, Any] = {"store_group": save_result(ctx.store_url, method, name, result)}
            if params.export != "none" or params.out is not None:
                entry["table"] = str(export_table(result, paths[name]))
            if params.volcano:
                entry["volcano"] = str(
                    volcano_png(result, paths[name].with_suffix(".png"), alpha=checked.request.alpha)
                )
            padj = result["padj"].values
            entry["n_genes"] = int(padj.size)
            entry[f"n_padj_below_{checked.request.alpha:g}"] = int((padj < checked.request.alpha).sum())
            if "call" in result:
                entry["n_called"] = int(result["call"].values.sum())
            outputs[group] = entry
        if checked.skipped:
            outputs[f"de/{method}/skipped_groups"] = checked.skipped
    if permuted:
        outputs["de/calibration"] = write_calibration(ctx.store_url, ctx.run_dir / "de", permuted)
    finish_results(ctx.store_url, {p.request.method for p in plans})
    return outputs


STAGE = Stage(
    kind="de",
    params=DeParams,
    run=run,
    description=f"Differential expression ({', '.join(methods())}) per contrast, into the store.",
)
