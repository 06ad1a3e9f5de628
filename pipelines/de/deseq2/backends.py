"""Inference backends of the DESeq2 kernels: numpy (default) and torch (CUDA when available).

A backend provides the two kernels that hold nearly all of a gene block's arithmetic: the
dispersion log posterior the line search and grid evaluate (:class:`DispersionPosterior`) and
the IRLS fit of the GLM coefficients. Everything else (control flow of the line search,
trend, prior, Cook's distances, Wald tests, filtering) is numpy and shared, so the backends
agree to rounding (``tests/test_deseq2_backends.py``). Chosen by the deseq2 option ``backend``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, get_args

import numpy as np
from gexplain.pipelines.de.deseq2 import irls as numpy_irls
from gexplain.pipelines.de.deseq2.linesearch import DispersionPosterior, Posterior
from gexplain.pipelines.de.methods.deseq2 import BackendName
from gexplain.storage.errors import InputError

if TYPE_CHECKING:
    import torch

BACKENDS: tuple[str, ...] = get_args(BackendName)

Fit = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class Backend(Protocol):
    """The kernels of one backend (numpy arrays in and out)."""

    name: str

    def posterior(
        self,
        counts: np.ndarray,
        mu: np.ndarray,
        design: np.ndarray,
        prior_mean: np.ndarray | None = None,
        prior_var: float = 1.0,
    ) -> DispersionPosterior:
        """The dispersion log posterior of a block: counts and means dims (sample, gene), design
        (sample, coefficient), prior mean of log dispersion (gene,) or None, prior variance."""
        ...

    def irls(self, counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, disp: np.ndarray) -> Fit:
        """``(beta, mu, hat, cov)`` as :func:`gexplain.pipelines.de.deseq2.irls.irls`."""
        ...


@dataclass(frozen=True)
class NumpyBackend:
    """numpy / SciPy on the CPU, with the distinct-count tally for the special-function sums."""

    name: str = "numpy"

    def posterior(
        self,
        counts: np.ndarray,
        mu: np.ndarray,
        design: np.ndarray,
        prior_mean: np.ndarray | None = None,
        prior_var: float = 1.0,
    ) -> DispersionPosterior:
        """See :meth:`Backend.posterior`."""
        return Posterior.build(counts, mu, design, prior_mean, prior_var)

    def irls(self, counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, disp: np.ndarray) -> Fit:
        """See :meth:`Backend.irls`."""
        return numpy_irls.irls(counts, size_factors, design, disp)


def torch_device(cuda_available: bool | None = None) -> torch.device:
    """The torch backend's device: ``cuda`` when a GPU is usable, else ``cpu``.

    Parameters
    ----------
    cuda_available
        Whether CUDA is usable; None asks torch (``torch.cuda.is_available()``).
    """
    import torch

    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    return torch.device("cuda" if cuda_available else "cpu")


@dataclass(frozen=True)
class TorchBackend:
    """torch, float64, on ``device`` (see :func:`torch_device`)."""

    device: str
    name: str = "torch"

    def posterior(
        self,
        counts: np.ndarray,
        mu: np.ndarray,
        design: np.ndarray,
        prior_mean: np.ndarray | None = None,
        prior_var: float = 1.0,
    ) -> DispersionPosterior:
        """See :meth:`Backend.posterior`."""
        import torch
        from gexplain.pipelines.de.deseq2.torch_kernels import TorchPosterior

        return TorchPosterior.build(counts, mu, design, prior_mean, prior_var, torch.device(self.device))

    def irls(self, counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, disp: np.ndarray) -> Fit:
        """See :meth:`Backend.irls`."""
        import torch
        from gexplain.pipelines.de.deseq2 import torch_kernels

        return torch_kernels.irls(counts, size_factors, design, disp, torch.device(self.device))


def get_backend(name: str, device: str | None = None) -> Backend:
    """The backend called ``name``.

    Parameters
    ----------
    name
        ``"numpy"`` or ``"torch"``.
    device
        For torch: a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``); None picks
        :func:`torch_device`. Ignored by numpy.

    Raises
    ------
    InputError
        An unknown backend, or torch asked for where it is not installed.
    """
    if name == "numpy":
        return NumpyBackend()
    if name == "torch":
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise InputError(
                "deseq2 option backend='torch' needs PyTorch, which is not installed; "
                "install torch or use backend='numpy'"
            ) from exc
        return TorchBackend(device or str(torch_device()))
    raise InputError(f"unknown deseq2 backend '{name}' (option --backend); choose from {', '.join(BACKENDS)}")
