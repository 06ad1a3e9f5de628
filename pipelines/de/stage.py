"""The ``de`` stage: several DE tests, each with one or more contrasts, in one run.

Config example::

    [[stage]]
    kind = "de"
    [stage.params]
    export = "csv"                    # "csv", "parquet" or "none"
    volcano = true
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

Every test is checked against the store before any is computed (deseq2's count checks, which
read the data, run first). Results are written to the
store under ``results/de/<method>/<contrast>``, tables and volcano plots to
``<run folder>/de/<method>/<contrast>.{csv,parquet,png}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipelines.de.analysis import DeRequest, execute, plan
from pipelines.de.output import begin_results, export_table, finish_results, result_group, save_result
from pipelines.de.volcano import volcano_png
from pipelines.stages import Stage, StageContext, StageParams
from storage.store import open_store


class OneVsRest(StageParams):
    """One level of ``column`` vs all other samples (every level when ``level`` is unset)."""

    column: str
    level: str | None = None


class PerGroup(StageParams):
    """Within each level of ``by``, ``test`` vs ``ref`` of ``column`` where both exist."""

    by: str
    column: str
    test: str
    ref: str


class DeTest(StageParams):
    """One DE method with its design and contrasts."""

    method: Literal["deseq2", "mannwhitney", "welch"]
    design: str | None = Field(None, description="deseq2 formula, e.g. '~ cell + dex'.")
    contrasts: list[tuple[str, str, str]] = Field(
        default_factory=list, description="[column, test_level, ref_level] pairs."
    )
    one_vs_rest: OneVsRest | None = None
    per_group: PerGroup | None = None
    layer: str | None = Field(None, description="Layer for mannwhitney/welch (default cpm / log_expr).")
    preset: str | None = Field(None, description="Significance call rule, e.g. 'zhao'.")
    alpha: float = 0.05
    size_factors: Literal["ratio", "poscounts"] = "ratio"
    gene_block: int = Field(2048, ge=1)

    def request(self) -> DeRequest:
        """The equivalent :class:`pipelines.de.analysis.DeRequest`."""
        return DeRequest(
            method=self.method,
            design=self.design,
            contrasts=tuple(tuple(c) for c in self.contrasts),  # type: ignore[misc]
            one_vs_rest=(self.one_vs_rest.column, self.one_vs_rest.level) if self.one_vs_rest else None,
            per_group=(
                (self.per_group.by, self.per_group.column, self.per_group.test, self.per_group.ref)
                if self.per_group
                else None
            ),
            layer=self.layer,
            preset=self.preset,
            alpha=self.alpha,
            size_factors=self.size_factors,
            gene_block=self.gene_block,
        )


class DeParams(StageParams):
    """Parameters of the ``de`` stage."""

    tests: list[DeTest] = Field(min_length=1)
    export: Literal["csv", "parquet", "none"] = "csv"
    volcano: bool = True


def run(ctx: StageContext, params: DeParams) -> dict[str, Any]:
    """Check every test, then run them; return per-result store groups, files and call counts."""
    ds = open_store(ctx.store_url)
    plans = [plan(ds, test.request()) for test in params.tests]
    # deseq2 first: its count checks (integers, non-negative) need a pass over the data, so a bad
    # count matrix fails the stage before the other methods compute anything
    plans.sort(key=lambda p: p.request.method != "deseq2")
    outputs: dict[str, Any] = {}
    begin_results(ctx.store_url, {p.request.method for p in plans})
    for checked in plans:
        method = checked.request.method
        for name, result in execute(ds, checked, progress=ctx.progress).items():
            group = result_group(method, name)
            entry: dict[str, Any] = {"store_group": save_result(ctx.store_url, method, name, result)}
            folder = ctx.run_dir / "de" / method
            if params.export != "none":
                entry["table"] = str(export_table(result, folder / f"{name}.{params.export}"))
            if params.volcano:
                entry["volcano"] = str(
                    volcano_png(result, folder / f"{name}.png", alpha=checked.request.alpha)
                )
            padj = result["padj"].values
            entry["n_genes"] = int(padj.size)
            entry[f"n_padj_below_{checked.request.alpha:g}"] = int((padj < checked.request.alpha).sum())
            if "call" in result:
                entry["n_called"] = int(result["call"].values.sum())
            outputs[group] = entry
        if checked.skipped:
            outputs[f"de/{method}/skipped_groups"] = checked.skipped
    finish_results(ctx.store_url, {p.request.method for p in plans})
    return outputs


STAGE = Stage(
    kind="de",
    params=DeParams,
    run=run,
    description="Differential expression (deseq2, mannwhitney, welch) per contrast, into the store.",
)
