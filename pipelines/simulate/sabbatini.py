"""The four synthetic datasets of Sabbatini & Manganaro (2023), EMBnet.journal 28, e1035.

"On potential limitations of differential expression analysis with non-linear machine learning
models" (full text: ``../shared/papers/sabbatini-manganaro-2023-de-limitations.txt``) builds
two-group datasets of 2,000 points (1,000 per group). What the paper states is followed exactly;
what it leaves open (distribution parameters) is our choice, marked *ours* below. ``x`` is a
value of a variable ("gene"), arbitrary log-expression units.

``A`` (clouds), 20 variables (paper)
    2 significant variables at random positions (paper: two numbers drawn uniformly in 1..20;
    its draw was x9, x20), the 18 others pure noise from uniform distributions (paper).
    Significant pair: bivariate normal clouds with different centres and the same standard
    deviation in both directions (paper): ``N(+-(c, -c), s^2 I)`` with ``c = 0.75``, ``s = 0.5``
    (ours; one gene over- and the other under-expressed, as the paper's reading). Noise
    ``U(-2, 2)`` (ours).
``B`` (circles), 20 variables (paper)
    Layout as A (paper's draw: x4, x17). Inner group: bivariate normal ``N(0, 0.5^2 I)``
    (paper; sd ours); outer group: radius ``1.5 + Gamma(shape 2, scale 0.25)`` (a Gamma with an
    offset on the radial coordinate: paper; numbers ours) at a uniform angle (ours: the paper's
    Figure 1 shows a full ring). Both groups have mean 0 in each variable, so a test of means
    finds nothing.
``C`` (circles big), 1,000 variables (paper)
    B's pair (paper's draw: x23, x83), 800 uniform noise variables (paper) and 198 variables
    linearly correlated with the others, up to 0.99 (paper): variable ``k`` follows a parent
    drawn uniformly among the 802 pair and noise variables, ``x_k = rho_k x_parent +
    sqrt(1 - rho_k^2) sd_parent z`` with ``z ~ N(0, 1)``, so ``corr(x_k, x_parent) = rho_k``,
    ``rho_k`` evenly spaced in [0.5, 0.99] (construction ours). All positions are shuffled
    (random layout).
``D`` (negative-binomial), 1,000 variables (paper: "similar to dataset C but with an increased
number of significant variables and ... negative binomial distributions mimicking ... RNA-seq")
    C's layout with 5 circle pairs (10 significant variables; number ours); the values are NB
    counts (below) with RNA-seq-like gene means ``m_g ~ LogNormal(ln 1000, 0.5)`` and dispersions
    ``alpha_g = 1 / m_g + 0.01`` (ours); ``log_expr = log2(CPM + 1)`` of the counts.

``layout="paper"`` places A's, B's and C's pair where the paper's draws put them (1-based
x9/x20, x4/x17, x23/x83; C's correlated variables then fill the other positions in order).

Counts, so that DESeq2 can run on every dataset (the paper ran DESeq2 and edgeR on these
values; how it turned them into counts is not stated): ``y ~ NB(mean mu, dispersion alpha)``
with ``mu = m_g max(1 + x / 5, 0.05)`` (ours). The map is monotone and *affine* over the data's
range (the floor, ``x < -4.75``, has probability under 1e-4 per outer sample), so groups with equal mean ``x`` have
equal mean counts and the circles stay invisible to a test of mean counts, as in the paper. For
A-C, ``m_g = 10000`` and ``alpha = 0.001`` (counts closely follow ``x``) and ``log_expr``
stores ``x`` itself (``attrs['log_expr_source'] = "value"``); for D, ``log_expr_source = "cpm"``.

Labels ``sample_group`` ("group_0" outer / first cloud, "group_1" inner / second cloud),
balanced and randomly ordered; every sample's values come from its own generator
``(seed, SAMPLE_STREAM, j)``. Gene ids are the paper's names ``x1 .. xN``.

The paper explains two fixed decision rules, not trained networks; they are model kinds in
:mod:`gexplain.pipelines.models.rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.simulate.common import (
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
from gexplain.storage.errors import InputError

DATASETS = ("A", "B", "C", "D")
LAYOUTS = ("random", "paper")
N_SMALL, N_BIG, N_CORRELATED, D_PAIRS = 20, 1000, 198, 5
# 0-based positions of the paper's draws (x9, x20), (x4, x17), (x23, x83)
PAPER_PAIRS = {"A": (8, 19), "B": (3, 16), "C": (22, 82)}
CLOUD_CENTRE, CLOUD_SD = 0.75, 0.5
NOISE_HALF_WIDTH = 2.0
INNER_SD, OUTER_OFFSET, OUTER_SHAPE, OUTER_SCALE = 0.5, 1.5, 2.0, 0.25
COUNT_SLOPE, COUNT_FLOOR = 0.2, 0.05
RHO_MIN, RHO_MAX = 0.5, 0.99

LAYERS: dict[str, str] = {"log_expr": "float32", "counts": "int32"}  # the (sample, gene) layers it writes


def _outer_second_moment() -> float:
    """E[R^2] of the outer radius ``offset + Gamma(shape, scale)``."""
    mean = OUTER_OFFSET + OUTER_SHAPE * OUTER_SCALE
    return mean**2 + OUTER_SHAPE * OUTER_SCALE**2


# population sd of one coordinate: uniform noise, and the equal mixture of inner and outer groups
NOISE_SD = NOISE_HALF_WIDTH / np.sqrt(3.0)
CIRCLE_SD = float(np.sqrt((INNER_SD**2 + _outer_second_moment() / 2) / 2))
CLOUD_MARGINAL_SD = float(np.sqrt(CLOUD_SD**2 + CLOUD_CENTRE**2))


@dataclass(frozen=True)
class SabbatiniDesign:
    """Per-variable layout of one dataset (arrays along ``gene``).

    Attributes
    ----------
    dataset
        ``"A"``-``"D"``.
    kind
        ``cloud``, ``circle``, ``correlated`` or ``noise``.
    pair
        Significant pair id (-1 for none).
    parent
        Index of the variable a correlated variable follows (-1 for none).
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

    def sd(self) -> np.ndarray:
        """Population standard deviation of each non-correlated variable (0 for correlated)."""
        out = np.zeros(self.kind.size)
        out[self.kind == "noise"] = NOISE_SD
        out[self.kind == "circle"] = CIRCLE_SD
        out[self.kind == "cloud"] = CLOUD_MARGINAL_SD
        return out


