"""GTEx/TCGA-like cohort simulator: negative-binomial counts with a known informative gene set.

Generative model (natural-log units unless stated)
--------------------------------------------------
Genes (one generator, stream ``GENE_STREAM``), placed at random positions:

* base mean ``m_g`` (reads at library factor 1): log-normal, ``ln m ~ N(ln 150, 1.8)``;
  housekeeping genes ``N(ln 2000, 0.7)``; genes of non-linear pairs ``N(ln 800, 0.5)`` (well
  expressed, so their latent pattern is visible through the counting noise);
* dispersion, DESeq2's mean-dispersion trend with gene-level scatter:
  ``alpha_g = (a1 / m_g + a0) * exp(N(0, 0.4))`` with ``a1 = 1.5``, ``a0 = 0.08``
  (``a0 = 0.02`` for housekeeping genes and genes of non-linear pairs);
* effective length ``l_g`` in bp: log-normal, ``ln l ~ N(ln 2000, 0.7)`` clipped to [200, 100000].

Classes ("tissues"): proportions ``~ Dirichlet(5, ..., 5)``; sample ``j``'s class drawn from them.

Gene roles (``truth_kind``):

* ``programme``: for each class ``k``, ``n_program_genes`` genes up in class ``k`` only by a log2
  fold change ``~ U(1, 3)`` -- shifted class means, ``truth_mode = "linear"``.
* ``xor`` pair (a, b) for class ``k``: signs ``u, v = +-1``; ``v = u`` in class ``k`` and
  ``v = -u`` elsewhere; log effects ``(d u, d v) + N(0, s^2)`` with ``d = 1.0``, ``s = 0.1``.
* ``circle`` pair (a, b) for class ``k``: angle ``phi ~ U(0, 2 pi)``; class ``k`` lies on the ring
  ``(R cos phi, R sin phi)``, every other class on the cross ``(R cos phi, +-R cos phi)``; plus
  ``N(0, s^2)`` jitter; ``R = 1.5``. The radius separates the classes (ring: ``R``; cross:
  ``sqrt(2) R |cos phi|``).

  Both non-linear designs give *each gene the same marginal distribution in every class*
  (``+-d`` equally likely; ``R cos phi`` and ``R sin phi`` share the arcsine law), so class means,
  medians and every other per-gene statistic are equal by construction: a per-gene test
  (Mann-Whitney, Kruskal-Wallis, DESeq2's Wald test) has no power on them at any sample size,
  while a model of the pair separates the classes. ``truth_mode = "nonlinear"``.
* ``housekeeping`` (a fraction of the genes) and ``background``: no class effect.

Samples (one generator per sample, stream ``SAMPLE_STREAM``, index ``j``): library factor
``s_j ~ LogNormal(0, 0.35)`` (independent of class); counts
``y_gj ~ NB(mean mu_gj = s_j m_g exp(effect_gj), dispersion alpha_g)``, i.e.
``var = mu + alpha mu^2``, clipped to int32; ``tpm = 1e6 (y/l) / sum_g (y/l)``;
``log_expr = log2(tpm + 1)``.

Note: TPM is compositional, so a class's programme genes shift every other gene's TPM slightly;
the raw ``counts`` of non-programme genes carry no class effect at all.

Ground truth written: ``truth_informative``, ``truth_mode``, ``truth_program`` (class of a
programme gene, else -1), ``truth_kind``, ``truth_class`` (class the gene informs about, -1),
``truth_pair`` (pair id of non-linear genes, -1), ``truth_mean`` (``m_g``), ``truth_dispersion``
(``alpha_g``), ``truth_log2fc`` (programme log2 fold change, else 0), ``sample_library_factor``
(``s_j``), labels ``sample_tissue``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.simulate.common import (
    GENE_STREAM,
    INT32_MAX,
    LABEL_STREAM,
    SAMPLE_STREAM,
    check_positive,
    check_seed,
    rng_for,
    write_store,
)
from gexplain.storage.errors import InputError

A1, A0, A0_HOUSEKEEPING, DISPERSION_SCATTER = 1.5, 0.08, 0.02, 0.4
XOR_SHIFT, RING_RADIUS, JITTER, LIBRARY_SD = 1.0, 1.5, 0.1, 0.35

LAYERS: dict[str, str] = {
    "counts": "int32",
    "tpm": "float32",
    "log_expr": "float32",
}  # the (sample, gene) layers it writes


@dataclass(frozen=True)
class CohortDesign:
    """Gene-level parameters and roles of a simulated cohort (all arrays along ``gene``).

    Attributes
    ----------
    mean
        Base mean ``m_g`` in reads at library factor 1.
    dispersion
        NB dispersion ``alpha_g``.
    length
        Effective gene length in bp.
    kind
        ``background``, ``housekeeping``, ``programme``, ``xor`` or ``circle``.
    klass
        Class the gene informs about (-1 for none).
    log2fc
        Programme log2 fold change in its class (0 elsewhere).
    pair_a, pair_b
        Gene indices of the two members of each non-linear pair (pair along the first axis).
    pair_kind, pair_class
        ``xor``/``circle`` and class of each pair.
    """

    mean: np.ndarray
    dispersion: np.ndarray
    length: np.ndarray
    kind: np.ndarray
    klass: np.ndarray
    log2fc: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_kind: np.ndarray
    pair_class: np.ndarray


def design_genes(
    n_genes: int,
    n_classes: int,
    seed: int,
    *,
    n_program_genes: int,
    n_xor_pairs: int,
    n_circle_pairs: int,
    housekeeping_fraction: float,
) -> CohortDesign:
    """Draw the gene-level parameters and roles (see the module docstring).

    Raises
    ------
    InputError
        When the informative and housekeeping genes do not fit in ``n_genes``.
    """
    n_pairs = n_classes * (n_xor_pairs + n_circle_pairs)
    n_prog = n_classes * n_program_genes
    n_house = int(round(housekeeping_fraction * n_genes))
    needed = 2 * n_pairs + n_prog + n_house
    if needed > n_genes or not 0.0 <= housekeeping_fraction < 1.0:
        raise InputError(
            f"option --genes (= {n_genes}) is too small for {n_classes} classes: programmes need {n_prog}, "
            f"non-linear pairs {2 * n_pairs} and housekeeping genes {n_house} (fraction {housekeeping_fraction}); "
            f"pass --genes >= {needed} or fewer --classes / programme genes / pairs"
        )
    rng = rng_for(seed, GENE_STREAM)
    order = rng.permutation(n_genes)
    kind = np.full(n_genes, "background", dtype=object)
    klass = np.full(n_genes, -1, dtype=np.int64)
    pair_kind = np.array(["xor"] * n_xor_pairs + ["circle"] * n_circle_pairs, dtype=object)
    pair_kind = np.tile(pair_kind, n_classes)
    pair_class = np.repeat(np.arange(n_classes), n_xor_pairs + n_circle_pairs)
    pair_a, pair_b = order[0 : 2 * n_pairs : 2], order[1 : 2 * n_pairs : 2]
    for genes in (pair_a, pair_b):
        kind[genes] = pair_kind
        klass[genes] = pair_class
    prog = order[2 * n_pairs : 2 * n_pairs + n_prog]
    kind[prog] = "programme"
    klass[prog] = np.repeat(np.arange(n_classes), n_program_genes)
    kind[order[2 * n_pairs + n_prog : needed]] = "housekeeping"

    log_mean = rng.normal(np.log(150.0), 1.8, n_genes)
    house = kind == "housekeeping"
    paired = np.isin(kind, ["xor", "circle"])
    log_mean[house] = rng.normal(np.log(2000.0), 0.7, int(house.sum()))
    log_mean[paired] = rng.normal(np.log(800.0), 0.5, int(paired.sum()))
    mean = np.exp(log_mean)
    a0 = np.where(house | paired, A0_HOUSEKEEPING, A0)
    dispersion = (A1 / mean + a0) * np.exp(rng.normal(0.0, DISPERSION_SCATTER, n_genes))
    length = np.clip(np.exp(rng.normal(np.log(2000.0), 0.7, n_genes)), 200.0, 100_000.0)
    log2fc = np.zeros(n_genes)
    log2fc[prog] = rng.uniform(1.0, 3.0, n_prog)
    return CohortDesign(
        mean=mean,
        dispersion=dispersion,
        length=length,
        kind=kind,
        klass=klass,
        log2fc=log2fc,
        pair_a=pair_a,
        pair_b=pair_b,
        pair_kind=pair_kind,
        pair_class=pair_class,
    )


def draw_labels(n_samples: int, n_classes: int, seed: int) -> np.ndarray:
    """Return each sample's class index (sample,) int64, with Dirichlet(5)-distributed proportions."""
    rng = rng_for(seed, LABEL_STREAM)
    proportions = rng.dirichlet(np.full(n_classes, 5.0))
    return rng.choice(n_classes, size=n_samples, p=proportions)


