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

Pathway structure (``structure="pathways"``; Bontonou et al., the IG-limitations study)
-----------------------------------------------------------------------------------------
The study simulates 33 classes and 15,000 genes grouped into 1,500 pathways of 10 genes, with a
class-specific up-weighting of 37 pathways in the Dirichlet prior, 1.5 M reads per sample and
9,900 samples. ``preset="bontonou"`` (:data:`PRESETS`) is their simulator,
``Simulation/Data/simulate_data.py`` of github.com/mbonto/XAI_for_genomics (``SIMU1``):

* gene ``g`` belongs to pathway ``g // genes_per_pathway`` (consecutive blocks, l.48 ``case = 10``);
  its share inside the pathway is ``w ~ Dirichlet(within_concentration)`` over the pathway's
  genes (theirs 5, l.48 ``* 5`` and l.55), redrawn for every up-weighted pathway until each share
  is at least ``min_share`` (theirs ``0.1 / case`` = 0.01, l.131 and l.136-141) (stream
  ``GENE_STREAM``);
* class ``c`` up-weights ``upweighted_per_class`` pathways: ``pathway_layout="blocks"`` gives it
  the consecutive block ``[P c, P (c + 1))`` (theirs, l.101-103: disjoint across classes),
  ``"random"`` draws them without replacement, each class independently (they may overlap);
  ``alpha_c = pathway_concentration`` for every pathway and ``upweight`` for its own (theirs
  ``1 * 4`` and ``2 * 4``, l.88, l.92 ``cls_gap = 2``, l.107 ``* 4.``);
* sample ``j`` of class ``c``: ``theta_j ~ Dirichlet(alpha_c)`` over pathways, gene
  probabilities ``p_jg = theta_j[pathway(g)] w_g``, ``L_j`` reads, counts
  ``~ Multinomial(L_j, p_j)`` (or NB); theirs draw reads per pathway and then per gene (l.31-35),
  the same law by the multinomial's composition. ``L_j`` is log-normal with sd ``library_sd``
  around ``reads_per_sample``, or the constant ``reads_per_sample`` with ``library_sd = 0``
  (theirs: 1.5 M, l.9).

Ground truth: a gene is informative iff its pathway is up-weighted by at least one class but not
by all (its expected share then differs between classes). Written: ``truth_informative``,
``truth_pathway`` (its pathway), ``truth_class`` (lowest class up-weighting its pathway, -1),
``truth_n_classes`` (how many classes up-weight it), ``truth_log2_effect``, ``truth_mode``; the
up-weighted pathways of every class are in ``attrs['simulator']['params']['upweighted']``.
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

A_SHARED, A_ON, A_OFF, LIBRARY_SD = 1.0, 2.0, 0.05, 0.3
A_PATHWAY = 1.0
# the IG-limitations study's sizes (Bontonou et al.)
PathwayLayout = Literal["random", "blocks"]
# Bontonou et al.'s simulator (mbonto/XAI_for_genomics, Simulation/Data/simulate_data.py, SIMU1)
PRESETS: dict[str, dict[str, int | float | str]] = {
    "bontonou": {
        "n_samples": 9900,  # the paper's 9,900 samples (their code: int(n_sample / n_class) per class, l.19)
        "n_classes": 33,  # l.63
        "n_pathways": 1500,  # l.82
        "genes_per_pathway": 10,  # l.111 case = 10
        "upweighted_per_class": 37,  # l.94 P = 37
        "reads_per_sample": 1.5e6,  # l.9 n_read = 1500000, the same for every sample
        "library_sd": 0.0,
        "pathway_concentration": 4.0,  # l.88 (1.) times l.107 (4.)
        "upweight": 8.0,  # l.92 cls_gap = 2. times l.107 (4.)
        "within_concentration": 5.0,  # l.48 eta = ... * 5
        "min_share": 0.01,  # l.131 min_prop = 0.1 / case
        "pathway_layout": "blocks",  # l.102 alpha[P * c + p]
    }
}

LAYERS: dict[str, str] = {"counts": "int32", "log_expr": "float32"}  # the (sample, gene) layers it writes


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

    def gene_probabilities(self, theta: np.ndarray) -> np.ndarray:
        """Gene proportions (gene,) of a sample with topic weights ``theta`` (topic,)."""
        return theta @ self.beta


