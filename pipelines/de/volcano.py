"""Volcano plot of a DE result: log2 fold change against -log10 adjusted p-value."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

MAX_LABELS = 10


def volcano_png(
    result: xr.Dataset,
    path: str | Path,
    *,
    alpha: float = 0.05,
    min_abs_lfc: float = 1.0,
    title: str | None = None,
) -> Path:
    """Draw a volcano plot and save it as PNG.

    Genes with ``padj < alpha`` and ``|log2FoldChange| >= min_abs_lfc`` are highlighted (up in red,
    down in blue); the ten most significant of them are labelled by symbol (else id).

    Parameters
    ----------
    result
        A DE result Dataset (``log2FoldChange``, ``padj``; coords ``gene``, ``gene_symbol``).
    path
        Output PNG file.
    alpha
        FDR threshold (dimensionless).
    min_abs_lfc
        Fold-change threshold in log2 units.
    title
        Plot title (default: method and contrast from the result's attrs).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    lfc = np.asarray(result["log2FoldChange"].values, dtype=np.float64)
    padj = np.asarray(result["padj"].values, dtype=np.float64)
    ok = np.isfinite(lfc) & np.isfinite(padj)
    floor = np.nanmin(padj[ok & (padj > 0)]) if (ok & (padj > 0)).any() else 1e-300
    y = -np.log10(np.clip(padj, floor, 1.0))
    hit = ok & (padj < alpha) & (np.abs(lfc) >= min_abs_lfc)
    up, down = hit & (lfc > 0), hit & (lfc < 0)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    rest = ok & ~hit
    size = 4 if ok.sum() > 2000 else 12
    ax.scatter(
        lfc[rest], y[rest], s=size, c="0.6", alpha=0.6, linewidths=0, label=f"n.s. ({int(rest.sum())})"
    )
    ax.scatter(lfc[up], y[up], s=size * 1.5, c="tab:red", linewidths=0, label=f"up ({int(up.sum())})")
    ax.scatter(
        lfc[down], y[down], s=size * 1.5, c="tab:blue", linewidths=0, label=f"down ({int(down.sum())})"
    )
    ax.axhline(-np.log10(alpha), color="0.3", lw=0.8, ls="--")
    for v in (-min_abs_lfc, min_abs_lfc):
        ax.axvline(v, color="0.3", lw=0.8, ls="--")
    names = result["gene_symbol"].values if "gene_symbol" in result.coords else result["gene"].values
    ids = result["gene"].values
    for i in np.flatnonzero(hit)[np.argsort(padj[hit], kind="stable")][:MAX_LABELS]:
        label = str(names[i]) or str(ids[i])
        ax.annotate(label, (lfc[i], y[i]), fontsize=6, xytext=(2, 2), textcoords="offset points")
    contrast = result.attrs.get("contrast", ["", "", ""])
    ax.set_title(title or f"{result.attrs.get('method', '')}: {contrast[0]} {contrast[1]} vs {contrast[2]}")
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 adjusted p-value")
    ax.legend(loc="best", fontsize=7, frameon=True, framealpha=0.8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out