def _sample_row(j: int, label: int, design: CohortDesign, seed: int) -> np.ndarray:
    """Return sample ``j``'s counts (gene,) int32; its first draw is the library factor."""
    rng = rng_for(seed, SAMPLE_STREAM, j)
    library = float(np.exp(rng.normal(0.0, LIBRARY_SD)))
    effect = np.where(design.klass == label, design.log2fc * np.log(2.0), 0.0)
    n_pairs = len(design.pair_a)
    own = design.pair_class == label
    # xor: v = u in the pair's own class, v = -u elsewhere
    u = rng.choice(np.array([-1.0, 1.0]), size=n_pairs)
    v = np.where(own, u, -u)
    xor_a, xor_b = XOR_SHIFT * u, XOR_SHIFT * v
    # circle: ring (R cos, R sin) in the own class, cross (R cos, +-R cos) elsewhere
    phi = rng.uniform(0.0, 2.0 * np.pi, n_pairs)
    sign = rng.choice(np.array([-1.0, 1.0]), size=n_pairs)
    circ_a = RING_RADIUS * np.cos(phi)
    circ_b = np.where(own, RING_RADIUS * np.sin(phi), sign * RING_RADIUS * np.cos(phi))
    is_xor = design.pair_kind == "xor"
    jitter = rng.normal(0.0, JITTER, (2, n_pairs))
    effect[design.pair_a] = np.where(is_xor, xor_a, circ_a) + jitter[0]
    effect[design.pair_b] = np.where(is_xor, xor_b, circ_b) + jitter[1]
    mu = library * design.mean * np.exp(effect)
    size = 1.0 / design.dispersion
    counts = rng.negative_binomial(size, size / (size + mu))
    return np.minimum(counts, INT32_MAX).astype(np.int32)


