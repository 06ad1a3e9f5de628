"""Repeat modes: how a model behaves while it is explained.

* ``mc_dropout`` (default): the model in eval mode (BatchNorm on running statistics) with every
  ``nn.Dropout`` replaced by an explicit mask drawn from ``(run_seed, model_id, sample, repeat,
  module)``. All rows of one (sample, repeat) -- its references, integration steps, noise draws --
  share one mask, samples never influence each other, and results do not depend on order.
* ``expected``: eval mode, dropout off: the exact K -> infinity limit of ``mc_dropout`` for
  explainers that are linear in the mask (the mean mask tends to E[mask] = 1); the engine also
  reports the analytic spread of one repeat around it (:mod:`gexplain.pipelines.explain.collapse`).
* ``deterministic``: eval mode, dropout off.
* ``paper``: train mode as in Zhao et al.'s code: BatchNorm uses the statistics of the batch being
  explained and dropout is torch's random dropout. Results depend on batch composition; kept only
  to reproduce the paper. The model is copied so its running statistics are never updated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from gexplain.storage.errors import InputError
from torch import nn

MODES = ("mc_dropout", "expected", "deterministic", "paper")
MASK_STREAM = 2
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
"""Dropout modules the mask hooks replace; the ``Dropout1d/2d/3d`` ones drop whole channels."""
CHANNEL_DROPOUT = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def dropout_mask(
    run_seed: int, model_id: int, sample: int, repeat: int, module: int, shape: tuple[int, ...], p: float
) -> np.ndarray:
    """Return the inverted-dropout mask (values 0 or 1/(1-p)) of one (sample, repeat) and module.

    Parameters
    ----------
    run_seed, model_id, sample, repeat
        Keys of the draw (global sample index).
    module
        Index of the dropout module in ``model.modules()`` order.
    shape
        Feature shape of the dropout input (without the batch dimension).
    p
        Dropout probability.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``.
    """
    if p <= 0:
        return np.ones(shape, dtype=np.float32)
    rng = np.random.default_rng(
        [int(run_seed), MASK_STREAM, int(model_id), int(sample), int(repeat), int(module)]
    )
    keep = rng.random(shape) >= p
    return keep.astype(np.float32) / np.float32(1.0 - p)


def mean_dropout_mask(
    run_seed: int, model_id: int, sample: int, repeats: range, module: int, shape: tuple[int, ...], p: float
) -> np.ndarray:
    """Mean of the masks of ``repeats`` (:func:`dropout_mask`) of one sample and module, float64 ``shape``.

    The mean is kept in float64; the hooks cast it to the activations' dtype.
    """
    total = np.zeros(shape, dtype=np.float64)
    for r in repeats:
        total += dropout_mask(run_seed, model_id, sample, r, module, shape, p)
    return total / max(len(repeats), 1)


class DropoutMasks:
    """Forward hooks that apply explicit per-row dropout masks on a model in eval mode.

    Rows are keyed by ``(sample, repeat)`` with :meth:`set_rows`; a batch whose size is a multiple
    ``k`` of the number of rows (e.g. Captum's step-major expansion of integrated gradients or
    DeepLift's input/baseline concatenation) gets the row masks tiled ``k`` times.
    """

    def __init__(self, model: nn.Module, run_seed: int, model_id: int) -> None:
        self.run_seed = int(run_seed)
        self.model_id = int(model_id)
        self.modules = [m for m in model.modules() if isinstance(m, DROPOUT_TYPES)]
        self.samples = np.zeros(0, dtype=np.int64)
        self.repeats = np.zeros(0, dtype=np.int64)
        self.collapse: range | None = None
        self._mean_memo: dict[tuple[int, int, int, int, tuple[int, ...]], np.ndarray] = {}
        self._cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.modules)]

    def set_rows(self, samples: np.ndarray, repeats: np.ndarray, collapse: range | None = None) -> None:
        """Key the rows of the next forward passes: (rows,) global sample and repeat indices.

        With ``collapse``, every row gets the mean of its sample's masks over those repeats
        (``repeats`` is then ignored): the repeat collapse of :mod:`gexplain.pipelines.explain.collapse`.
        """
        self.samples = np.asarray(samples, dtype=np.int64)
        self.repeats = np.asarray(repeats, dtype=np.int64)
        self.collapse = collapse
        self._cache.clear()

    def masks(self, module: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Return the (rows, *shape) float32 masks of module ``module`` for the current rows."""
        key = (module, shape)
        if key not in self._cache:
            p = float(self.modules[module].p)
            if self.collapse is not None:
                samples, inverse = np.unique(self.samples, return_inverse=True)
                unique = (
                    np.stack([self._mean_mask(int(s), module, shape, p) for s in samples])
                    if len(samples)
                    else np.zeros((0, *shape))
                )
            else:
                pairs, inverse = np.unique(
                    np.stack([self.samples, self.repeats], 1), axis=0, return_inverse=True
                )
                unique = (
                    np.stack(
                        [dropout_mask(self.run_seed, self.model_id, s, r, module, shape, p) for s, r in pairs]
                    )
                    if len(pairs)
                    else np.zeros((0, *shape), dtype=np.float32)
                )
            self._cache[key] = torch.from_numpy(unique[inverse.reshape(-1)]).to(device)
        return self._cache[key]

    def _mean_mask(self, sample: int, module: int, shape: tuple[int, ...], p: float) -> np.ndarray:
        """Mean mask of ``sample`` over ``self.collapse``, memoised for the life of the hooks
        (every explainer of a block reuses it)."""
        assert self.collapse is not None
        key = (sample, module, self.collapse.start, self.collapse.stop, shape)
        if key not in self._mean_memo:
            self._mean_memo[key] = mean_dropout_mask(
                self.run_seed, self.model_id, sample, self.collapse, module, shape, p
            )
        return self._mean_memo[key]

    def _hook(self, index: int):  # noqa: ANN202 - torch hook signature
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            x = inputs[0]
            rows = len(self.samples)
            if rows == 0 or x.shape[0] % rows:
                raise RuntimeError(f"dropout batch of {x.shape[0]} rows does not tile the {rows} keyed rows")
            # channel dropout: one mask value per (row, channel), broadcast over the spatial dims
            shape = (
                (x.shape[1],) + (1,) * (x.dim() - 2) if isinstance(module, CHANNEL_DROPOUT) else x.shape[1:]
            )
            mask = self.masks(index, tuple(shape), x.device).to(x.dtype)
            return x * mask.repeat(x.shape[0] // rows, *([1] * (x.dim() - 1)))

        return hook

    def remove(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()


@contextmanager
def explain_mode(
    model: nn.Module, mode: str, run_seed: int, model_id: int
) -> Iterator[tuple[nn.Module, DropoutMasks | None]]:
    """Put ``model`` in ``mode`` for the duration of the block.

    Yields
    ------
    (module, masks)
        The module to explain (a copy in ``paper`` mode) and the mask hooks (``mc_dropout`` only;
        ``expected`` and ``deterministic`` run with dropout off).
    """
    if mode not in MODES:
        raise InputError(f"unknown explain mode '{mode}'; use one of {', '.join(MODES)}")
    was_training = model.training
    if mode == "paper":
        twin = copy.deepcopy(model).train()
        yield twin, None
        return
    model.eval()
    masks = DropoutMasks(model, run_seed, model_id) if mode == "mc_dropout" else None
    try:
        yield model, masks
    finally:
        if masks is not None:
            masks.remove()
        model.train(was_training)