@dataclass(frozen=True)
class PathwayModel:
    """Pathways and class concentrations of a pathway-structured LDA cohort.

    Attributes
    ----------
    pathway
        (gene,) int64 pathway of each gene.
    within
        (gene,) float64 share of each gene inside its pathway (sums to 1 per pathway).
    alpha
        (class, pathway) float64 Dirichlet concentrations.
    upweighted
        (class, upweighted_per_class) int64 pathways each class up-weights.
    """

    pathway: np.ndarray
    within: np.ndarray
    alpha: np.ndarray
    upweighted: np.ndarray

    def class_means(self) -> np.ndarray:
        """Return the expected gene proportions per class, (class, gene) float64."""
        weights = self.alpha / self.alpha.sum(axis=1, keepdims=True)
        return weights[:, self.pathway] * self.within[None, :]

    def gene_probabilities(self, theta: np.ndarray) -> np.ndarray:
        """Gene proportions (gene,) of a sample with pathway weights ``theta`` (pathway,)."""
        return theta[self.pathway] * self.within


MAX_SHARE_REDRAWS = 10_000


def design_pathways(
    n_classes: int,
    n_pathways: int,
    genes_per_pathway: int,
    upweighted_per_class: int,
    upweight: float,
    seed: int,
    *,
    pathway_concentration: float = A_PATHWAY,
    within_concentration: float = 1.0,
    min_share: float = 0.0,
    pathway_layout: PathwayLayout = "random",
) -> PathwayModel:
    """Draw the within-pathway shares and each class's up-weighted pathways (module docstring).

    Parameters
    ----------
    n_classes, n_pathways, genes_per_pathway, upweighted_per_class
        Sizes.
    upweight, pathway_concentration
        Dirichlet concentration of a class's own pathways and of every other pathway.
    seed
        Seed.
    within_concentration
        Symmetric Dirichlet concentration of the gene shares inside a pathway.
    min_share
        Shares of every up-weighted pathway are redrawn until each is at least this (0: never).
    pathway_layout
        ``"blocks"``: class ``c`` up-weights pathways ``[P c, P (c + 1))``; ``"random"``: drawn
        per class without replacement.

    Raises
    ------
    InputError
        When a class would up-weight more pathways than exist, the blocks do not fit, or the
        floor cannot be met.
    """
    if not 1 <= upweighted_per_class <= n_pathways:
        raise InputError(
            f"option --upweighted-per-class (= {upweighted_per_class}) must be between 1 and "
            f"--n-pathways (= {n_pathways})"
        )
    if not upweight > 0 or not pathway_concentration > 0 or not within_concentration > 0:
        raise InputError(
            f"Dirichlet concentrations must be positive (upweight {upweight}, pathway_concentration "
            f"{pathway_concentration}, within_concentration {within_concentration})"
        )
    if min_share * genes_per_pathway >= 1:
        raise InputError(
            f"min_share (= {min_share}) times genes per pathway (= {genes_per_pathway}) must be below 1"
        )
    rng = rng_for(seed, GENE_STREAM)
    within = rng.dirichlet(np.full(genes_per_pathway, within_concentration), size=n_pathways)
    pathway = np.repeat(np.arange(n_pathways, dtype=np.int64), genes_per_pathway)
    if pathway_layout == "blocks":
        if n_classes * upweighted_per_class > n_pathways:
            raise InputError(
                f"pathway_layout 'blocks' needs classes x --upweighted-per-class (= {n_classes} x "
                f"{upweighted_per_class}) <= --n-pathways (= {n_pathways})"
            )
        up = (np.arange(n_classes)[:, None] * upweighted_per_class + np.arange(upweighted_per_class)).astype(
            np.int64
        )
    else:
        up = np.stack(
            [
                np.sort(rng.choice(n_pathways, size=upweighted_per_class, replace=False))
                for _ in range(n_classes)
            ]
        ).astype(np.int64)
    if min_share > 0:
        for k in np.unique(up):
            for _ in range(MAX_SHARE_REDRAWS):
                if within[k].min() >= min_share:
                    break
                within[k] = rng.dirichlet(np.full(genes_per_pathway, within_concentration))
            else:
                raise InputError(
                    f"pathway {k}: no gene shares >= min_share (= {min_share}) in {MAX_SHARE_REDRAWS} draws; "
                    "lower min_share or raise within_concentration"
                )
    alpha = np.full((n_classes, n_pathways), float(pathway_concentration))
    alpha[np.arange(n_classes)[:, None], up] = upweight
    return PathwayModel(pathway=pathway, within=within.reshape(-1), alpha=alpha, upweighted=up)


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
    model: TopicModel | PathwayModel,
    seed: int,
    *,
    library_mean: float,
    count_model: str,
    dispersion: float,
    library_sd: float = LIBRARY_SD,
) -> dict[str, np.ndarray]:
    """Return ``counts`` (samples, genes) int32 reads and ``log_expr`` float32 log2(CPM+1) for ``block``.

    ``library_sd`` is the log-normal spread of the read depth around ``library_mean`` (0: every
    sample has ``library_mean`` reads).
    """
    rows = []
    for j in range(block.start, block.stop):
        rng = rng_for(seed, SAMPLE_STREAM, j)
        theta = rng.dirichlet(model.alpha[labels[j]])
        depth = library_mean if library_sd == 0 else np.exp(rng.normal(np.log(library_mean), library_sd))
        library = int(round(depth))
        p = model.gene_probabilities(theta)
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