def _positions(dataset: str, layout: str, n: int, n_significant: int, rng: np.random.Generator) -> np.ndarray:
    """0-based positions of the significant variables, in pair order."""
    if layout == "paper" and dataset in PAPER_PAIRS:
        return np.array(PAPER_PAIRS[dataset], dtype=np.int64)
    return rng.choice(n, size=n_significant, replace=False).astype(np.int64)


def design_dataset(dataset: str, seed: int, layout: str = "random") -> SabbatiniDesign:
    """Return the variable layout of ``dataset`` (see the module docstring).

    Parameters
    ----------
    dataset
        ``"A"``-``"D"``.
    seed
        Seed of the layout draws (positions, parents, D's gene means).
    layout
        ``"random"``: significant positions drawn from ``seed`` (the paper's procedure);
        ``"paper"``: the paper's draws for A-C.
    """
    if dataset not in DATASETS:
        raise InputError(f"option --dataset (= {dataset!r}) must be one of {', '.join(DATASETS)}")
    if layout not in LAYOUTS:
        raise InputError(f"option --layout (= {layout!r}) must be one of {', '.join(LAYOUTS)}")
    rng = rng_for(seed, GENE_STREAM, DATASETS.index(dataset))  # each dataset draws its own layout
    n = N_SMALL if dataset in ("A", "B") else N_BIG
    n_pairs = D_PAIRS if dataset == "D" else 1
    significant = _positions(dataset, layout, n, 2 * n_pairs, rng)
    kind = np.full(n, "noise", dtype=object)
    kind[significant] = "cloud" if dataset == "A" else "circle"
    pair = np.full(n, -1, dtype=np.int64)
    pair[significant] = np.arange(significant.size) // 2
    parent = np.full(n, -1, dtype=np.int64)
    rho = np.zeros(n)
    if n == N_BIG:
        free = np.setdiff1d(np.arange(n), significant)
        correlated = np.sort(rng.choice(free, size=N_CORRELATED, replace=False))
        if layout == "paper":
            correlated = free[-N_CORRELATED:]
        kind[correlated] = "correlated"
        sources = np.flatnonzero(kind != "correlated")
        parent[correlated] = rng.choice(sources, size=N_CORRELATED, replace=True)
        rho[correlated] = np.linspace(RHO_MIN, RHO_MAX, N_CORRELATED)
    if dataset == "D":
        mean = np.exp(rng.normal(np.log(1000.0), 0.5, n))
        dispersion = 1.0 / mean + 0.01
    else:
        mean, dispersion = np.full(n, 10_000.0), np.full(n, 0.001)
    return SabbatiniDesign(dataset, kind, pair, parent, rho, mean, dispersion)


