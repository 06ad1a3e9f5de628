"""The report's figures (matplotlib, no pyplot state: each function returns a new Figure)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def volcano(lfc: np.ndarray, pvalue: np.ndarray, padj: np.ndarray, title: str, alpha: float = 0.05) -> Figure:
    """Volcano plot: log2 fold change against -log10 p-value, genes with padj < alpha in red.

    Parameters
    ----------
    lfc, pvalue, padj
        Shape (gene,); non-finite points are dropped.
    title
        Axes title.
    alpha
        Significance level on padj.
    """
    fig = Figure(figsize=(4.2, 3.4))
    ax = fig.add_subplot()
    with np.errstate(divide="ignore"):
        y = -np.log10(np.clip(pvalue, 1e-300, 1.0))
    ok = np.isfinite(lfc) & np.isfinite(y)
    sig = ok & (np.nan_to_num(padj, nan=1.0) < alpha)
    ax.scatter(
        lfc[ok & ~sig], y[ok & ~sig], s=4, c="#999999", alpha=0.6, linewidths=0, label="not significant"
    )
    ax.scatter(lfc[sig], y[sig], s=5, c="#c0392b", alpha=0.8, linewidths=0, label=f"padj < {alpha}")
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 p-value")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    return fig


def heatmap(matrix: pd.DataFrame, title: str) -> Figure:
    """Heatmap of a (gene, class) table, each row scaled to its maximum.

    Parameters
    ----------
    matrix
        Rows = genes, columns = classes, values = mean |attribution| (>= 0).
    title
        Axes title.
    """
    values = matrix.to_numpy(dtype=np.float64)
    peak = values.max(axis=1, keepdims=True)
    scaled = np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)
    height = min(2.0 + 0.16 * len(matrix), 16.0)
    fig = Figure(figsize=(max(4.0, 1.0 + 0.45 * matrix.shape[1]), height))
    ax = fig.add_subplot()
    im = ax.imshow(scaled, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(
        range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=60, ha="right", fontsize=7
    )
    ax.set_yticks(range(matrix.shape[0]), [str(g) for g in matrix.index], fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="mean |attribution| / row max", shrink=0.6)
    return fig


def bars(table: pd.DataFrame, x: str, y: str, group: str | None, title: str, ylabel: str) -> Figure:
    """Grouped bar chart of ``y`` by ``x`` (and ``group``).

    Parameters
    ----------
    table
        Long table with columns ``x``, ``y`` and optionally ``group``.
    x, y, group
        Column names.
    title, ylabel
        Labels.
    """
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    xs = list(dict.fromkeys(table[x].astype(str)))
    groups = list(dict.fromkeys(table[group].astype(str))) if group else [""]
    width = 0.8 / max(len(groups), 1)
    for gi, g in enumerate(groups):
        sub = table[table[group].astype(str) == g] if group else table
        vals = sub.set_index(sub[x].astype(str))[y].reindex(xs).to_numpy(dtype=np.float64)
        ax.bar(np.arange(len(xs)) + gi * width - 0.4 + width / 2, np.nan_to_num(vals), width, label=g or None)
    ax.set_xticks(range(len(xs)), xs, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if group:
        ax.legend(fontsize=7, frameon=False)
    return fig


def curves(
    table: pd.DataFrame, x: str, ys: list[str], title: str, xlabel: str, ylabel: str, logx: bool
) -> Figure:
    """Line plot of several columns against ``x``.

    Parameters
    ----------
    table
        Rows sorted by ``x``.
    x, ys
        Column names.
    title, xlabel, ylabel
        Labels.
    logx
        Log-scale x axis (base 2).
    """
    fig = Figure(figsize=(4.6, 3.2))
    ax = fig.add_subplot()
    t = table.sort_values(x)
    for y in ys:
        ax.plot(t[x], t[y], marker="o", ms=3, label=y)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return fig


def scatter(
    x: np.ndarray, y: np.ndarray, highlight: np.ndarray, title: str, xlabel: str, ylabel: str
) -> Figure:
    """Scatter of two per-gene scores; ``highlight`` (bool) genes drawn in red.

    Parameters
    ----------
    x, y
        Shape (gene,).
    highlight
        Shape (gene,), bool.
    title, xlabel, ylabel
        Labels.
    """
    fig = Figure(figsize=(4.4, 3.4))
    ax = fig.add_subplot()
    ok = np.isfinite(x) & np.isfinite(y)
    ax.scatter(x[ok & ~highlight], y[ok & ~highlight], s=4, c="#7f8c8d", alpha=0.6, linewidths=0)
    ax.scatter(x[ok & highlight], y[ok & highlight], s=10, c="#c0392b", linewidths=0, label="highlighted")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return fig
