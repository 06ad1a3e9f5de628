"""The one label policy: which store column holds the class labels, and what happens to samples
without a label.

Every stage that reads labels (train, explain, evaluate, DE contrasts) resolves the column with
:func:`resolve_label` and selects samples with :func:`labelled_samples`, so they agree on which
samples take part. The default policy, ``exclude``, leaves unlabelled samples out and logs how many;
``error`` refuses a store that has any.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from gexplain.storage.errors import InputError
from gexplain.storage.schema import SAMPLE

log = logging.getLogger("gexplain")

UnlabelledPolicy = Literal["exclude", "error"]
MISSING_LABELS = ("", "nan", "NaN", "None", "NA", "<NA>")


def resolve_label(ds: xr.Dataset, label: str | None, option: str = "option --label") -> str:
    """Return the store variable of a label column (``tissue`` and ``sample_tissue`` both work).

    Parameters
    ----------
    ds
        The expression store.
    label
        Column name as the user gave it, with or without the ``sample_`` prefix; empty or None
        means the store's ``label_column`` attribute (``sample_tissue`` when it has none).
    option
        What named the column, for the message (``"option --label"``).

    Raises
    ------
    InputError
        When no such per-sample column exists (the message lists the ones that do).
    """
    label = label or str(ds.attrs.get("label_column") or "sample_tissue")
    candidates = [label] if label.startswith("sample_") else [label, f"sample_{label}"]
    for name in candidates:
        if name in ds.data_vars and ds[name].dims == (SAMPLE,):
            return name
    known = sorted(str(n) for n in ds.data_vars if ds[n].dims == (SAMPLE,) and str(n).startswith("sample_"))
    raise InputError(
        f"label column '{label}' is not in the store; {option} must be one of: {', '.join(known) or 'none'}"
    )


def labelled_samples(values: np.ndarray, column: str, policy: UnlabelledPolicy = "exclude") -> np.ndarray:
    """Return which samples carry a label, applying the unlabelled-sample policy.

    Parameters
    ----------
    values
        Label per sample, shape (sample,).
    column
        The label column's name, for messages.
    policy
        ``exclude`` (default): unlabelled samples are left out and their number is logged.
        ``error``: any unlabelled sample is an error.

    Returns
    -------
    numpy.ndarray
        bool, shape (sample,): True where the sample has a label.

    Raises
    ------
    InputError
        Under ``error`` when a sample has no label (names the first one's index and the fix).
    """
    series = pd.Series(np.asarray(values), dtype=object)
    text = series.astype(str).str.strip()
    keep = (~series.isna() & ~text.isin(MISSING_LABELS)).to_numpy()
    missing = int((~keep).sum())
    if missing and policy == "error":
        first = int(np.flatnonzero(~keep)[0])
        raise InputError(
            f"label column '{column}': {missing} samples have no label (first at sample index {first}); "
            'label them in the sample sheet or set unlabelled = "exclude" to leave them out'
        )
    if missing:
        log.warning("label column %s: %d samples without a label are left out", column, missing)
    return keep
