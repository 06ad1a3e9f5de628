"""Classifier architectures of Zhao et al.: a one-hidden-layer MLP and a 2-d CNN on a gene grid.

Every model's ``forward`` takes a float32 tensor of shape (batch, genes) in the stored layer's
own units (e.g. log2(TPM + 1)) and returns logits of shape (batch, classes). Standardisation is
a :class:`Standardize` buffer module inside the model, so a saved model needs no separate input
transform.

Stable submodule names (used by the attribution code):

* :class:`MLP`: ``standardize``, ``fc1`` (first linear layer, genes -> hidden), ``bn``, ``act``,
  ``dropout``, ``fc2`` (hidden -> classes).
* :class:`CNN`: ``standardize``, ``conv1``/``pool1``/``bn1``/``act1`` ... ``conv3``/``pool3``/``bn3``/``act3``,
  ``last_conv`` (is ``conv3``, for Grad-CAM), ``dropout``, ``gap``, ``bn_head``, ``act_head``, ``fc``;
  the buffers ``cell_gene`` (grid cell -> gene index, -1 = constant ``cell_fill``) and
  :meth:`CNN.grid_to_genes` (cell maps, e.g. Grad-CAM, back to genes).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from gexplain.pipelines.models.rules import RULES
from gexplain.storage.errors import InputError
from torch import nn

GeneOrderKind = Literal["stored", "position", "random"]


def _as_tensor(values: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=dtype).clone()


class Standardize(nn.Module):
    """Per-gene standardisation ``(x - mean) / std`` held as buffers; identity when not given.

    Parameters
    ----------
    mean, std
        Arrays of shape (genes,) in the input layer's units, or both ``None`` for the identity.
        ``std`` must be positive (callers replace zero spreads by 1).
    """

    mean: torch.Tensor | None
    std: torch.Tensor | None

    def __init__(
        self, mean: np.ndarray | torch.Tensor | None = None, std: np.ndarray | torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("Standardize needs both mean and std, or neither")
        self.register_buffer("mean", None if mean is None else _as_tensor(mean, torch.float32))
        self.register_buffer("std", None if std is None else _as_tensor(std, torch.float32))

    @property
    def active(self) -> bool:
        """True when the module standardises (False: identity)."""
        return self.mean is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise ``x`` of shape (batch, genes)."""
        if self.mean is None or self.std is None:
            return x
        return (x - self.mean) / self.std


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dims: (batch, channels, h, w) -> (batch, channels).

    A plain mean, whose CUDA backward is deterministic (``AdaptiveAvgPool2d``'s is not).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average ``x`` over its last two dims."""
        return x.mean(dim=(2, 3))


class MLP(nn.Module):
    """Standardize -> Linear(genes, hidden) -> BatchNorm1d -> ReLU -> Dropout -> Linear(hidden, classes).

    Zhao et al.'s MLP. ``batch_norm=False`` replaces the BatchNorm by the identity (useful with an L1
    penalty on the first layer, which BatchNorm's rescaling otherwise undoes).

    Parameters
    ----------
    n_genes
        Number of input genes.
    n_classes
        Number of output classes.
    hidden
        Width of the hidden layer.
    dropout
        Dropout probability after the hidden layer.
    mean, std
        Standardisation statistics, shape (genes,), or ``None`` for none.
    batch_norm
        Keep the BatchNorm1d after the first layer (default, as in the paper).
    """

    arch = "mlp"

    def __init__(
        self,
        n_genes: int,
        n_classes: int,
        hidden: int = 128,
        dropout: float = 0.25,
        mean: np.ndarray | torch.Tensor | None = None,
        std: np.ndarray | torch.Tensor | None = None,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.n_genes = int(n_genes)
        self.n_classes = int(n_classes)
        self.hidden = int(hidden)
        self.dropout_p = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.standardize = Standardize(mean, std)
        self.fc1 = nn.Linear(self.n_genes, self.hidden)
        self.bn: nn.Module = nn.BatchNorm1d(self.hidden) if self.batch_norm else nn.Identity()
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(self.dropout_p)
        self.fc2 = nn.Linear(self.hidden, self.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (batch, classes) for ``x`` (batch, genes) in the stored layer's units."""
        h = self.fc1(self.standardize(x))
        return self.fc2(self.dropout(self.act(self.bn(h))))

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments (without statistics) needed to rebuild the model."""
        return {"hidden": self.hidden, "dropout": self.dropout_p, "batch_norm": self.batch_norm}


def grid_size(n_genes: int) -> int:
    """Side of the square grid for ``n_genes``: ``ceil(sqrt(n_genes))`` rounded up to a multiple of 8.

    The multiple of 8 lets the three 2x poolings divide the grid evenly; for 19,241 genes this
    gives Zhao et al.'s 144 x 144.
    """
    return max(8, 8 * math.ceil(math.ceil(math.sqrt(n_genes)) / 8))


def gene_order(
    n_genes: int,
    kind: GeneOrderKind = "stored",
    *,
    seed: int = 0,
    chromosome: np.ndarray | None = None,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Return the grid placement: ``order[cell] = gene index`` for the first ``n_genes`` cells.

    Parameters
    ----------
    n_genes
        Number of genes.
    kind
        ``"stored"`` (the store's gene order), ``"position"`` (sorted by chromosome then start;
        needs ``chromosome`` and ``start``) or ``"random"`` (a permutation drawn from ``seed``).
    seed
        Seed of the random permutation.
    chromosome, start
        Per-gene chromosome name and start coordinate (bp), shape (genes,), for ``"position"``.

    Returns
    -------
    numpy.ndarray
        int64 permutation of ``range(n_genes)``.
    """
    if kind == "stored":
        return np.arange(n_genes, dtype=np.int64)
    if kind == "random":
        return np.random.default_rng(seed).permutation(n_genes).astype(np.int64)
    if kind == "position":
        if chromosome is None or start is None:
            raise InputError(
                "gene order 'position' needs gene chromosome and start coordinates, which this store lacks; "
                "use --gene-order stored or random"
            )
        chrom = np.asarray(chromosome).astype(str)
        pos = np.asarray(start, dtype=np.float64)
        return np.lexsort((np.arange(n_genes), np.nan_to_num(pos, nan=np.inf), chrom)).astype(np.int64)
    raise InputError(f"unknown gene order '{kind}'; use one of: stored, position, random")


class CNN(nn.Module):
    """Zhao et al.'s CNN on genes laid out on a zero-padded square grid.

    Layers: three blocks conv (5x5x64, 5x5x128, 3x3x256; "same" padding) -> max-pool 2 (ceil mode,
    so small grids keep a cell) -> BN ->
    ReLU, then dropout (element-wise, or whole channels with ``channel_dropout``), global average
    pooling, BN, ReLU, Linear -> classes.

    Parameters
    ----------
    n_genes
        Number of input genes.
    n_classes
        Number of output classes.
    grid
        Side of the square grid; ``None`` = :func:`grid_size` (144 for 19,241 genes).
    gene_order
        Permutation with ``gene_order[cell] = gene index`` (see :func:`gene_order`); ``None`` = as stored.
        Kept in the buffer ``cell_gene`` (grid cell -> gene index, -1 for padding).
    dropout
        Dropout probability before pooling.
    channel_dropout
        Drop whole feature maps (``nn.Dropout2d``, as Zhao et al.'s ``cnn_v2.0.0.py`` l.82) instead
        of single activations (``nn.Dropout``).
    mean, std
        Standardisation statistics, shape (genes,), or ``None`` for none.
    cell_gene
        Explicit layout instead of ``gene_order``: shape (grid * grid,), gene index per cell or -1
        (used when a trained CNN is re-aligned to another gene list, which may hold more genes
        than cells).
    """

    arch = "cnn"
    cell_gene: torch.Tensor
    cell_fill: torch.Tensor

    def __init__(
        self,
        n_genes: int,
        n_classes: int,
        grid: int | None = None,
        gene_order: np.ndarray | torch.Tensor | None = None,
        dropout: float = 0.25,
        mean: np.ndarray | torch.Tensor | None = None,
        std: np.ndarray | torch.Tensor | None = None,
        cell_gene: np.ndarray | None = None,
        channel_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.n_genes = int(n_genes)
        self.n_classes = int(n_classes)
        self.grid = int(grid) if grid is not None else grid_size(self.n_genes)
        self.dropout_p = float(dropout)
        self.channel_dropout = bool(channel_dropout)
        if cell_gene is not None:
            cells = np.asarray(cell_gene, dtype=np.int64)
            if cells.shape != (self.grid * self.grid,) or cells.min() < -1 or cells.max() >= self.n_genes:
                raise ValueError("cell_gene must have grid*grid entries in [-1, n_genes)")
        else:
            if self.grid * self.grid < self.n_genes:
                raise InputError(
                    f"CNN grid {self.grid}x{self.grid} cannot hold {self.n_genes} genes; raise --grid"
                )
            order = np.arange(self.n_genes) if gene_order is None else np.asarray(gene_order, dtype=np.int64)
            if order.shape != (self.n_genes,) or not np.array_equal(np.sort(order), np.arange(self.n_genes)):
                raise ValueError("gene_order must be a permutation of range(n_genes)")
            cells = np.full(self.grid * self.grid, -1, dtype=np.int64)
            cells[: self.n_genes] = order
        self.register_buffer("cell_gene", _as_tensor(cells, torch.int64))
        self.register_buffer("cell_fill", torch.zeros(self.grid * self.grid, dtype=torch.float32))
        self.standardize = Standardize(mean, std)
        self.conv1 = nn.Conv2d(1, 64, 5, padding=2)
        self.pool1 = nn.MaxPool2d(2, ceil_mode=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(64, 128, 5, padding=2)
        self.pool2 = nn.MaxPool2d(2, ceil_mode=True)
        self.bn2 = nn.BatchNorm2d(128)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(128, 256, 3, padding=1)
        self.pool3 = nn.MaxPool2d(2, ceil_mode=True)
        self.bn3 = nn.BatchNorm2d(256)
        self.act3 = nn.ReLU()
        self.dropout: nn.Module = (
            nn.Dropout2d(self.dropout_p) if self.channel_dropout else nn.Dropout(self.dropout_p)
        )
        self.gap = GlobalAvgPool()
        self.bn_head = nn.BatchNorm1d(256)
        self.act_head = nn.ReLU()
        self.fc = nn.Linear(256, self.n_classes)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The last convolution (``conv3``), the usual Grad-CAM layer."""
        return self.conv3

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Lay standardised genes (batch, genes) on the grid: (batch, 1, grid, grid).

        Cell ``c`` holds gene ``cell_gene[c]``, or the constant ``cell_fill[c]`` when
        ``cell_gene[c] == -1`` (zero padding; a fill value after gene alignment).
        """
        extended = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)
        index = torch.where(self.cell_gene < 0, torch.full_like(self.cell_gene, x.shape[1]), self.cell_gene)
        placed = extended.index_select(1, index) + self.cell_fill
        return placed.reshape(x.shape[0], 1, self.grid, self.grid)

    def grid_to_genes(self, cells: torch.Tensor) -> torch.Tensor:
        """Map per-cell maps back to genes.

        Parameters
        ----------
        cells
            Tensor (batch, h, w) on any grid resolution (e.g. a Grad-CAM map of the last conv);
            it is bilinearly up-sampled to (grid, grid) first.

        Returns
        -------
        torch.Tensor
            (batch, genes): the value of the cell each gene sits in (0 for genes on no cell).
        """
        if cells.shape[-2:] != (self.grid, self.grid):
            cells = F.interpolate(cells.unsqueeze(1), size=(self.grid, self.grid), mode="bilinear").squeeze(1)
        flat = cells.reshape(cells.shape[0], -1)
        used = self.cell_gene >= 0
        out = flat.new_zeros(flat.shape[0], self.n_genes)
        out[:, self.cell_gene[used]] = flat[:, used]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (batch, classes) for ``x`` (batch, genes) in the stored layer's units."""
        h = self.to_grid(self.standardize(x))
        h = self.act1(self.bn1(self.pool1(self.conv1(h))))
        h = self.act2(self.bn2(self.pool2(self.conv2(h))))
        h = self.act3(self.bn3(self.pool3(self.conv3(h))))
        h = self.gap(self.dropout(h))
        return self.fc(self.act_head(self.bn_head(h)))

    def hyperparameters(self) -> dict[str, Any]:
        """Return the constructor arguments (without statistics and order) needed to rebuild the model."""
        return {"grid": self.grid, "dropout": self.dropout_p, "channel_dropout": self.channel_dropout}


ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, **RULES}


def build_model(
    arch: str,
    n_genes: int,
    n_classes: int,
    hyperparameters: dict[str, Any] | None = None,
    *,
    standardize: bool = False,
) -> nn.Module:
    """Build an untrained model, e.g. to load a checkpoint's state_dict into.

    Parameters
    ----------
    arch
        ``"mlp"`` or ``"cnn"``.
    n_genes, n_classes
        Input and output sizes.
    hyperparameters
        Constructor keyword arguments (``hidden``, ``dropout``, ``grid``).
    standardize
        Create (placeholder) standardisation buffers of shape (genes,), to be filled by ``load_state_dict``.
    """
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture '{arch}'; use one of: {', '.join(ARCHITECTURES)}")
    kwargs = dict(hyperparameters or {})
    if standardize:
        kwargs["mean"] = np.zeros(n_genes, dtype=np.float32)
        kwargs["std"] = np.ones(n_genes, dtype=np.float32)
    return ARCHITECTURES[arch](n_genes, n_classes, **kwargs)
