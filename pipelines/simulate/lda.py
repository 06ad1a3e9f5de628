"""Hierarchical LDA-style simulator: gene programmes as topics, class-dependent topic mixtures.

Generative model
----------------
Topics (gene programmes), drawn once (stream ``GENE_STREAM``):

* topics ``0 .. K-1`` are *class-specific*: topic ``k`` is a Dirichlet(``specific_concentration``)
  distribution over its own random support of ``genes_per_program`` genes (zero elsewhere);
* topics ``K .. T-1`` are *shared*: Dirichlet(``shared_concentration``) over all genes.

Classes: class ``c`` has topic concentrations ``a_c``: 1 for every shared topic, ``a_on`` = 2 for
its own specific topic and ``a_off`` = 0.05 for the other classes' specific topics. Every class
has the same total concentration, so by the aggregation property of the Dirichlet the shared
topics' weights have the same joint distribution in every class.

Sample ``j`` of class ``c`` (its own generator): ``theta_j ~ Dirichlet(a_c)``; library size
``L_j = round(exp(N(ln(library_mean), 0.3)))``; gene probabilities ``p_j = theta_j beta``;
counts ``~ Multinomial(L_j, p_j)`` (``count_model="multinomial"``) or independent
``NB(L_j p_j, dispersion)`` (``count_model="nb"``). ``log_expr = log2(CPM + 1)``.

Ground truth: a gene is class-informative iff it lies in the support of a class-specific topic;
then its expected expression ``E[L] sum_t E[theta_t | c] beta_tg`` differs across classes. Every
other gene's counts have exactly the same distribution in every class. Written: ``truth_informative``,
``truth_mode`` ("linear": a shift of class means, or "none"), ``truth_program`` (the specific topic
with the largest weight on the gene, -1), ``truth_class`` (that topic's class, -1),
``truth_log2_effect`` (log2 of the largest over the smallest expected class mean), labels
``sample_tissue``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

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

A_SHARED, A_ON, A_OFF, LIBRARY_SD = 1.0, 2.0, 0.05, 0.3


@dataclass(frozen=True)
class TopicModel:
    """Topics and class concentrations of an LDA-style cohort.

    Attributes
    ----------
    beta
        (topic, gene) float64: each row a distribution over genes.
    alpha
        (class, topic) float64 Dirichlet concentrations.
    """

    beta: np.ndarray
    alpha: np.ndarray

    def class_means(self) -> np.ndarray:
        """Return the expected gene proportions per class, (class, gene) float64."""
        weights = self.alpha / self.alpha.sum(axis=1, keepdims=True)
        return weights @ self.beta


def design_topics(
    n_genes: int,
    n_classes: int,
    n_programs: int,
    seed: int,
    *,
    genes_per_program: int,
    shared_concentration: float,
    specific_concentration: float,
) -> TopicModel:
    """Draw the topics and class concentrations (see the module docstring).

    Raises
    ------
    InputError
        When there are not more programmes than classes or a programme needs more genes than exist.
    """
    if n_programs <= n_classes:
        raise InputError(
            f"option --programs (= {n_programs}) must exceed --classes (= {n_classes}): one specific "
            f"programme per class plus at least one shared; pass --programs >= {n_classes + 1}"
        )
    if not 1 <= genes_per_program <= n_genes:
        raise InputError(
            f"genes_per_program (= {genes_per_program}) must be between 1 and --genes (= {n_genes})"
        )
    rng = rng_for(seed, GENE_STREAM)
    beta = np.zeros((n_programs, n_genes))
    for k in range(n_classes):
        support = rng.choice(n_genes, size=genes_per_program, replace=False)
        beta[k, support] = rng.dirichlet(np.full(genes_per_program, specific_concentration))
    for t in range(n_classes, n_programs):
        beta[t] = rng.dirichlet(np.full(n_genes, shared_concentration))
    alpha = np.full((n_classes, n_programs), A_SHARED)
    alpha[:, :n_classes] = A_OFF
    alpha[np.arange(n_classes), np.arange(n_classes)] = A_ON
    return TopicModel(beta=beta, alpha=alpha)


def lda_block(
    block: slice,
    labels: np.ndarray,
    model: TopicModel,
    seed: int,
    *,
    library_mean: float,
    count_model: str,
    dispersion: float,
) -> dict[str, np.ndarray]:
    """Return ``counts`` (samples, genes) int32 reads and ``log_expr`` float32 log2(CPM+1) for ``block``."""
    rows = []
    for j in range(block.start, block.stop):
        rng = rng_for(seed, SAMPLE_STREAM, j)
        theta = rng.dirichlet(model.alpha[labels[j]])
        library = int(round(np.exp(rng.normal(np.log(library_mean), LIBRARY_SD))))
        p = theta @ model.beta
        p = p / p.sum()
        if count_model == "multinomial":
            y = rng.multinomial(library, p)
        else:
            size = 1.0 / dispersion
            mu = library * p
            y = rng.negative_binomial(size, size / (size + mu))
        rows.append(np.minimum(y, INT32_MAX))
    counts = np.stack(rows).astype(np.int32)
    return {"counts": counts, "log_expr": log2_cpm1(counts)}


def simulate_lda(
    url: str,
    *,
    n_samples: int,
    n_genes: int,
    n_classes: int,
    n_programs: int,
    seed: int,
    chunks: Mapping[str, int] | None = None,
    progress: Progress | None = None,
    genes_per_program: int | None = None,
    shared_concentration: float = 0.5,
    specific_concentration: float = 5.0,
    library_mean: float | None = None,
    count_model: Literal["multinomial", "nb"] = "multinomial",
    dispersion: float = 0.05,
    overwrite: bool = False,
) -> str:
    """Simulate an LDA-style cohort into a new store (see the module docstring).

    Parameters
    ----------
    url
        Store path or fsspec URL to create.
    n_samples, n_genes, n_classes
        Dimensions.
    n_programs
        Topics in all: ``n_classes`` class-specific plus ``n_programs - n_classes`` shared.
    seed
        Seed of every draw.
    chunks, progress, overwrite
        As in :func:`pipelines.simulate.cohort.simulate_cohort`.
    genes_per_program
        Support size of each class-specific programme (default ``max(5, n_genes // (4 n_programs))``).
    shared_concentration, specific_concentration
        Dirichlet concentrations of the shared and class-specific topics over genes.
    library_mean
        Median library size in reads (default ``1000 * n_genes``).
    count_model
        ``"multinomial"`` (fixed library size) or ``"nb"`` (independent NB counts).
    dispersion
        NB dispersion when ``count_model="nb"``.

    Returns
    -------
    str
        The store URL.
    """
    check_positive(samples=n_samples, genes=n_genes, classes=n_classes, programs=n_programs)
    check_seed(seed)
    if count_model not in ("multinomial", "nb"):
        raise InputError(f"option --count-model (= {count_model!r}) must be 'multinomial' or 'nb'")
    per_program = genes_per_program or max(5, n_genes // (4 * n_programs))
    library = float(library_mean or 1000.0 * n_genes)
    model = design_topics(
        n_genes,
        n_classes,
        n_programs,
        seed,
        genes_per_program=min(per_program, n_genes),
        shared_concentration=shared_concentration,
        specific_concentration=specific_concentration,
    )
    labels = rng_for(seed, LABEL_STREAM).integers(0, n_classes, size=n_samples)
    specific = model.beta[:n_classes]
    informative = (specific > 0).any(axis=0)
    program = np.where(informative, specific.argmax(axis=0), -1)
    means = model.class_means()
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.log2(means.max(axis=0) / means.min(axis=0))
    effect = np.where(np.isfinite(effect), effect, 0.0)
    width = max(2, len(str(n_classes - 1)))
    names = np.array([f"tissue_{k:0{width}d}" for k in range(n_classes)], dtype=object)
    gene_ids = np.array([f"LDAG{g:06d}" for g in range(n_genes)], dtype=object)
    params = {
        "n_samples": n_samples,
        "n_genes": n_genes,
        "n_classes": n_classes,
        "n_programs": n_programs,
        "seed": seed,
        "genes_per_program": per_program,
        "shared_concentration": shared_concentration,
        "specific_concentration": specific_concentration,
        "library_mean": library,
        "count_model": count_model,
        "dispersion": dispersion,
        "class_concentration": {"shared": A_SHARED, "own": A_ON, "other": A_OFF},
    }
    variables = {
        "sample_tissue": ("sample", names[labels]),
        "gene_symbol": ("gene", gene_ids.copy()),
        "truth_informative": ("gene", informative),
        "truth_mode": ("gene", np.where(informative, "linear", "none").astype(object)),
        "truth_program": ("gene", program.astype(np.int64)),
        "truth_class": ("gene", program.astype(np.int64)),
        "truth_log2_effect": ("gene", effect),
    }
    return write_store(
        url,
        sample_ids=np.array([f"LDAS{j:06d}" for j in range(n_samples)], dtype=object),
        gene_ids=gene_ids,
        variables=variables,
        layers={"counts": "int32", "log_expr": "float32"},
        attrs={
            "simulator": {"name": "lda", "params": params},
            "label_column": "sample_tissue",
            "log_expr_source": "cpm",
        },
        make_block=lambda block: lda_block(
            block, labels, model, seed, library_mean=library, count_model=count_model, dispersion=dispersion
        ),
        chunks=chunks,
        progress=progress,
        description=f"simulate lda {n_samples} x {n_genes}",
        overwrite=overwrite,
    )
