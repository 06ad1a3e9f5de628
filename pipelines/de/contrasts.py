"""Contrasts built from sample columns, checked before any compute.

Three kinds:

* :func:`pairwise` — level ``test`` vs level ``ref`` of one column;
* :func:`one_vs_rest` — one level vs all other samples (every level when none is named);
* :func:`per_group` — within each level of a grouping column (e.g. ``tissue``), ``test`` vs
  ``ref`` of another column (e.g. ``status`` tumour vs normal), where both exist.

Columns may be named with or without the ``sample_`` prefix (``dex`` or ``sample_dex``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import xarray as xr
from gexplain.pipelines.labels import UnlabelledPolicy, labelled_samples, resolve_label
from gexplain.storage.errors import InputError

MIN_GROUP = 2
REST = "rest"


@dataclass(frozen=True)
class Contrast:
    """Two groups of samples to compare.

    Attributes
    ----------
    name
        Result name, e.g. ``dex_trt_vs_untrt`` or ``status_tumour_vs_normal_in_tissue_Lung``.
    factor
        Column compared, without the ``sample_`` prefix.
    test, ref
        Level labels (``ref`` is ``"rest"`` for one-vs-rest).
    test_index, ref_index
        Sample positions (dims (n,), int64) of each group.
    within
        ``(column, level)`` restricting the samples, for per-group contrasts.
    """

    name: str
    factor: str
    test: str
    ref: str
    test_index: np.ndarray
    ref_index: np.ndarray
    within: tuple[str, str] | None = None

    @property
    def kind(self) -> str:
        """``"pairwise"``, ``"one_vs_rest"`` or ``"per_group"``."""
        if self.within is not None:
            return "per_group"
        return "one_vs_rest" if self.ref == REST else "pairwise"


def safe_name(text: str) -> str:
    """Return ``text`` with every run of characters other than letters, digits, ``.+-`` as ``-``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(text)).strip("-") or "blank"


def column_name(ds: xr.Dataset, column: str) -> str:
    """Resolve ``column`` (with or without ``sample_``) to a store variable along ``sample``.

    The one label-column rule (:func:`gexplain.pipelines.labels.resolve_label`).

    Raises
    ------
    InputError
        When no such sample column exists (lists those that do).
    """
    return resolve_label(ds, column, option="a contrast column")


def levels(ds: xr.Dataset, column: str, unlabelled: UnlabelledPolicy = "exclude") -> np.ndarray:
    """Per-sample level labels of a column as strings; unlabelled samples become ``""``.

    Which samples are unlabelled, and whether that is an error, is the one label policy
    (:func:`gexplain.pipelines.labels.labelled_samples`).

    Returns
    -------
    numpy.ndarray
        Dims (sample,), object array of str.
    """
    name = column_name(ds, column)
    values = np.asarray(ds[name].values)
    keep = labelled_samples(values, name, unlabelled)
    out = np.empty(values.shape, dtype=object)
    for i, v in enumerate(values):
        out[i] = str(v) if keep[i] else ""
    return out


def _present(labels: np.ndarray) -> list[str]:
    return sorted({str(v) for v in labels if v != ""})


def _check_level(labels: np.ndarray, column: str, level: str) -> None:
    if level not in set(labels):
        raise InputError(
            f"level '{level}' does not exist in column '{column}'; levels present: "
            f"{', '.join(_present(labels))}"
        )


def _check_size(contrast: Contrast, column: str) -> Contrast:
    for label, index in ((contrast.test, contrast.test_index), (contrast.ref, contrast.ref_index)):
        if index.size < MIN_GROUP:
            where = f" within {contrast.within[0]}={contrast.within[1]}" if contrast.within else ""
            raise InputError(
                f"contrast {contrast.name}: group '{label}' of column '{column}'{where} has "
                f"{index.size} sample(s); each group needs at least {MIN_GROUP} (pick other levels or "
                "add samples)"
            )
    return contrast


