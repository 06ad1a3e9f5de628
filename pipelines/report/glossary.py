"""What every table column of the report means: one entry per column name.

:func:`describe` gives a column's explanation (exact names in :data:`COLUMNS`, a few generated
names such as ``padj<0.05`` or ``#3`` by pattern); the report puts it in each header's tooltip and
lists every column it shows in its glossary section.
"""

from __future__ import annotations

import re

COLUMNS: dict[str, str] = {
    # data and models
    "layer": "expression layer stored (counts, tpm, log_expr, ...)",
    "dtype": "storage data type of the layer",
    "class": "class (value of the label column)",
    "samples": "number of samples",
    "model_set": "model set (one architecture and training setting, several replicates)",
    "replicate": "replicate index within the model set (a different seed and split)",
    "arch": "model architecture",
    "accuracy": "held-out (test split) accuracy: fraction of test samples classified correctly",
    "macro_f1": "held-out macro-F1: unweighted mean over classes of the per-class F1",
    "n": "number of items the row summarises (test samples, samples of the class, or items aggregated)",
    "epochs": "training epochs run (early stopping on the validation loss)",
    "best_epoch": "epoch of the lowest validation loss (whose weights were kept)",
    "best_val_loss": "lowest validation loss (cross-entropy)",
    # DE
    "result": "DE result (de/<method>/<contrast>)",
    "genes": "genes tested",
    "up": "significant genes with positive log2 fold change (higher in the tested class)",
    "down": "significant genes with negative log2 fold change",
    "method": "DE method",
    "contrast": "DE contrast (de/<method>/<tested class>_vs_<reference>)",
    "alpha": "significance level on the adjusted p-value",
    "permutations": "label permutations run",
    "observed": "genes called significant with the true labels",
    "perm_mean": "mean number of genes called significant after permuting the labels",
    "perm_max": "most genes called significant in one permutation",
    "perm_any": "fraction of permutations that called at least one gene",
    "fdr_estimate": "estimated false discovery rate: perm_mean / observed",
    "padj": "DE adjusted p-value (Benjamini-Hochberg); empty when the gene was not testable",
    "log2FoldChange": "DE log2 fold change of the tested class against the reference",
    "baseMean": "mean normalised expression over all samples",
    # top genes and consensus
    "label": "class (value of the label column)",
    "gene": "gene id",
    "symbol": "gene symbol (the id when the store has none)",
    "source": "attribution source: <explain run>:<explainer> (or a DE result)",
    "mean_abs_attr": "mean over the class's samples of |attribution| of the gene",
    "n_top": "samples of the class with the gene in their own top k",
    "frac_top": "fraction of the class's samples with the gene in their top k",
    "shared": "the gene is in the top k of at least min_samples samples of the class",
    "rank": "rank within the class by mean |attribution| (1 = largest)",
    "consensus_rank": "rank within the class over all sources: most agreement first, then lowest mean rank",
    "agreement": "number of sources with the gene in their top k of the class",
    "n_sources": "number of attribution sources (explainers x runs) counted",
    "mean_rank": "mean rank over sources, a rank beyond k (or missing) counted as k + 1",
    "sign": "direction of the signed class-mean attribution: + (every source positive: the gene pushes "
    "towards the class), - (every source negative) or mixed",
    "mean_attr": "signed class-mean attribution, averaged over sources",
    "de_call": "DE call of the gene in a contrast testing this class: yes (padj < alpha; methods that call "
    "it), no (methods that tested it) or not tested",
    "consensus top genes": "the class's consensus top genes: symbol, sign of the attribution, agreement "
    "(sources with the gene in their top k / sources) and DE call",
    # reproducibility and saturation
    "run_a": "first run (or run/model<i> for one model of a run)",
    "run_b": "second run",
    "explainer": "attribution method",
    "k": "top-k size",
    "spearman_mean": "mean over samples of the Spearman correlation of |attribution| between the two",
    "spearman_median": "median over samples of the Spearman correlation",
    "spearman_sd": "standard deviation of the Spearman correlation",
    "top_k_overlap_mean": "mean over samples of the fraction of top-k genes (by |attribution|) shared",
    "top_k_overlap_median": "median over samples of the top-k overlap",
    "top_k_overlap_sd": "standard deviation of the top-k overlap",
    "curve": "saturation curve: <explainer>/<axis>/<variant>",
    "axis": "what is aggregated: repeats (seeds), references (baselines) or models",
    "variant": "inter_model / resampled: as Zhao et al. (replicates of different models); intra_model: "
    "disjoint subsets of one pool (tends to 1, not comparable with the paper); openxai / replace: "
    "faithfulness variant",
    "n_models": "models whose replicates are compared",
    "n_pairs": "replicate pairs compared at this n",
    "exact_var_mean": "exact variance of the mean of n repeats (mean over samples and genes)",
    "max_n": "largest n on the curve",
    "spearman_at_max": "mean Spearman at the largest n",
    "saturation_n_spearman": "first n whose doubling gains less than the threshold in mean Spearman "
    "(empty: not saturated)",
    "saturation_n_top_k": "first n whose doubling gains less than the threshold in top-k overlap",
    "points": "points on the curve",
    "saturated": "yes when a doubling of n gains less than the threshold in mean Spearman",
    "saturation_n": "first n whose doubling gains less than the threshold",
    "last_gain": "mean-Spearman gain of the curve's last doubling of n",
    "between runs": "mean Spearman of |attribution| between explain runs (mean over run pairs)",
    "repeats": "saturation verdict when averaging more repeats (seeds) per sample",
    "references": "saturation verdict when averaging more references (baselines) per sample",
    "models": "saturation verdict when averaging more models",
    "verdict": "saturated (more aggregation changes little) or not saturated (aggregate more)",
    # ground truth
    "kind": "attribution or DE",
    "subset": "informative genes scored: all, or one kind (linear / nonlinear) against the non-informative",
    "n_positive": "informative genes in the subset",
    "precision_at_k": "fraction of the top k genes that are informative",
    "recall_at_k": "fraction of the informative genes in the top k",
    "auroc": "area under the ROC curve of the gene ranking (0.5 = chance)",
    "auprc": "area under the precision-recall curve (average precision; chance = fraction informative)",
    "n_called": "genes the DE result calls significant (padj < alpha)",
    "n_called_true": "informative genes among those called",
    "n_informative": "informative genes (simulator's ground truth)",
    "n_de_missed": "informative genes that no DE result calls (padj < alpha)",
    "n_recovered": "of those, genes ranked (by mean |attribution|) within the top N, N = the number of "
    "informative genes, by at least half the attribution sources",
    "auprc_attribution": "mean AUPRC over the attribution sources",
    "auprc_de": "mean AUPRC over the DE results",
    "n_attribution": "attribution sources averaged",
    "n_de": "DE results averaged",
    # faithfulness
    "pgi": "prediction gap on important genes: mean |change in the class probability| when the top k "
    "genes are perturbed (higher = more faithful)",
    "pgu": "prediction gap on unimportant genes: the same for all but the top k (lower = more faithful)",
    "random": "PGI floor: the same change for k random genes",
    "random_sd": "standard deviation of the floor over random draws",
    "random_pgu": "PGU floor: the same change for all but k random genes",
    "pgi_area": "area under the PGI curve over k (normalised)",
    "pgu_area": "area under the PGU curve over k",
    "random_area": "area under the PGI floor",
    "random_pgu_area": "area under the PGU floor",
    "n_samples": "samples evaluated",
    # biology
    "gene_set": "gene set compared: de (DE genes of the class), tissue_enhanced (>= 4x the other classes' "
    "mean), housekeeping",
    "n_a": "shared top genes of the class",
    "n_b": "genes in the gene set",
    "universe": "genes ranked",
    "overlap": "genes in both",
    "expected": "overlap expected by chance: n_a n_b / universe",
    "fold": "overlap / expected",
    "p_value": "hypergeometric P(overlap >= observed) under random drawing",
    "z": "class-mean |attribution| / its standard error over aggregated items; inf when the run kept no "
    "spread (no attr_<explainer>_std) or the spread is 0, so strength alone selected the gene",
    "hidden genes": "genes with strong, reproducible attribution that the contrast does not call",
    "classes": "classes in which the gene is hidden to DE",
    "contrasts": "DE contrasts that do not call it",
}

PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"padj<(.+)"), "genes called significant: adjusted p-value below {0}"),
    (re.compile(r"#(\d+)"), "the class's consensus top gene number {0}"),
    (re.compile(r"(.+)\.(accuracy|macro_f1|n)"), "{1} of {0}"),
]


def describe(column: str) -> str | None:
    """The explanation of a column name, or None when the glossary has none."""
    if column in COLUMNS:
        return COLUMNS[column]
    for pattern, text in PATTERNS:
        found = pattern.fullmatch(column)
        if found:
            return text.format(*found.groups())
    return None
