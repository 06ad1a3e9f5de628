"""Versions of Python and of the libraries whose behaviour shapes results (for manifests and checkpoints)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

RESULT_LIBRARIES: tuple[str, ...] = (
    "gexplain", "numpy", "pandas", "scipy", "xarray", "zarr", "dask", "ray", "torch", "captum", "shap",
    "pydeseq2", "scikit-learn",
)  # fmt: skip


def library_versions(names: tuple[str, ...] = RESULT_LIBRARIES) -> dict[str, str]:
    """Return ``{"python": ..., <distribution>: <version or 'not installed'>}``.

    Parameters
    ----------
    names
        Distribution names to report.
    """
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
