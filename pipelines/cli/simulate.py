"""``gexplain simulate {cohort,sabbatini,lda}``: the ``simulate`` stage, one sub-command per simulator.

Options are generated from :class:`gexplain.pipelines.simulate.stage.SimulateParams`: each sub-command has
the options its simulator uses (``--n-samples``, alias ``--samples``, ...).
"""

from __future__ import annotations

from typing import Any

import typer
from gexplain.pipelines.cli.generate import stage_command
from gexplain.pipelines.cli.show import summary
from gexplain.pipelines.simulate.stage import COMMON, USES

HELP = {
    "cohort": "GTEx/TCGA-like negative-binomial counts, TPM and log2(TPM+1) with linear and non-linear genes.",
    "sabbatini": "Sabbatini & Manganaro (2023) two-group datasets A-D.",
    "lda": "LDA-style counts: gene programmes as topics with class-dependent topic mixtures.",
}


def _show(outputs: dict[str, Any]) -> None:
    summary("simulated", [("store", outputs["store"])])


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command group to ``app``."""
    sim = typer.Typer(
        help="Simulate a cohort with known informative genes into a new store.", no_args_is_help=True
    )
    for simulator, uses in USES.items():
        stage_command(
            sim,
            "simulate",
            name=simulator,
            help=HELP[simulator],
            include=(uses | COMMON) - {"simulator"},
            fixed={"simulator": simulator},
            creates_store=True,
            show=_show,
        )
    app.add_typer(sim, name="simulate")