def _pathway_truth(model: PathwayModel) -> dict[str, tuple[str, np.ndarray]]:
    """Truth variables of a pathway cohort (see the module docstring)."""
    n_classes, n_pathways = model.alpha.shape
    up = np.zeros((n_classes, n_pathways), dtype=bool)
    up[np.arange(n_classes)[:, None], model.upweighted] = True
    n_up = up.sum(axis=0)[model.pathway]
    informative = (n_up > 0) & (n_up < n_classes)
    first = np.where(up.any(axis=0), up.argmax(axis=0), -1)[model.pathway]
    return {
        "truth_informative": ("gene", informative),
        "truth_mode": ("gene", np.where(informative, "linear", "none").astype(object)),
        "truth_pathway": ("gene", model.pathway),
        "truth_class": ("gene", np.where(informative, first, -1).astype(np.int64)),
        "truth_n_classes": ("gene", n_up.astype(np.int64)),
    }


def _program_truth(model: TopicModel, n_classes: int) -> dict[str, tuple[str, np.ndarray]]:
    """Truth variables of a programme cohort (see the module docstring)."""
    specific = model.beta[:n_classes]
    informative = (specific > 0).any(axis=0)
    program = np.where(informative, specific.argmax(axis=0), -1).astype(np.int64)
    return {
        "truth_informative": ("gene", informative),
        "truth_mode": ("gene", np.where(informative, "linear", "none").astype(object)),
        "truth_program": ("gene", program),
        "truth_class": ("gene", program),
    }