def pairwise(
    ds: xr.Dataset, column: str, test: str, ref: str, *, unlabelled: UnlabelledPolicy = "exclude"
) -> Contrast:
    """Level ``test`` vs level ``ref`` of ``column``.

    Raises
    ------
    InputError
        Unknown column, missing level (lists those present), equal levels, a group under 2 samples.
    """
    labels = levels(ds, column, unlabelled)
    factor = column_name(ds, column).removeprefix("sample_")
    for level in (test, ref):
        _check_level(labels, factor, level)
    if test == ref:
        raise InputError(
            f"contrast on '{factor}' compares level '{test}' with itself; name two different levels"
        )
    contrast = Contrast(
        name=f"{safe_name(factor)}_{safe_name(test)}_vs_{safe_name(ref)}",
        factor=factor,
        test=test,
        ref=ref,
        test_index=np.flatnonzero(labels == test),
        ref_index=np.flatnonzero(labels == ref),
    )
    return _check_size(contrast, factor)


def one_vs_rest(
    ds: xr.Dataset, column: str, level: str | None = None, *, unlabelled: UnlabelledPolicy = "exclude"
) -> list[Contrast]:
    """One level vs every other sample with a value in ``column`` (every level when ``level`` is None).

    Raises
    ------
    InputError
        Unknown column or level, fewer than two levels, a group under 2 samples.
    """
    labels = levels(ds, column, unlabelled)
    factor = column_name(ds, column).removeprefix("sample_")
    present = _present(labels)
    if len(present) < 2:
        raise InputError(f"column '{factor}' has {len(present)} level(s); one-vs-rest needs at least 2")
    if level is not None:
        _check_level(labels, factor, level)
    out = []
    for lev in [level] if level is not None else present:
        contrast = Contrast(
            name=f"{safe_name(factor)}_{safe_name(lev)}_vs_{REST}",
            factor=factor,
            test=lev,
            ref=REST,
            test_index=np.flatnonzero(labels == lev),
            ref_index=np.flatnonzero((labels != lev) & (labels != "")),
        )
        out.append(_check_size(contrast, factor))
    return out


def per_group(
    ds: xr.Dataset, by: str, column: str, test: str, ref: str, *, unlabelled: UnlabelledPolicy = "exclude"
) -> tuple[list[Contrast], list[str]]:
    """Within each level of ``by``, level ``test`` vs level ``ref`` of ``column``.

    Groups where either level has fewer than 2 samples are skipped.

    Returns
    -------
    contrasts
        One per group with both levels, named ``<column>_<test>_vs_<ref>_in_<by>_<group>``.
    skipped
        The groups left out, with the reason.

    Raises
    ------
    InputError
        Unknown columns or levels, or no group with at least 2 samples of each level.
    """
    groups = levels(ds, by, unlabelled)
    labels = levels(ds, column, unlabelled)
    by_name = column_name(ds, by).removeprefix("sample_")
    factor = column_name(ds, column).removeprefix("sample_")
    for level in (test, ref):
        _check_level(labels, factor, level)
    contrasts: list[Contrast] = []
    skipped: list[str] = []
    for group in _present(groups):
        inside = groups == group
        t_idx = np.flatnonzero(inside & (labels == test))
        r_idx = np.flatnonzero(inside & (labels == ref))
        if min(t_idx.size, r_idx.size) < MIN_GROUP:
            skipped.append(f"{group} ({t_idx.size} {test}, {r_idx.size} {ref})")
            continue
        contrasts.append(
            Contrast(
                name=f"{safe_name(factor)}_{safe_name(test)}_vs_{safe_name(ref)}_in_{safe_name(by_name)}_{safe_name(group)}",
                factor=factor,
                test=test,
                ref=ref,
                test_index=t_idx,
                ref_index=r_idx,
                within=(by_name, group),
            )
        )
    if not contrasts:
        raise InputError(
            f"no level of '{by_name}' has at least {MIN_GROUP} samples each of {factor}='{test}' and "
            f"'{ref}' ({'; '.join(skipped)}); check the level names or the grouping column"
        )
    return contrasts, skipped