def _values(rng: np.random.Generator, group: int, design: SabbatiniDesign) -> np.ndarray:
    """Return one sample's values x (gene,) float64 for its group (0 or 1)."""
    kind = design.kind
    x = np.zeros(kind.size)
    noise = kind == "noise"
    x[noise] = rng.uniform(-NOISE_HALF_WIDTH, NOISE_HALF_WIDTH, int(noise.sum()))
    clouds = np.flatnonzero(kind == "cloud")
    if clouds.size:
        sign = 1.0 if group == 1 else -1.0
        centre = sign * CLOUD_CENTRE * np.array([1.0, -1.0])
        x[clouds] = centre + rng.normal(0.0, CLOUD_SD, 2)
    circles = np.flatnonzero(kind == "circle")
    for p in range(circles.size // 2):
        genes = circles[design.pair[circles] == p]
        if group == 1:
            x[genes] = rng.normal(0.0, INNER_SD, 2)
        else:
            radius = OUTER_OFFSET + rng.gamma(OUTER_SHAPE, OUTER_SCALE)
            phi = rng.uniform(0.0, 2.0 * np.pi)
            x[genes] = radius * np.array([np.cos(phi), np.sin(phi)])
    correlated = np.flatnonzero(kind == "correlated")
    if correlated.size:
        rho = design.rho[correlated]
        parent = design.parent[correlated]
        z = rng.normal(size=correlated.size)
        x[correlated] = rho * x[parent] + np.sqrt(1.0 - rho**2) * design.sd()[parent] * z
    return x


def value_to_count_mean(x: np.ndarray, base_mean: np.ndarray) -> np.ndarray:
    """Return the NB mean of counts for values ``x``: ``m_g max(1 + x/5, 0.05)`` (reads)."""
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
    layout: Literal["random", "paper"] = "random",
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
    layout
        ``"random"`` significant positions drawn from ``seed`` (the paper's procedure) or
        ``"paper"`` (the paper's draws, A-C).
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
    design = design_dataset(dataset, seed, layout)
    n = 2 * n_per_group
    groups = rng_for(seed, LABEL_STREAM).permutation(np.repeat([0, 1], n_per_group))
    n_genes = design.kind.size
    gene_ids = np.array([f"x{g + 1}" for g in range(n_genes)], dtype=object)
    informative = np.isin(design.kind, ["cloud", "circle"])
    mode = np.where(design.kind == "cloud", "linear", np.where(informative, "nonlinear", "none"))
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
        "layout": layout,
        "significant": gene_ids[informative].tolist(),
        "count_mean": "m_g * max(1 + x/5, 0.05)",
        "reference": "Sabbatini & Manganaro (2023) EMBnet.journal 28, e1035",
    }
    return write_store(
        url,
        sample_ids=np.array([f"S{j:06d}" for j in range(n)], dtype=object),
        gene_ids=gene_ids,
        variables=variables,
        layers=LAYERS,
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