def cohort_block(block: slice, labels: np.ndarray, design: CohortDesign, seed: int) -> dict[str, np.ndarray]:
    """Return the ``counts``, ``tpm`` and ``log_expr`` layers of the samples in ``block``.

    Parameters
    ----------
    block
        Slice of sample indices.
    labels
        Class index of every sample (sample,).
    design
        Gene-level parameters.
    seed
        Simulation seed.

    Returns
    -------
    dict
        ``counts`` (samples, genes) int32 reads; ``tpm`` float32 TPM; ``log_expr`` float32 log2(TPM+1).
    """
    n = block.stop - block.start
    counts = np.empty((n, design.mean.size), dtype=np.int32)
    tpm = np.empty((n, design.mean.size), dtype=np.float32)
    per_kb = 1e3 / design.length
    for row, j in enumerate(range(block.start, block.stop)):
        counts[row] = _sample_row(j, int(labels[j]), design, seed)
        rate = counts[row] * per_kb
        total = rate.sum()
        tpm[row] = rate * (1e6 / total) if total > 0 else 0.0
    return {"counts": counts, "tpm": tpm, "log_expr": np.log2(tpm + np.float32(1.0))}


def library_factors(n_samples: int, seed: int) -> np.ndarray:
    """Return every sample's library factor ``s_j`` (sample,) float64 (the first draw of its generator)."""
    return np.array(
        [np.exp(rng_for(seed, SAMPLE_STREAM, j).normal(0.0, LIBRARY_SD)) for j in range(n_samples)]
    )


