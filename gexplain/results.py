"""Reading a store and its results back: ``gexplain.open(store)``.

>>> cohort = gexplain.open("cohort.zarr")          # doctest: +SKIP
>>> cohort.data                                     # the store as an xarray Dataset
>>> cohort.results()                                # ['de/mannwhitney/...', 'explain/ig', ...]
>>> cohort.de("mannwhitney")                        # DataFrame(s), pydeseq2 columns
>>> cohort.explain("ig")                            # Dataset: attr_<explainer> (sample x gene)
>>> cohort.evaluation("default")                    # dict of DataFrames
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd
import xarray as xr

from gexplain.pipelines.params import check_store_url
from gexplain.storage.checkpoints import model_set_states
from gexplain.storage.errors import InputError
from gexplain.storage.store import list_results, open_store, read_result


class Store:
    """A gexplain store and its results, read lazily.

    Parameters
    ----------
    url
        Store path or URL.
    """

    def __init__(self, url: str | Path) -> None:
        self.url = check_store_url(str(url), "store")
        self.data  # noqa: B018  (fails at once, naming the store, when there is none)

    def __repr__(self) -> str:
        sizes = dict(self.data.sizes)
        return f"<gexplain.Store {self.url}: {sizes.get('sample')} samples x {sizes.get('gene')} genes, {len(self.results())} results>"

    @cached_property
    def data(self) -> xr.Dataset:
        """The store: layers (sample x gene), ``sample_*`` and ``gene_*`` variables, lazily."""
        return open_store(self.url)

    def results(self, prefix: str = "") -> list[str]:
        """Names of the complete results (``de/<method>/<contrast>``, ``explain/<name>``, ...)."""
        return list_results(self.url, prefix)

    def models(self) -> pd.DataFrame:
        """The model sets: one row per set (index ``name``) with its state and replicates."""
        rows = model_set_states(self.url)
        return pd.DataFrame(rows).set_index("name") if rows else pd.DataFrame(columns=["state"])

    def result(self, name: str) -> xr.Dataset:
        """One result by name (as listed by :meth:`results`), lazily."""
        return read_result(self.url, name)

    def de(self, method: str, contrast: str | None = None) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """DE tables of ``method`` (one row per gene, pydeseq2 columns): the one of ``contrast``,
        or all of them by contrast name when it is not given."""
        names = self.results(f"de/{method}")
        if not names:
            raise InputError(f"no DE results of method '{method}' in {self.url} (results: {self.results()})")
        tables = {n.split("/", 2)[2]: self.result(n).to_dataframe() for n in names if n.count("/") >= 2}
        if contrast is None:
            return tables
        if contrast not in tables:
            raise InputError(f"no DE result '{contrast}' of {method} in {self.url}; have {sorted(tables)}")
        return tables[contrast]

    def explain(self, name: str) -> xr.Dataset:
        """The attributions ``results/explain/<name>``: ``attr_<explainer>`` (sample x gene), lazily."""
        return self.result(f"explain/{name}")

    def evaluation(self, name: str = "default") -> dict[str, pd.DataFrame]:
        """The tables of evaluation ``name`` (``results/evaluate/<name>/<table>``) as DataFrames."""
        from gexplain.pipelines.evaluate.tables import read_tables

        if not self.results(f"evaluate/{name}"):
            raise InputError(f"no evaluation '{name}' in {self.url} (results: {self.results()})")
        return {key.split("/", 1)[1]: table for key, table in read_tables(self.url, name).items()}


def open(store: str | Path) -> Store:  # noqa: A001  (gexplain.open, as xarray.open_dataset)
    """Open a store and its results for reading: see :class:`Store`.

    Parameters
    ----------
    store
        Store path or URL.

    Raises
    ------
    InputError
        When there is no complete store there.
    """
    return Store(store)


__all__: list[str] = ["Store", "open"]
