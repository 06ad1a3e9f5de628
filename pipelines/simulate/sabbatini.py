"""The four synthetic datasets of Sabbatini & Manganaro (2023), EMBnet.journal 28, e1035.

"On potential limitations of differential expression analysis with non-linear machine learning
models" builds two-group datasets (2,000 samples, 1,000 per group) in which the group depends on
genes either linearly (two Gaussian clouds) or only through a radius (two concentric circles), to
show that differential expression misses the second kind. Only the paper's abstract and the
datasets' names and sizes could be consulted here, so the generating rules below are our reading
of them, stated exactly (``x`` is a sample's value of a gene, arbitrary log-expression units):

``A`` (clouds), 10 genes
    genes 0-1 informative, linear: ``x ~ N(c_y, 0.6^2 I)`` with ``c_0 = (-0.75, -0.75)``,
    ``c_1 = (+0.75, +0.75)``; genes 2-9 noise ``N(0, 1)``.
``B`` (circles), 10 genes
    genes 0-1 informative, non-linear, as scikit-learn's ``make_circles``: angle
    ``phi ~ U(0, 2 pi)``, radius 1.0 (group 0) or 0.5 (group 1),
    ``x = r (cos phi, sin phi) + N(0, 0.1^2 I)``; genes 2-9 noise ``N(0, s^2)`` with ``s`` the
    circle genes' marginal sd (0.57). Both groups have mean and median 0 in each gene.
``C`` (circles big), 1,000 genes
    genes 0-1 as in B; genes 2-199 (198 genes) correlated with one circle gene each (alternately
    gene 0 and gene 1): ``x_k = rho_k x_parent + sqrt(1 - rho_k^2) s z``, ``z ~ N(0, 1)``, so that
    ``corr(x_k, x_parent) = rho_k``, with ``rho_k`` evenly spaced from 0.5 up to 0.99; genes
    200-999 (800 genes) noise ``N(0, s^2)``. Only genes 0-1 are ``truth_informative``; the
    correlated genes record ``truth_correlated_with`` and ``truth_correlation``.
``D`` (negative-binomial counts, more informative genes), 100 genes
    genes 0-19: ten circle pairs as in B; genes 20-24 linear, ``x ~ N(+-0.5, 0.4^2)`` (sign by
    group); genes 25-99 noise ``N(0, s^2)``; all values then doubled (so that the pattern stands
    out of the counting noise); counts are the primary layer (below) with gene means
    ``m_g ~ LogNormal(ln 1000, 0.5)`` and dispersions ``alpha_g = 1 / m_g + 0.01``.

Counts, so that DESeq2 can run on every dataset: ``y ~ NB(mean mu, dispersion alpha)`` with
``mu = m_g max(1 + x / 4, 0.05)``. The map is monotone and *affine* in ``x`` over the data's range
(the floor is not reached by these designs in practice), so groups with equal mean ``x`` have
equal mean counts: the circles stay invisible to a test of mean counts, as in the paper, instead
of gaining a spurious fold change through ``E[exp(x)]``. For A-C, ``m_g = 10000`` and
``alpha = 0.001`` (counts closely follow ``x``: Spearman ~0.97) and ``log_expr`` stores ``x`` itself
(``attrs['log_expr_source'] = "value"``); for D, ``log_expr = log2(CPM + 1)`` of the counts
(``log_expr_source = "cpm"``).

Labels ``sample_group`` ("group_0", "group_1"), balanced and randomly ordered; every sample's
values come from its own generator ``(seed, SAMPLE_STREAM, j)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipelines.progress import Progress
from pipelines.simulate.common import (
    GENE_STREAM,
    INT32_MAX,
    LABEL_STREAM,
    SAMPLE_STREAM,
    check_positive,
    check_seed,
    log2_cpm1,
    rng_for,
    write_store,
)
from storage.errors import InputError

DATASETS = ("A", "B", "C", "D")
CLOUD_CENTRE, CLOUD_SD = 0.75, 0.6
OUTER, INNER, CIRCLE_NOISE = 1.0, 0.5, 0.1
CIRCLE_SD = float(np.sqrt((OUTER**2 + INNER**2) / 4 + CIRCLE_NOISE**2))
LINEAR_SHIFT, LINEAR_SD = 0.5, 0.4
COUNT_SLOPE, COUNT_FLOOR = 0.25, 0.05
N_CORRELATED, N_BIG = 198, 1000
D_PAIRS, D_LINEAR, D_GENES, D_SCALE = 10, 5, 100, 2.0


@dataclass(frozen=True)
class SabbatiniDesign:
    """Per-gene layout of one dataset (arrays along ``gene``).

    Attributes
    ----------
    dataset
        ``"A"``-``"D"``.
    kind
        ``cloud``, ``circle``, ``linear``, ``correlated`` or ``noise``.
    pair
        Circle pair id (-1 for none).
    parent
        Index of the circle gene a correlated gene follows (-1 for none).
    rho
        Population correlation with ``parent`` (0 for none).
    mean, dispersion
        NB base mean ``m_g`` (reads) and dispersion ``alpha_g`` of the counts.
    """

    dataset: str
    kind: np.ndarray
    pair: np.ndarray
    parent: np.ndarray
    rho: np.ndarray
    mean: np.ndarray
    dispersion: np.ndarray


def design_dataset(dataset: str, seed: int) -> SabbatiniDesign:
    """Return the gene layout of ``dataset`` (see the module docstring)."""
    if dataset not in DATASETS:
        raise InputError(f"option --dataset (= {dataset!r}) must be one of {', '.join(DATASETS)}")
    if dataset in ("A", "B"):
        kind = np.array(["cloud" if dataset == "A" else "circle"] * 2 + ["noise"] * 8, dtype=object)
    elif dataset == "C":
        kind = np.array(["circle"] * 2 + ["correlated"] * N_CORRELATED, dtype=object)
        kind = np.concatenate([kind, np.full(N_BIG - kind.size, "noise", dtype=object)])
    else:
        kind = np.array(
            ["circle"] * (2 * D_PAIRS)
            + ["linear"] * D_LINEAR
            + ["noise"] * (D_GENES - 2 * D_PAIRS - D_LINEAR),
            dtype=object,
        )
    n = kind.size
    pair = np.full(n, -1, dtype=np.int64)
    circles = np.flatnonzero(kind == "circle")
    pair[circles] = np.arange(circles.size) // 2
    parent = np.full(n, -1, dtype=np.int64)
    rho = np.zeros(n)
    correlated = np.flatnonzero(kind == "correlated")
    parent[correlated] = np.arange(correlated.size) % 2
    rho[correlated] = np.linspace(0.5, 0.99, correlated.size)
    if dataset == "D":
        rng = rng_for(seed, GENE_STREAM)
        mean = np.exp(rng.normal(np.log(1000.0), 0.5, n))
        dispersion = 1.0 / mean + 0.01
    else:
        mean, dispersion = np.full(n, 10_000.0), np.full(n, 0.001)
    return SabbatiniDesign(dataset, kind, pair, parent, rho, mean, dispersion)


def _values(rng: np.random.Generator, group: int, design: SabbatiniDesign) -> np.ndarray:
    """Return one sample's values x (gene,) float64 for its group (0 or 1)."""
    kind = design.kind
    x = np.zeros(kind.size)
    clouds = kind == "cloud"
    if clouds.any():
        centre = CLOUD_CENTRE if group == 1 else -CLOUD_CENTRE
        x[clouds] = centre + rng.normal(0.0, CLOUD_SD, int(clouds.sum()))
    circle_genes = np.flatnonzero(kind == "circle")
    if circle_genes.size:
        radius = INNER if group == 1 else OUTER
        phi = rng.uniform(0.0, 2.0 * np.pi, circle_genes.size // 2)
        xy = np.stack([np.cos(phi), np.sin(phi)], axis=1).reshape(-1) * radius
        x[circle_genes] = xy + rng.normal(0.0, CIRCLE_NOISE, circle_genes.size)
    linear = kind == "linear"
    if linear.any():
        shift = LINEAR_SHIFT if group == 1 else -LINEAR_SHIFT
        x[linear] = shift + rng.normal(0.0, LINEAR_SD, int(linear.sum()))
    correlated = np.flatnonzero(kind == "correlated")
    if correlated.size:
        rho = design.rho[correlated]
        parent = x[design.parent[correlated]]
        x[correlated] = rho * parent + np.sqrt(1.0 - rho**2) * CIRCLE_SD * rng.normal(size=correlated.size)
    noise = kind == "noise"
    x[noise] = rng.normal(0.0, 1.0 if design.dataset == "A" else CIRCLE_SD, int(noise.sum()))
    return D_SCALE * x if design.dataset == "D" else x


def value_to_count_mean(x: np.ndarray, base_mean: np.ndarray) -> np.ndarray:
    """Return the NB mean of counts for values ``x``: ``m_g max(1 + x/4, 0.05)`` (reads)."""
    return base_mean * np.maximum(1.0 + COUNT_SLOPE * x, COUNT_FLOOR)


def sabbatini_block(
    block: slice, groups: np.ndarray, design: SabbatiniDesign, seed: int
) -> dict[str, np.ndarray]:
    """Return the ``log_expr`` and ``counts`` layers of the samples in ``block``.

    Returns
    -------
    dict
        ``log_expr`` (samples, genes) float32 (values for A-C, log2(CPM+1) for D) and ``counts``
        (samples, genes) int32 reads.
    """
    rows, counts = [], []
    size = 1.0 / design.dispersion
    for j in range(block.start, block.stop):
        rng = rng_for(seed, SAMPLE_STREAM, j)
        x = _values(rng, int(groups[j]), design)
        mu = value_to_count_mean(x, design.mean)
        counts.append(np.minimum(rng.negative_binomial(size, size / (size + mu)), INT32_MAX))
        rows.append(x)
    y = np.stack(counts).astype(np.int32)
    log_expr = log2_cpm1(y) if design.dataset == "D" else np.stack(rows).astype(np.float32)
    return {"log_expr": log_expr, "counts": y}


def simulate_sabbatini(
    url: str,
    *,
    dataset: str,
    seed: int,
    n_per_group: int = 1000,
    chunks: Mapping[str, int] | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> str:
    """Write Sabbatini & Manganaro dataset ``A``, ``B``, ``C`` or ``D`` into a new store.

    Parameters
    ----------
    url
        Store path or fsspec URL to create.
    dataset
        ``"A"`` clouds, ``"B"`` circles, ``"C"`` circles big, ``"D"`` negative-binomial counts.
    seed
        Seed of every draw.
    n_per_group
        Samples per group (the paper: 1,000, so 2,000 samples in all).
    chunks
        Stored chunk shape.
    progress
        Progress reporting.
    overwrite
        Replace an existing store.

    Returns
    -------
    str
        The store URL.
    """
    check_positive(n_per_group=n_per_group)
    check_seed(seed)
    design = design_dataset(dataset, seed)
    n = 2 * n_per_group
    groups = rng_for(seed, LABEL_STREAM).permutation(np.repeat([0, 1], n_per_group))
    n_genes = design.kind.size
    gene_ids = np.array([f"gene_{g:04d}" for g in range(n_genes)], dtype=object)
    informative = np.isin(design.kind, ["cloud", "circle", "linear"])
    mode = np.where(
        np.isin(design.kind, ["cloud", "linear"]), "linear", np.where(informative, "nonlinear", "none")
    )
    variables = {
        "sample_group": ("sample", np.array(["group_0", "group_1"], dtype=object)[groups]),
        "gene_symbol": ("gene", gene_ids.copy()),
        "truth_informative": ("gene", informative),
        "truth_mode": ("gene", mode.astype(object)),
        "truth_kind": ("gene", design.kind),
        "truth_pair": ("gene", design.pair),
        "truth_correlated_with": ("gene", design.parent),
        "truth_correlation": ("gene", design.rho),
        "truth_mean": ("gene", design.mean),
        "truth_dispersion": ("gene", design.dispersion),
    }
    params = {
        "dataset": dataset,
        "seed": seed,
        "n_per_group": n_per_group,
        "count_mean": "m_g * max(1 + x/4, 0.05)",
        "reference": "Sabbatini & Manganaro (2023) EMBnet.journal 28, e1035",
    }
    return write_store(
        url,
        sample_ids=np.array([f"S{j:06d}" for j in range(n)], dtype=object),
        gene_ids=gene_ids,
        variables=variables,
        layers={"log_expr": "float32", "counts": "int32"},
        attrs={
            "simulator": {"name": "sabbatini", "params": params},
            "label_column": "sample_group",
            "log_expr_source": "cpm" if dataset == "D" else "value",
        },
        make_block=lambda block: sabbatini_block(block, groups, design, seed),
        chunks=chunks,
        progress=progress,
        description=f"simulate sabbatini {dataset}",
        overwrite=overwrite,
    )
