"""What evaluation reads from a store: labels, attribution runs, DE results, gene alignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from gexplain.pipelines.labels import resolve_label
from gexplain.storage.errors import InputError
from gexplain.storage.schema import GENE, SAMPLE
from gexplain.storage.store import list_results, read_result

ATTR = "attr_"


def label_column(ds: xr.Dataset, label: str = "") -> str:
    """The store's label column: ``label`` if given, else ``attrs['label_column']``, else tissue.

    Raises
    ------
    InputError
        When the column does not exist (lists the ones that do).
    """
    return resolve_label(ds, label)


def explainers_of(result: xr.Dataset) -> list[str]:
    """Explainer names of an attribution result: its (sample, gene) means ``attr_<explainer>``
    (not their ``_std``, ``_count`` or per-model ``_model`` companions)."""
    return sorted(
        str(v)[len(ATTR) :]
        for v in result.data_vars
        if str(v).startswith(ATTR)
        and result[v].dims == (SAMPLE, GENE)
        and not str(v).endswith(("_std", "_count", "_model"))
    )


@dataclass(frozen=True)
class AttributionSource:
    """One explainer of one attribution run.

    Attributes
    ----------
    run
        Run name (``results/explain/<run>``).
    explainer
        Explainer name (variable ``attr_<explainer>``).
    """

    run: str
    explainer: str

    @property
    def name(self) -> str:
        """``"<run>:<explainer>"``, the name used in tables."""
        return f"{self.run}:{self.explainer}"


def explain_runs(store_url: str, runs: list[str] | None = None) -> dict[str, xr.Dataset]:
    """Open the attribution runs to evaluate (all stored ones by default).

    Raises
    ------
    InputError
        When a named run does not exist (lists those that do).
    """
    stored = [g[len("explain/") :] for g in list_results(store_url, "explain")]
    if runs:
        missing = [r for r in runs if r not in stored]
        if missing:
            raise InputError(
                f"explain run(s) {', '.join(missing)} not in {store_url}; option explain_runs must name "
                f"stored runs: {', '.join(stored) or 'none (run `gexplain explain` first)'}"
            )
        stored = list(runs)
    return {r: read_result(store_url, f"explain/{r}") for r in stored}


def attribution_sources(results: dict[str, xr.Dataset]) -> list[AttributionSource]:
    """Every (run, explainer) pair of the opened runs."""
    return [AttributionSource(run, e) for run, res in results.items() for e in explainers_of(res)]


def de_results(store_url: str, methods: list[str] | None = None) -> dict[str, xr.Dataset]:
    """Open the DE results (``de/<method>/<contrast>``), optionally only some methods."""
    groups = list_results(store_url, "de")
    if methods:
        groups = [g for g in groups if g.split("/")[1] in methods]
    return {g: read_result(store_url, g) for g in groups}


def de_test_level(de: xr.Dataset) -> str | None:
    """The tested class of a DE contrast (``attrs['contrast'] = [factor, test, ref]``), or None."""
    contrast = de.attrs.get("contrast")
    if isinstance(contrast, list | tuple) and len(contrast) == 3:
        return str(contrast[1])
    return None


def positions(index: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Positions of ``wanted`` ids in ``index``.

    Raises
    ------
    InputError
        When some id is absent (names a few).
    """
    lookup = {str(v): i for i, v in enumerate(np.asarray(index).astype(str))}
    pos = np.array([lookup.get(str(v), -1) for v in np.asarray(wanted)], dtype=np.int64)
    if (pos < 0).any():
        bad = np.asarray(wanted)[pos < 0][:5]
        raise InputError(
            f"{(pos < 0).sum()} {what} ids are not in the store, e.g. {list(bad)}; re-run that stage"
        )
    return pos


def labels_for(ds: xr.Dataset, label: str, samples: np.ndarray) -> np.ndarray:
    """Label (str) of each of ``samples`` from the store's label column."""
    values = np.asarray(ds[label].values).astype(str)
    return values[positions(ds[SAMPLE].values, samples, "sample")]


def gene_values(ds: xr.Dataset, name: str, genes: np.ndarray) -> np.ndarray:
    """A per-gene store variable for ``genes`` (in that order)."""
    return np.asarray(ds[name].values)[positions(ds[GENE].values, genes, "gene")]
