"""gexplain: reproducible gene-level explanations of expression cohorts at scale.

The notebook API: one function per stage, each taking a store path or URL and the stage's
parameters as keywords (the same names, defaults and checks as the CLI options and the run
config's keys), running the stage on the embedded local runtime (or ``cluster=``) with progress,
and returning what comes next: an :class:`xarray.Dataset`, a :class:`pandas.DataFrame` or a path.

>>> import gexplain
>>> ds = gexplain.simulate("cohort.zarr", n_samples=400, n_genes=300, n_classes=3)  # doctest: +SKIP
>>> gexplain.normalize("cohort.zarr")                                                # doctest: +SKIP
>>> table = gexplain.de("cohort.zarr", method="mannwhitney", one_vs_rest={"column": "tissue"})  # doctest: +SKIP
>>> gexplain.open("cohort.zarr").results()                                           # doctest: +SKIP

Stages: :func:`simulate`, :func:`ingest`, :func:`normalize`, :func:`de`, :func:`train`,
:func:`explain`, :func:`evaluate`, :func:`report`, :func:`export`, :func:`run` (a config);
reading back: :func:`open`. Each is imported on first use, so ``import gexplain`` loads neither
torch nor Ray (nor xarray).

Installed, the repository's folders are subpackages of this one: ``gexplain.storage`` (where data
lives), ``gexplain.cluster`` (where it runs) and ``gexplain.pipelines`` (what is computed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    **{
        name: "gexplain.api"
        for name in (
            "simulate",
            "ingest",
            "normalize",
            "de",
            "train",
            "explain",
            "evaluate",
            "report",
            "export",
            "run",
        )
    },
    "open": "gexplain.results",
    "Store": "gexplain.results",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gexplain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
