"""Design formulas (``~ cell + dex``) to design matrices and contrast vectors.

Categorical terms use treatment coding with the alphabetically first level as the reference
(as formulaic and R do); numeric terms enter as they are. Column names follow formulaic:
``Intercept``, ``<factor>[T.<level>]``, ``<covariate>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import xarray as xr
from gexplain.storage.errors import InputError

_TERM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class Design:
    """A parsed design.

    Attributes
    ----------
    formula
        The formula as given.
    matrix
        Design matrix, dims (sample, coefficient), float64.
    columns
        Coefficient names, dims (coefficient,).
    factors
        Categorical factor -> its levels (sorted; the first is the reference).
    labels
        Categorical factor -> per-sample level, dims (sample,).
    """

    formula: str
    matrix: np.ndarray
    columns: tuple[str, ...]
    factors: dict[str, tuple[str, ...]]
    labels: dict[str, np.ndarray]

    def contrast_vector(self, contrast: tuple[str, ...]) -> np.ndarray:
        """Coefficient weights of ``(factor, test, ref)`` (test vs ref) or ``(covariate,)`` (its slope).

        Returns
        -------
        numpy.ndarray
            Dims (coefficient,), float64, entries in {-1, 0, 1}.
        """
        vec = np.zeros(len(self.columns))
        if len(contrast) == 1:
            vec[self.columns.index(contrast[0])] = 1.0
            return vec
        factor, test, ref = contrast
        levels = self.factors[factor]
        if test != levels[0]:
            vec[self.columns.index(f"{factor}[T.{test}]")] += 1.0
        if ref != levels[0]:
            vec[self.columns.index(f"{factor}[T.{ref}]")] -= 1.0
        return vec


def parse_terms(formula: str) -> list[str]:
    """Split ``"~ a + b"`` into its terms ``["a", "b"]``.

    Raises
    ------
    InputError
        When the formula is not of the form ``~ term + term`` with plain column names.
    """
    text = formula.strip()
    if not text.startswith("~"):
        raise InputError(f"design '{formula}' must start with '~', e.g. '~ cell + dex'")
    terms = [t.strip() for t in text[1:].split("+")]
    if not terms or any(not _TERM.match(t) for t in terms):
        raise InputError(
            f"design '{formula}': terms must be sample column names joined by '+', e.g. '~ cell + dex' "
            "(interactions and functions are not supported)"
        )
    if len(set(terms)) != len(terms):
        raise InputError(f"design '{formula}' repeats a term; list each column once")
    return terms


def _sample_columns(ds: xr.Dataset) -> list[str]:
    return sorted(str(name)[len("sample_") :] for name in ds.data_vars if str(name).startswith("sample_"))


def _collinear_message(matrix: np.ndarray, columns: list[str]) -> str:
    """Name the columns in a linear dependency of ``matrix`` (from its null space)."""
    vt = np.linalg.svd(matrix, full_matrices=False)[2]
    null = vt[-1]
    involved = [columns[i] for i in np.flatnonzero(np.abs(null) > 1e-8 * np.abs(null).max())]
    return ", ".join(involved)


def build_design(ds: xr.Dataset, formula: str) -> Design:
    """Build the design matrix of ``formula`` from the ``sample_<term>`` variables of ``ds``.

    Parameters
    ----------
    ds
        Store dataset with ``sample_<term>`` variables, dims (sample,).
    formula
        ``"~ term + term"``; string/bool columns are categorical, numeric columns continuous.

    Returns
    -------
    Design

    Raises
    ------
    InputError
        Unknown column (lists the ``sample_*`` columns), missing values, a constant factor, or a
        design that is not full rank (names the collinear columns).
    """
    terms = parse_terms(formula)
    available = _sample_columns(ds)
    n = ds.sizes["sample"]
    cols: list[np.ndarray] = [np.ones(n)]
    names = ["Intercept"]
    factors: dict[str, tuple[str, ...]] = {}
    labels: dict[str, np.ndarray] = {}
    for term in terms:
        if term not in available:
            raise InputError(
                f"design '{formula}': no sample column '{term}' (variable 'sample_{term}'); "
                f"available sample columns: {', '.join(available) or 'none'}"
            )
        values = np.asarray(ds[f"sample_{term}"].values)
        if values.dtype.kind in "fiu":
            numeric = values.astype(np.float64)
            if not np.isfinite(numeric).all():
                raise InputError(f"sample column '{term}' has missing values; fill or drop those samples")
            cols.append(numeric)
            names.append(term)
            continue
        strings = values.astype(str)
        if (values == None).any() or np.isin(strings, ["", "nan", "None"]).any():  # noqa: E711
            raise InputError(f"sample column '{term}' has missing values; fill or drop those samples")
        levels = tuple(sorted(set(strings.tolist())))
        if len(levels) < 2:
            raise InputError(
                f"design '{formula}': sample column '{term}' has a single level '{levels[0]}'; "
                "drop it from the design"
            )
        factors[term] = levels
        labels[term] = strings
        for level in levels[1:]:
            cols.append((strings == level).astype(np.float64))
            names.append(f"{term}[T.{level}]")
    matrix = np.column_stack(cols)
    if np.linalg.matrix_rank(matrix) < matrix.shape[1]:
        raise InputError(
            f"design '{formula}' is not full rank: columns {_collinear_message(matrix, names)} are "
            "linearly dependent; drop one of the confounded terms from the design"
        )
    if n <= matrix.shape[1]:
        raise InputError(
            f"design '{formula}' has {matrix.shape[1]} coefficients but only {n} samples; "
            "dispersions need replicates: use a smaller design or more samples"
        )
    return Design(formula, matrix, tuple(names), factors, labels)


def check_contrast(design: Design, contrast: tuple[str, ...]) -> None:
    """Validate ``[factor, test, ref]`` (or ``[covariate]`` for a continuous term) against ``design``.

    Raises
    ------
    InputError
        When the factor is not a categorical design term, a level does not exist (lists the
        levels that do), test equals ref, or either group has fewer than 2 samples.
    """
    continuous = [c for c in design.columns[1:] if c not in design.factors and "[T." not in c]
    if len(contrast) == 1 and str(contrast[0]) in continuous:
        return
    if len(contrast) != 3:
        raise InputError(
            f"contrast {list(contrast)} must be [factor, test_level, ref_level] "
            f"(or [covariate] for one of the continuous terms: {', '.join(continuous) or 'none'})"
        )
    factor, test, ref = (str(c) for c in contrast)
    if factor not in design.factors:
        raise InputError(
            f"contrast {list(contrast)}: '{factor}' is not a categorical term of design "
            f"'{design.formula}'; categorical terms: {', '.join(design.factors) or 'none'}; "
            f"continuous terms (contrast [covariate]): {', '.join(continuous) or 'none'}"
        )
    levels = design.factors[factor]
    for level in (test, ref):
        if level not in levels:
            raise InputError(
                f"contrast {list(contrast)}: level '{level}' does not exist in sample column '{factor}'; "
                f"levels: {', '.join(levels)}"
            )
    if test == ref:
        raise InputError(f"contrast {list(contrast)} compares a level with itself; pick two different levels")
    for level in (test, ref):
        count = int((design.labels[factor] == level).sum())
        if count < 2:
            raise InputError(
                f"contrast {list(contrast)}: group '{factor}={level}' has {count} sample; "
                "each compared group needs at least 2 samples (add replicates or merge levels)"
            )