def simulate_cohort(
    url: str,
    *,
    n_samples: int,
    n_genes: int,
    n_classes: int,
    seed: int,
    chunks: Mapping[str, int] | None = None,
    progress: Progress | None = None,
    n_program_genes: int = 40,
    n_xor_pairs: int = 4,
    n_circle_pairs: int = 4,
    housekeeping_fraction: float = 0.1,
    overwrite: bool = False,
) -> str:
    """Simulate a GTEx/TCGA-like cohort into a new store (see the module docstring for the model).

    Parameters
    ----------
    url
        Store path or fsspec URL to create.
    n_samples, n_genes, n_classes
        Dimensions: samples, genes, tissue classes.
    seed
        Seed of every draw; equal seeds give equal stores whatever ``chunks`` or workers.
    chunks
        Stored chunk shape ``{"sample": int, "gene": int}``; generation runs one sample chunk per task.
    progress
        Progress reporting.
    n_program_genes
        Genes up in each class (linear informative genes per class).
    n_xor_pairs, n_circle_pairs
        Non-linear gene pairs per class.
    housekeeping_fraction
        Fraction of genes that are housekeeping (flat, low dispersion).
    overwrite
        Replace an existing store.

    Returns
    -------
    str
        The store URL.
    """
    check_positive(samples=n_samples, genes=n_genes, classes=n_classes)
    check_seed(seed)
    design = design_genes(
        n_genes,
        n_classes,
        seed,
        n_program_genes=n_program_genes,
        n_xor_pairs=n_xor_pairs,
        n_circle_pairs=n_circle_pairs,
        housekeeping_fraction=housekeeping_fraction,
    )
    labels = draw_labels(n_samples, n_classes, seed)
    width = max(2, len(str(n_classes - 1)))
    names = np.array([f"tissue_{k:0{width}d}" for k in range(n_classes)], dtype=object)
    gene_ids = np.array([f"SIMG{g:06d}" for g in range(n_genes)], dtype=object)
    pair_id = np.full(n_genes, -1, dtype=np.int64)
    pair_id[design.pair_a] = np.arange(len(design.pair_a))
    pair_id[design.pair_b] = np.arange(len(design.pair_b))
    informative = np.isin(design.kind, ["programme", "xor", "circle"])
    mode = np.where(design.kind == "programme", "linear", np.where(informative, "nonlinear", "none"))
    params = {
        "n_samples": n_samples,
        "n_genes": n_genes,
        "n_classes": n_classes,
        "seed": seed,
        "n_program_genes": n_program_genes,
        "n_xor_pairs": n_xor_pairs,
        "n_circle_pairs": n_circle_pairs,
        "housekeeping_fraction": housekeeping_fraction,
        "dispersion_trend": {"a1": A1, "a0": A0, "a0_housekeeping": A0_HOUSEKEEPING},
        "xor_shift": XOR_SHIFT,
        "ring_radius": RING_RADIUS,
        "jitter": JITTER,
        "library_sd": LIBRARY_SD,
    }
    variables = {
        "sample_tissue": ("sample", names[labels]),
        "sample_library_factor": ("sample", library_factors(n_samples, seed)),
        "gene_symbol": ("gene", gene_ids.copy()),
        "gene_length": ("gene", design.length),
        "truth_informative": ("gene", informative),
        "truth_mode": ("gene", mode.astype(object)),
        "truth_program": ("gene", np.where(design.kind == "programme", design.klass, -1)),
        "truth_kind": ("gene", design.kind),
        "truth_class": ("gene", design.klass),
        "truth_pair": ("gene", pair_id),
        "truth_mean": ("gene", design.mean),
        "truth_dispersion": ("gene", design.dispersion),
        "truth_log2fc": ("gene", design.log2fc),
    }
    return write_store(
        url,
        sample_ids=np.array([f"SIMS{j:06d}" for j in range(n_samples)], dtype=object),
        gene_ids=gene_ids,
        variables=variables,
        layers=LAYERS,
        attrs={
            "simulator": {"name": "cohort", "params": params},
            "label_column": "sample_tissue",
            "log_expr_source": "tpm",
        },
        make_block=lambda block: cohort_block(block, labels, design, seed),
        chunks=chunks,
        progress=progress,
        description=f"simulate cohort {n_samples} x {n_genes}",
        overwrite=overwrite,
    )