def simulate_lda(
    url: str,
    *,
    n_samples: int,
    n_genes: int,
    n_classes: int,
    n_programs: int = 8,
    seed: int,
    chunks: Mapping[str, int] | None = None,
    progress: Progress | None = None,
    genes_per_program: int | None = None,
    shared_concentration: float = 0.5,
    specific_concentration: float = 5.0,
    library_mean: float | None = None,
    count_model: Literal["multinomial", "nb"] = "multinomial",
    dispersion: float = 0.05,
    structure: Literal["programs", "pathways"] = "programs",
    n_pathways: int = 1500,
    genes_per_pathway: int = 10,
    upweighted_per_class: int = 37,
    upweight: float = 10.0,
    pathway_concentration: float = A_PATHWAY,
    within_concentration: float = 1.0,
    min_share: float = 0.0,
    pathway_layout: PathwayLayout = "random",
    library_sd: float = LIBRARY_SD,
    overwrite: bool = False,
) -> str:
    """Simulate an LDA-style cohort into a new store (see the module docstring).

    Parameters
    ----------
    url
        Store path or fsspec URL to create.
    n_samples, n_genes, n_classes
        Dimensions (``pathways``: ``n_genes`` must equal ``n_pathways * genes_per_pathway``).
    n_programs
        ``programs``: topics in all, ``n_classes`` class-specific plus shared ones.
    seed
        Seed of every draw.
    chunks, progress, overwrite
        As in :func:`gexplain.pipelines.simulate.cohort.simulate_cohort`.
    genes_per_program
        Support size of each class-specific programme (default ``max(5, n_genes // (4 n_programs))``).
    shared_concentration, specific_concentration
        Dirichlet concentrations of the shared and class-specific topics over genes.
    library_mean
        Median library size in reads per sample (default ``1000 * n_genes``).
    count_model
        ``"multinomial"`` (fixed library size) or ``"nb"`` (independent NB counts).
    dispersion
        NB dispersion when ``count_model="nb"``.
    structure
        ``"programs"`` (class-specific and shared topics) or ``"pathways"`` (Bontonou et al.).
    n_pathways, genes_per_pathway
        ``pathways``: number of pathways and genes in each.
    upweighted_per_class, upweight
        ``pathways``: pathways each class up-weights in its Dirichlet prior and their
        concentration.
    pathway_concentration, within_concentration, min_share, pathway_layout
        ``pathways``: the other pathways' concentration, the gene-share law and its floor, and
        how classes pick their pathways (:func:`design_pathways`).
    library_sd
        Log-normal spread of the read depth (0: constant ``library_mean``).

    Returns
    -------
    str
        The store URL.
    """
    check_positive(samples=n_samples, genes=n_genes, classes=n_classes, programs=n_programs)
    check_seed(seed)
    if count_model not in ("multinomial", "nb"):
        raise InputError(f"option --count-model (= {count_model!r}) must be 'multinomial' or 'nb'")
    if structure not in ("programs", "pathways"):
        raise InputError(f"option --structure (= {structure!r}) must be 'programs' or 'pathways'")
    library = float(library_mean or 1000.0 * n_genes)
    params: dict[str, object] = {
        "structure": structure,
        "n_samples": n_samples,
        "n_genes": n_genes,
        "n_classes": n_classes,
        "seed": seed,
        "library_mean": library,
        "count_model": count_model,
        "dispersion": dispersion,
        "library_sd": library_sd,
    }
    model: TopicModel | PathwayModel
    if structure == "pathways":
        check_positive(pathways=n_pathways, genes_per_pathway=genes_per_pathway)
        if n_genes != n_pathways * genes_per_pathway:
            raise InputError(
                f"option --genes (= {n_genes}) must equal --n-pathways x --genes-per-pathway "
                f"(= {n_pathways} x {genes_per_pathway} = {n_pathways * genes_per_pathway})"
            )
        model = design_pathways(
            n_classes,
            n_pathways,
            genes_per_pathway,
            upweighted_per_class,
            upweight,
            seed,
            pathway_concentration=pathway_concentration,
            within_concentration=within_concentration,
            min_share=min_share,
            pathway_layout=pathway_layout,
        )
        truth = _pathway_truth(model)
        params.update(
            n_pathways=n_pathways,
            genes_per_pathway=genes_per_pathway,
            upweighted_per_class=upweighted_per_class,
            upweight=upweight,
            pathway_concentration=pathway_concentration,
            within_concentration=within_concentration,
            min_share=min_share,
            pathway_layout=pathway_layout,
            upweighted=model.upweighted.tolist(),
            reference="Bontonou et al., LDA simulation of the IG-limitations study",
        )
    else:
        per_program = genes_per_program or max(5, n_genes // (4 * n_programs))
        model = design_topics(
            n_genes,
            n_classes,
            n_programs,
            seed,
            genes_per_program=min(per_program, n_genes),
            shared_concentration=shared_concentration,
            specific_concentration=specific_concentration,
        )
        truth = _program_truth(model, n_classes)
        params.update(
            n_programs=n_programs,
            genes_per_program=per_program,
            shared_concentration=shared_concentration,
            specific_concentration=specific_concentration,
            class_concentration={"shared": A_SHARED, "own": A_ON, "other": A_OFF},
        )
    labels = rng_for(seed, LABEL_STREAM).integers(0, n_classes, size=n_samples)
    means = model.class_means()
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.log2(means.max(axis=0) / means.min(axis=0))
    effect = np.where(np.isfinite(effect), effect, 0.0)
    width = max(2, len(str(n_classes - 1)))
    names = np.array([f"tissue_{k:0{width}d}" for k in range(n_classes)], dtype=object)
    gene_ids = np.array([f"LDAG{g:06d}" for g in range(n_genes)], dtype=object)
    variables = {
        "sample_tissue": ("sample", names[labels]),
        "gene_symbol": ("gene", gene_ids.copy()),
        **truth,
        "truth_log2_effect": ("gene", effect),
    }
    return write_store(
        url,
        sample_ids=np.array([f"LDAS{j:06d}" for j in range(n_samples)], dtype=object),
        gene_ids=gene_ids,
        variables=variables,
        layers=LAYERS,
        attrs={
            "simulator": {"name": "lda", "params": params},
            "label_column": "sample_tissue",
            "log_expr_source": "cpm",
        },
        make_block=lambda block: lda_block(
            block,
            labels,
            model,
            seed,
            library_mean=library,
            count_model=count_model,
            dispersion=dispersion,
            library_sd=library_sd,
        ),
        chunks=chunks,
        progress=progress,
        description=f"simulate lda {n_samples} x {n_genes}",
        overwrite=overwrite,
    )
