"""The ``report`` stage: write the HTML report of the run's store into the run folder."""

from __future__ import annotations

from typing import Any

from gexplain.pipelines.report.build import REPORT_STEPS, build_report
from gexplain.pipelines.stages import Stage, StageContext, StageParams
from pydantic import Field


class ReportParams(StageParams):
    """Parameters of the ``report`` stage."""

    out: str = Field("report.html", description="HTML file, relative to the run folder (or absolute).")
    evaluation: str = Field("", description="Evaluation whose tables are shown ('' = all).")
    alpha: float = Field(0.05, gt=0, lt=1, description="DE significance level shown.")
    top_n: int = Field(
        15, ge=1, description="Top genes per class: the consensus table's k and the heatmap's rows per class."
    )
    max_plots: int = Field(6, ge=1, description="Most volcano / comparison plots.")


def run(ctx: StageContext, params: ReportParams) -> dict[str, Any]:
    """Build the report (with the run's config from its manifest, when there is one); return its path."""
    from gexplain.pipelines.runner import read_manifest

    out = ctx.run_dir / params.out
    with ctx.progress.task("report: sections", total=REPORT_STEPS) as task:
        path = build_report(
            ctx.store_url,
            out,
            evaluation=params.evaluation or None,
            alpha=params.alpha,
            top_n=params.top_n,
            max_plots=params.max_plots,
            run_config=read_manifest(ctx.run_dir).get("config"),
            task=task,
        )
    return {"report": str(path), "tables": str(path.with_name(path.stem + "_tables"))}


STAGE = Stage(
    kind="report", params=ReportParams, run=run, description="Self-contained HTML report of the store."
)
