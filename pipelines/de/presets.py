"""Significance call rules applied to DE results.

``zhao``: FDR (``padj``) <= 0.001 and fold change >= 3 in either direction
(``|log2FoldChange| >= log2(3)``), the rule used with the Wilcoxon rank-sum test on large
population cohorts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from gexplain.storage.errors import InputError


@dataclass(frozen=True)
class CallRule:
    """A significance call: ``padj <= max_padj`` and ``|log2FoldChange| >= log2(min_fold_change)``.

    Attributes
    ----------
    name
        Preset name.
    max_padj
        Largest adjusted p-value (FDR) called significant.
    min_fold_change
        Smallest fold change (linear, >= 1) called significant, up or down.
    """

    name: str
    max_padj: float
    min_fold_change: float

    def calls(self, result: xr.Dataset) -> np.ndarray:
        """Return the per-gene calls (dims (gene,), bool) of a DE result."""
        padj = result["padj"].values
        lfc = result["log2FoldChange"].values
        with np.errstate(invalid="ignore"):
            return (padj <= self.max_padj) & (np.abs(lfc) >= np.log2(self.min_fold_change))


PRESETS: dict[str, CallRule] = {"zhao": CallRule("zhao", max_padj=0.001, min_fold_change=3.0)}


def get_preset(name: str) -> CallRule:
    """Return the named preset; InputError lists the known ones."""
    if name not in PRESETS:
        raise InputError(f"unknown preset '{name}' (option --preset); known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def with_calls(result: xr.Dataset, rule: CallRule) -> xr.Dataset:
    """Return ``result`` with a boolean ``call`` variable (gene,) and the rule in attrs."""
    out = result.assign(call=("gene", rule.calls(result)))
    out.attrs.update(
        preset=rule.name, preset_max_padj=rule.max_padj, preset_min_fold_change=rule.min_fold_change
    )
    return out
