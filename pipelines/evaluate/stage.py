"""The ``evaluate`` stage: reproducibility, saturation, ground truth, faithfulness and biology tables."""

from __future__ import annotations

from typing import Any

from gexplain.pipelines.evaluate.params import EvaluateParams
from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.saturation_stage import saturation_part
from gexplain.pipelines.evaluate.tables import finish_evaluation, write_table
from gexplain.pipelines.stages import Stage, StageContext


def run(ctx: StageContext, params: EvaluateParams) -> dict[str, Any]:
    """Evaluate the store and write tables; return where they are."""
    csv_dir = ctx.run_dir / (params.out_dir or f"evaluate/{params.name}")
    if "seed" not in params.model_fields_set:
        params = params.model_copy(update={"seed": ctx.seed})
    out = evaluate_store(ctx.store_url, params, csv_dir=csv_dir, progress=ctx.progress, finish=False)
    if params.saturation.enabled:
        with ctx.progress.task("evaluate: saturation pools and curves", total=1) as task:
            saturation = saturation_part(ctx.store_url, params, params.saturation)
            task.advance()
        for table, df in saturation.items():
            out.tables[table] = df
            out.groups.append(write_table(ctx.store_url, params.name, table, df, csv_dir))
    finish_evaluation(ctx.store_url, params.name)
    return {"tables": str(csv_dir), "results": sorted(out.groups), "n_tables": len(out.tables)}


STAGE = Stage(
    kind="evaluate",
    params=EvaluateParams,
    run=run,
    description="Reproducibility, saturation, ground-truth, faithfulness and biology tables.",
)
