"""The report's figures: matplotlib (no pyplot state), drawn for inline SVG at 10 pt text.

Every function returns a new :class:`matplotlib.figure.Figure` created under :data:`STYLE`
(:func:`styled`): text at :data:`FONT_PT` points and kept as SVG ``<text>``, no mathtext (a ``$``
in a gene name stays a ``$``). Figures are :data:`WIDTH_IN` inches wide unless their content
needs more (at most :data:`MAX_WIDTH_IN`), so at 96 px per inch a 1400 px page shows them at their
own size, in a column or across the row.
Point clouds larger than :data:`RASTER_POINTS` are rasterised inside the SVG (axes and text stay
vector), so a 60 000-gene volcano stays small.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

FONT_PT = 10
WIDTH_IN = 4.3
MAX_WIDTH_IN = 13.5  # a full report row at 1400 px
RASTER_POINTS = (
    500  # above this, a point cloud is an image inside the SVG (~35 KB instead of ~110 bytes a point)
)
P_CAP = 300.0  # -log10 padj above this (or padj = 0) is drawn at the cap
STYLE = {
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": FONT_PT,
    "ytick.labelsize": FONT_PT,
    "legend.fontsize": FONT_PT,
    "figure.titlesize": FONT_PT,
    "svg.fonttype": "none",
    "svg.hashsalt": "gexplain-report",
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # matplotlib's own font: its metrics size the layout
}


@contextmanager
def styled() -> Iterator[None]:
    """matplotlib settings of every report figure (creation and SVG rendering)."""
    with mpl.rc_context(STYLE):
        yield


def _wrap(title: str) -> str:
    """A title broken into lines that fit a :data:`WIDTH_IN` figure at :data:`FONT_PT`."""
    return textwrap.fill(title, width=int(WIDTH_IN * 72 / (0.6 * FONT_PT)) - 6, break_on_hyphens=False)


def _points(ax: Axes, x: np.ndarray, y: np.ndarray, **kwargs: object) -> None:
    ax.scatter(x, y, linewidths=0, rasterized=x.size > RASTER_POINTS, **kwargs)


def _label_points(ax: Axes, x: np.ndarray, y: np.ndarray, text: list[str], most: int) -> int:
    """Label up to ``most`` points in the given order, dropping a label whose drawn box would leave
    the axes or overlap a label, the legend or a note placed before (so labels never pile up, e.g.
    at the p-value cap); returns how many were placed."""
    renderer = FigureCanvasAgg(ax.get_figure()).get_renderer()
    inside = ax.get_window_extent(renderer)
    taken = [t.get_window_extent(renderer) for t in ax.texts]
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    placed = 0
    for xi, yi, t in zip(x, y, text, strict=True):
        if placed == most:
            break
        for dx, ha in ((4, "left"), (-4, "right")):
            label = ax.annotate(
                t, (xi, yi), xytext=(dx, 0), textcoords="offset points", ha=ha, va="center", color="#333333"
            )
            box = label.get_window_extent(renderer)
            if (
                box.x0 >= inside.x0
                and box.x1 <= inside.x1
                and box.y1 <= inside.y1
                and not any(box.overlaps(b) for b in taken)
            ):
                taken.append(box)
                placed += 1
                break
            label.remove()
    return placed


def volcano(
    lfc: np.ndarray,
    padj: np.ndarray,
    title: str,
    alpha: float = 0.05,
    names: np.ndarray | None = None,
    n_labels: int = 8,
) -> Figure:
    """Volcano plot: log2 fold change against -log10 adjusted p, genes with padj < alpha in red.

    Genes with padj = 0 or -log10 padj above :data:`P_CAP` are drawn as triangles on a dashed
    cap line that says how many there are; a dotted line marks padj = alpha. The most significant
    genes are labelled with ``names`` where labels do not overlap.

    Parameters
    ----------
    lfc, padj
        Shape (gene,); genes with a non-finite value are dropped.
    title
        Axes title.
    alpha
        Significance level on padj.
    names
        Gene names (gene,) for labels, or None for none.
    n_labels
        Most labels.
    """
    with styled():
        fig = Figure(figsize=(WIDTH_IN, 3.6))
        ax = fig.add_subplot()
        with np.errstate(divide="ignore", invalid="ignore"):
            y = -np.log10(np.asarray(padj, dtype=np.float64))
        ok = np.isfinite(lfc) & ~np.isnan(y)
        capped = ok & (y > P_CAP)
        below = y[ok & ~capped]
        top = float(below.max()) if below.size else 1.0
        cap = max(top * 1.08, top + 1.0)
        shown = np.where(capped, cap, y)
        sig = ok & (np.nan_to_num(padj, nan=1.0) < alpha)
        rest = ok & ~sig
        _points(ax, lfc[rest], shown[rest], s=6, c="#999999", alpha=0.6, label="not significant")
        _points(
            ax, lfc[sig & ~capped], shown[sig & ~capped], s=8, c="#c0392b", alpha=0.8, label=f"padj < {alpha}"
        )
        ax.axhline(-np.log10(alpha), color="#555555", ls=":", lw=1)
        if capped.any():
            _points(ax, lfc[capped], shown[capped], s=22, c="#c0392b", marker="^")
            ax.axhline(cap, color="#c0392b", ls="--", lw=1)
            ax.text(
                0.98, cap, f"cap: {int(capped.sum())} genes with padj < 1e-{P_CAP:.0f}",
                transform=ax.get_yaxis_transform(), ha="right", va="bottom", color="#c0392b",
            )  # fmt: skip
            ax.set_ylim(top=cap * 1.12)
        ax.set_xlabel("log2 fold change")
        ax.set_ylabel("-log10 adjusted p (padj)")
        ax.set_title(_wrap(title))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False, markerscale=1.5)
        if names is not None and sig.any():
            idx = np.flatnonzero(sig)
            idx = idx[np.lexsort((-np.abs(lfc[idx]), -shown[idx]))]
            _label_points(ax, lfc[idx], shown[idx], [str(n) for n in np.asarray(names)[idx]], n_labels)
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
    with styled():
        fig = Figure(
            figsize=(min(max(WIDTH_IN, 2.5 + 0.3 * matrix.shape[1]), MAX_WIDTH_IN), 1.6 + 0.19 * len(matrix))
        )
        ax = fig.add_subplot()
        im = ax.imshow(scaled, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right")
        ax.set_yticks(range(matrix.shape[0]), [str(g) for g in matrix.index])
        ax.set_title(_wrap(title))
        fig.colorbar(
            im,
            ax=ax,
            label="mean |attribution| / row max",
            shrink=max(0.3, min(1.0, 6.0 / max(len(matrix), 1))),
        )
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
    xs = list(dict.fromkeys(table[x].astype(str)))
    groups = list(dict.fromkeys(table[group].astype(str))) if group else [""]
    with styled():
        fig = Figure(figsize=(min(max(WIDTH_IN, 1.5 + 0.25 * len(xs) * len(groups)), MAX_WIDTH_IN), 3.6))
        ax = fig.add_subplot()
        width = 0.8 / max(len(groups), 1)
        for gi, g in enumerate(groups):
            sub = table[table[group].astype(str) == g] if group else table
            vals = sub.set_index(sub[x].astype(str))[y].reindex(xs).to_numpy(dtype=np.float64)
            ax.bar(
                np.arange(len(xs)) + gi * width - 0.4 + width / 2, np.nan_to_num(vals), width, label=g or None
            )
        ax.set_xticks(range(len(xs)), xs, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(_wrap(title))
        if group:
            ax.legend(frameon=False)
    return fig


def curves(
    lines: dict[str, pd.DataFrame], x: str, y: str, title: str, xlabel: str, ylabel: str, logx: bool
) -> Figure:
    """Line plot of one column against ``x``, one line per entry of ``lines``.

    A line with a single point is drawn as a marker only, and its legend entry says so.

    Parameters
    ----------
    lines
        Legend label -> table with columns ``x`` and ``y``.
    x, y
        Column names.
    title, xlabel, ylabel
        Labels.
    logx
        Log-scale x axis (base 2).
    """
    with styled():
        fig = Figure(figsize=(WIDTH_IN, 3.4))
        ax = fig.add_subplot()
        for name, t in lines.items():
            t = t.sort_values(x)
            if len(t) == 1:
                ax.plot(t[x], t[y], ls="none", marker="D", ms=6, label=f"{name} (one point: no curve)")
            else:
                ax.plot(t[x], t[y], marker="o", ms=4, label=name)
        if logx:  # ticks at the grid's values, written as plain numbers (no mathtext)
            ax.set_xscale("log", base=2)
            grid = sorted({float(v) for t in lines.values() for v in t[x] if v > 0})
            ticks = [v for v in grid if float(np.log2(v)).is_integer()] or grid
            ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(_wrap(title))
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
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
    with styled():
        fig = Figure(figsize=(WIDTH_IN, 3.6))
        ax = fig.add_subplot()
        ok = np.isfinite(x) & np.isfinite(y)
        _points(ax, x[ok & ~highlight], y[ok & ~highlight], s=6, c="#7f8c8d", alpha=0.6)
        _points(ax, x[ok & highlight], y[ok & highlight], s=12, c="#c0392b", label="highlighted")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(_wrap(title))
    return fig
