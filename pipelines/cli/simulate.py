"""``gexplain simulate {cohort,sabbatini,lda}``: write a simulated store with its ground truth."""

from __future__ import annotations

import typer

from pipelines.progress import Progress
from pipelines.simulate.cohort import simulate_cohort
from pipelines.simulate.lda import simulate_lda
from pipelines.simulate.sabbatini import simulate_sabbatini

OUT = typer.Option(..., "--out", help="Store to create: a path or a URL (memory://, s3://, gs://).")
SEED = typer.Option(0, "--seed", help="Seed of every draw (same seed, same store).")
CHUNK_SAMPLES = typer.Option(
    None, "--chunk-samples", help="Stored chunk length along samples (default 2048)."
)
CHUNK_GENES = typer.Option(None, "--chunk-genes", help="Stored chunk length along genes (default 2048).")
OVERWRITE = typer.Option(
    False, "--overwrite", help="Replace an existing store (only once the new one is complete)."
)


def _chunks(samples: int | None, genes: int | None) -> dict[str, int] | None:
    chunks = {k: v for k, v in (("sample", samples), ("gene", genes)) if v is not None}
    return chunks or None


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command group to ``app``."""
    sim = typer.Typer(
        help="Simulate a cohort with known informative genes into a new store.", no_args_is_help=True
    )

    @sim.command("cohort")
    def cohort(
        out: str = OUT,
        samples: int = typer.Option(2000, "--samples", help="Number of samples."),
        genes: int = typer.Option(2000, "--genes", help="Number of genes."),
        classes: int = typer.Option(4, "--classes", help="Number of tissue classes."),
        program_genes: int = typer.Option(40, "--program-genes", help="Genes up in each class (linear)."),
        xor_pairs: int = typer.Option(4, "--xor-pairs", help="XOR gene pairs per class (non-linear)."),
        circle_pairs: int = typer.Option(
            4, "--circle-pairs", help="Ring/cross gene pairs per class (non-linear)."
        ),
        seed: int = SEED,
        chunk_samples: int | None = CHUNK_SAMPLES,
        chunk_genes: int | None = CHUNK_GENES,
        overwrite: bool = OVERWRITE,
    ) -> None:
        """GTEx/TCGA-like negative-binomial counts, TPM and log2(TPM+1) with linear and non-linear genes."""
        progress = Progress()
        url = simulate_cohort(
            out,
            n_samples=samples,
            n_genes=genes,
            n_classes=classes,
            seed=seed,
            chunks=_chunks(chunk_samples, chunk_genes),
            progress=progress,
            n_program_genes=program_genes,
            n_xor_pairs=xor_pairs,
            n_circle_pairs=circle_pairs,
            overwrite=overwrite,
        )
        progress.close()
        typer.echo(f"store: {url}")

    @sim.command("sabbatini")
    def sabbatini(
        out: str = OUT,
        dataset: str = typer.Option(
            "B", "--dataset", help="A (clouds), B (circles), C (circles big), D (NB counts)."
        ),
        n_per_group: int = typer.Option(1000, "--n-per-group", help="Samples per group (paper: 1000)."),
        seed: int = SEED,
        chunk_samples: int | None = CHUNK_SAMPLES,
        chunk_genes: int | None = CHUNK_GENES,
        overwrite: bool = OVERWRITE,
    ) -> None:
        """Sabbatini & Manganaro (2023) two-group datasets A-D."""
        progress = Progress()
        url = simulate_sabbatini(
            out,
            dataset=dataset.upper(),
            seed=seed,
            n_per_group=n_per_group,
            chunks=_chunks(chunk_samples, chunk_genes),
            progress=progress,
            overwrite=overwrite,
        )
        progress.close()
        typer.echo(f"store: {url}")

    @sim.command("lda")
    def lda(
        out: str = OUT,
        samples: int = typer.Option(2000, "--samples", help="Number of samples."),
        genes: int = typer.Option(2000, "--genes", help="Number of genes."),
        classes: int = typer.Option(4, "--classes", help="Number of classes."),
        programs: int = typer.Option(8, "--programs", help="Topics: one per class plus shared ones."),
        count_model: str = typer.Option("multinomial", "--count-model", help="'multinomial' or 'nb'."),
        seed: int = SEED,
        chunk_samples: int | None = CHUNK_SAMPLES,
        chunk_genes: int | None = CHUNK_GENES,
        overwrite: bool = OVERWRITE,
    ) -> None:
        """LDA-style counts: gene programmes as topics with class-dependent topic mixtures."""
        progress = Progress()
        url = simulate_lda(
            out,
            n_samples=samples,
            n_genes=genes,
            n_classes=classes,
            n_programs=programs,
            seed=seed,
            chunks=_chunks(chunk_samples, chunk_genes),
            progress=progress,
            count_model=count_model,  # type: ignore[arg-type]  # validated inside
            overwrite=overwrite,
        )
        progress.close()
        typer.echo(f"store: {url}")

    app.add_typer(sim, name="simulate")
