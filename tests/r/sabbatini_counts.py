"""Write the counts of Sabbatini & Manganaro dataset A (gexplain's simulator, seed 0) for R.

``tests/r/make_references.R`` runs R edgeR and DESeq2 on them (case ``sabbatini_a``); the test
(``tests/test_sabbatini_figures.py``) checks that the simulator still writes these counts.

Usage::

    .venv/bin/python tests/r/sabbatini_counts.py tests/r/references/sabbatini_a
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from gexplain.pipelines.simulate.sabbatini import simulate_sabbatini
from gexplain.storage.store import open_store

SEED = 0
N_PER_GROUP = 1000


def main(out: Path) -> None:
    """Write ``counts.csv.gz`` (samples x genes) and ``coldata.csv`` (``group``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = simulate_sabbatini(f"{tmp}/A.zarr", dataset="A", seed=SEED, n_per_group=N_PER_GROUP)
        ds = open_store(url)
        samples = np.asarray(ds["sample"].values, dtype=str)
        counts = pd.DataFrame(
            np.asarray(ds["counts"].values), index=samples, columns=np.asarray(ds["gene"].values, dtype=str)
        )
        groups = pd.DataFrame({"group": np.asarray(ds["sample_group"].values, dtype=str)}, index=samples)
    counts.to_csv(out / "counts.csv.gz")
    groups.to_csv(out / "coldata.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
