"""The DE method registry: one :class:`DeMethod` entry per method, found in :mod:`gexplain.pipelines.de.methods`.

A method is one module of that package defining ``METHOD = DeMethod(...)``: its name, its own
options (a :class:`~gexplain.pipelines.params.StageParams` model whose fields become fields of
:class:`gexplain.pipelines.de.params.DeTest`, hence config keys and ``gexplain de`` options), its
kernel, its output columns and whether it models raw counts. The params model, the CLI, the
config, :mod:`gexplain.pipelines.de.analysis` (checks and dispatch), the calibration and the stage
derive from the entries; adding a method adds one module to that folder.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import xarray as xr
from gexplain.pipelines.params import StageParams

if TYPE_CHECKING:
    from gexplain.pipelines.de.contrasts import Contrast
    from gexplain.pipelines.de.params import DeTest
    from gexplain.pipelines.progress import Progress

STANDARD_COLUMNS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj")
"""Columns every method writes (pydeseq2's names; NaN where a method has no such value)."""

Kernel = Callable[["xr.Dataset", "DeTest", StageParams, "Contrast", str, "Progress"], xr.Dataset]
"""``kernel(ds, request, options, contrast, layer, progress)``: one contrast's result Dataset."""

Check = Callable[["xr.Dataset", "DeTest", "Contrast"], None]
"""``check(ds, request, contrast)``: raise InputError before any compute (no counts read)."""


class NoOptions(StageParams):
    """A method without options of its own."""


@dataclass(frozen=True)
class DeMethod:
    """One DE method.

    Attributes
    ----------
    name
        ``method = "<name>"`` in the config, ``--method <name>`` on the CLI.
    description
        One line for help texts.
    options
        The method's own options; each field is a field of ``DeTest`` (``None`` there means
        this model's default). Two methods may share a field of the same type.
    kernel
        Computes one contrast (:data:`Kernel`).
    columns
        Per-gene result variables: :data:`STANDARD_COLUMNS` then method-specific ones.
    needs_counts
        Models raw read counts (``layer`` must be unset or ``counts``; the count checks read
        the data, so these methods run first in a stage).
    covariates
        Its design may adjust for covariates (``design = "~ batch + condition"``).
    layers
        Layer preference when ``layer`` is unset and the method does not need counts: the first
        one stored, else the last (derived from counts).
    check
        Extra per-contrast checks before compute, or None.
    """

    name: str
    description: str
    options: type[StageParams]
    kernel: Kernel
    columns: tuple[str, ...] = STANDARD_COLUMNS
    needs_counts: bool = False
    covariates: bool = False
    layers: tuple[str, ...] = ("counts",)
    check: Check | None = None

    def __post_init__(self) -> None:
        if self.columns[: len(STANDARD_COLUMNS)] != STANDARD_COLUMNS:
            raise ValueError(f"DE method {self.name}: columns must start with {STANDARD_COLUMNS}")

    def options_of(self, request: DeTest) -> StageParams:
        """This method's options from a request (fields left ``None`` take the model's defaults)."""
        given = {k: getattr(request, k) for k in self.options.model_fields if getattr(request, k) is not None}
        return self.options.model_validate(given)


@cache
def methods() -> dict[str, DeMethod]:
    """Every registered method by name (modules of :mod:`gexplain.pipelines.de.methods`, sorted)."""
    from gexplain.pipelines.de import methods as package

    found: dict[str, DeMethod] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        entry: Any = getattr(module, "METHOD", None)
        if not isinstance(entry, DeMethod):
            raise TypeError(f"{module.__name__} defines no METHOD = DeMethod(...)")
        if entry.name in found:
            raise ValueError(f"DE method {entry.name!r} is registered twice")
        found[entry.name] = entry
    return found


def get_method(name: str) -> DeMethod:
    """The entry of ``name``; KeyError for an unknown method (requests are validated by ``DeTest``)."""
    return methods()[name]
