"""``gexplain evaluate STORE``: reproducibility, ground-truth, faithfulness and biology tables."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.evaluate.run import EvaluateOptions, evaluate_store
from pipelines.evaluate.saturation_stage import SaturationParams, saturation_part
from pipelines.evaluate.tables import finish_evaluation, write_table


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""

    @app.command("evaluate")
    def evaluate(
        store: str = typer.Argument(..., help="Store path or URL."),
        name: str = typer.Option("default", "--name", help="Evaluation name: results/evaluate/<name>."),
        out_dir: Path = typer.Option(Path("evaluate"), "--out-dir", help="Folder for the CSV tables."),
        label: str = typer.Option("", "--label", help="Label column ('' = the store's label_column)."),
        runs: str = typer.Option("", "--runs", help="Comma list of explain runs ('' = all)."),
        de_methods: str = typer.Option("", "--de-methods", help="Comma list of DE methods ('' = all)."),
        k: int = typer.Option(100, "--k", min=1, help="Top-k size."),
        alpha: float = typer.Option(0.05, "--alpha", help="DE significance level on padj."),
        model_set: str = typer.Option(
            "default", "--model-set", help="Model set for faithfulness / saturation."
        ),
        faithfulness_samples: int = typer.Option(
            64, "--faithfulness-samples", min=1, help="Samples for PGI/PGU."
        ),
        saturation: bool = typer.Option(False, "--saturation", help="Also compute saturation curves."),
        saturation_pool: int = typer.Option(
            16, "--saturation-pool", min=2, help="Items per saturation pool."
        ),
        saturation_samples: int = typer.Option(
            16, "--saturation-samples", min=1, help="Samples of the pools."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of every random draw."),
    ) -> None:
        """Evaluate attributions and DE results; write tables into the store and as CSV."""
        opts = EvaluateOptions(
            name=name,
            label=label,
            explain_runs=_csv_list(runs),
            de_methods=_csv_list(de_methods),
            k=k,
            alpha=alpha,
            model_set=model_set,
            faithfulness_samples=faithfulness_samples,
            seed=seed,
        )
        out = evaluate_store(store, opts, csv_dir=out_dir, finish=False)
        if saturation:
            params = SaturationParams(enabled=True, pool=saturation_pool, samples=saturation_samples)
            for table, df in saturation_part(store, opts, params).items():
                out.tables[table] = df
                out.groups.append(write_table(store, name, table, df, out_dir))
        finish_evaluation(store, name)
        for table in sorted(out.tables):
            typer.echo(f"{table}: {out_dir / (table + '.csv')}")
        if not out.tables:
            typer.echo("nothing to evaluate: the store has no explain or DE results")
