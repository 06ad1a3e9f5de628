#!/usr/bin/env Rscript
# R references for gexplain's DESeq2 and edgeR (TMM) parity tests (tests/test_deseq2_r_parity.py), and edgeR QL and LRT (tests/test_edger_r_parity.py). Run with `make r-references` (Debian packages r-bioc-deseq2 and
# r-bioc-edger); writes gzipped CSVs to tests/r/references/<case>/. Counts are simulated here with
# a fixed seed, so the outputs are reproducible with the same R and package versions
# (recorded in tests/r/references/versions.csv).
suppressPackageStartupMessages({
  library(DESeq2)
  library(edgeR)
})
args <- commandArgs(trailingOnly = TRUE)
out_root <- if (length(args)) args[1] else "tests/r/references"
dir.create(out_root, recursive = TRUE, showWarnings = FALSE)

write_gz <- function(df, path) {
  con <- gzfile(path, "w")
  write.csv(df, con, row.names = TRUE)
  close(con)
}

# NB counts: genes x samples, with log-normal means, a trend dispersion 0.05 + 2/mean and
# per-gene lognormal scatter around it (as real data), an effect on a fraction of genes
simulate <- function(seed, coldata, effects, n_genes, base_meanlog = 4, base_sdlog = 1.8, disp_sdlog = 0.5) {
  set.seed(seed)
  n <- nrow(coldata)
  base <- rlnorm(n_genes, base_meanlog, base_sdlog)
  disp <- (0.05 + 2 / base) * exp(rnorm(n_genes, 0, disp_sdlog))
  sf <- exp(rnorm(n, 0, 0.25))
  eta <- matrix(0, n_genes, n)
  for (term in names(effects)) {
    lev <- sort(unique(as.character(coldata[[term]])))
    for (l in lev[-1]) {
      hit <- runif(n_genes) < effects[[term]]
      size <- rnorm(n_genes, 0, 1.2) * hit
      eta[, coldata[[term]] == l] <- eta[, coldata[[term]] == l] + size
    }
  }
  mu <- t(sf * t(base * exp(eta)))
  counts <- matrix(rnbinom(length(mu), mu = mu, size = 1 / disp), n_genes, n)
  rownames(counts) <- sprintf("g%04d", seq_len(n_genes))
  colnames(counts) <- rownames(coldata)
  counts
}

deseq2_case <- function(name, counts, coldata, design, contrasts) {
  dir <- file.path(out_root, name)
  dir.create(dir, showWarnings = FALSE)
  write_gz(as.data.frame(t(counts)), file.path(dir, "counts.csv.gz"))  # samples x genes
  write.csv(coldata, file.path(dir, "coldata.csv"))
  dds <- DESeqDataSetFromMatrix(counts, coldata, design)
  dds <- DESeq(dds, quiet = TRUE)
  mc <- mcols(dds)
  genes <- data.frame(
    baseMean = mc$baseMean, allZero = mc$allZero, dispGeneEst = mc$dispGeneEst,
    dispFit = mc$dispFit, dispMAP = mc$dispMAP, dispersion = mc$dispersion,
    dispOutlier = mc$dispOutlier, maxCooks = mc$maxCooks,
    replace = if (is.null(mc$replace)) NA else mc$replace,
    row.names = rownames(dds)
  )
  write_gz(genes, file.path(dir, "deseq2_genes.csv.gz"))
  fn <- dispersionFunction(dds)
  coefs <- attr(fn, "coefficients")
  glob <- data.frame(
    key = c("a0", "a1", "dispPriorVar", "varLogDispEsts", "n", "p"),
    value = c(coefs[1], coefs[2], attr(fn, "dispPriorVar"), attr(fn, "varLogDispEsts"),
              ncol(dds), ncol(model.matrix(design, coldata)))
  )
  write.csv(glob, file.path(dir, "deseq2_global.csv"), row.names = FALSE)
  write.csv(data.frame(size_factor = sizeFactors(dds)), file.path(dir, "size_factors.csv"))
  for (k in seq_along(contrasts)) {
    con <- contrasts[[k]]
    res <- as.data.frame(results(dds, contrast = con))
    noif <- as.data.frame(results(dds, contrast = con, independentFiltering = FALSE))
    res$padj_no_filter <- noif$padj
    write_gz(res, file.path(dir, paste0("deseq2_results_", paste(con, collapse = "_"), ".csv.gz")))
  }
  # edgeR's TMM normalisation factors of the same counts
  mm <- model.matrix(design, coldata)
  y <- DGEList(counts)
  y <- calcNormFactors(y)
  write.csv(data.frame(lib_size = y$samples$lib.size, norm_factor = y$samples$norm.factors,
                       row.names = colnames(counts)), file.path(dir, "edger_tmm.csv"))
}

# 1. small residual df (m - p = 3, DESeq2's simulation branch of the prior variance): an
#    airway-like 8-sample experiment, 4 cell lines x treated / untreated, design ~ cell + dex
cd <- data.frame(cell = rep(c("N052611", "N061011", "N080611", "N61311"), each = 2),
                 dex = rep(c("trt", "untrt"), 4), row.names = sprintf("s%d", 1:8))
cnt <- simulate(101, cd, list(cell = 0.3, dex = 0.15), 1500)
deseq2_case("small_df", cnt, cd, ~ cell + dex, list(c("dex", "trt", "untrt")))
# the same design with a wide dispersion scatter, so the simulated prior variance exceeds its 0.25 floor
cnt <- simulate(111, cd, list(cell = 0.3, dex = 0.15), 1000, disp_sdlog = 1.5)
deseq2_case("small_df_scatter", cnt, cd, ~ cell + dex, list(c("dex", "trt", "untrt")))

# 2. many levels: 6 tissues x 3 replicates, a contrast between two non-reference levels
cd <- data.frame(tissue = rep(sprintf("t%d", 1:6), each = 3), row.names = sprintf("s%02d", 1:18))
cnt <- simulate(202, cd, list(tissue = 0.2), 600)
deseq2_case("many_levels", cnt, cd, ~ tissue, list(c("tissue", "t2", "t1"), c("tissue", "t5", "t3")))

# 3. unbalanced groups (3 vs 12, so Cook's replacement runs in the larger cell), all-zero genes,
#    injected outliers
cd <- data.frame(group = c(rep("case", 3), rep("ctrl", 12)), row.names = sprintf("s%02d", 1:15))
cnt <- simulate(303, cd, list(group = 0.2), 600)
cnt[1:5, ] <- 0L
cnt[10, 8] <- as.integer(max(cnt[10, ]) * 30 + 500)
cnt[20, 12] <- as.integer(max(cnt[20, ]) * 30 + 500)
cnt[30, 2] <- as.integer(max(cnt[30, ]) * 30 + 500)
deseq2_case("unbalanced", cnt, cd, ~ group, list(c("group", "case", "ctrl")))

# 4. large counts (means around 1e5 reads), 5 vs 5
cd <- data.frame(condition = rep(c("A", "B"), each = 5), row.names = sprintf("s%02d", 1:10))
cnt <- simulate(404, cd, list(condition = 0.2), 400, base_meanlog = 10, base_sdlog = 1.2)
deseq2_case("large_counts", cnt, cd, ~ condition, list(c("condition", "B", "A")))

# R's random numbers for DESeq2's prior-variance simulation (set.seed(2), then per grid point
# rchisq(1e4, df) and rnorm(1e4)): the first values, to test gexplain's copy of R's generators
rng <- list()
for (df in 1:3) {
  set.seed(2)
  rng[[length(rng) + 1]] <- data.frame(df = df, i = 1:20, chisq = rchisq(20, df = df), norm = rnorm(20))
}
write.csv(do.call(rbind, rng), file.path(out_root, "r_rng.csv"), row.names = FALSE)
write.csv(data.frame(package = c("R", "DESeq2", "edgeR", "limma"),
                     version = c(paste(R.version$major, R.version$minor, sep = "."),
                                 as.character(packageVersion("DESeq2")),
                                 as.character(packageVersion("edgeR")),
                                 as.character(packageVersion("limma")))),
          file.path(out_root, "versions.csv"), row.names = FALSE)

# edgeR's quasi-likelihood pipeline on the same cases (tests/test_edger_r_parity.py), the standard
# route: DGEList, calcNormFactors (TMM), estimateDisp, glmQLFit (abundance trend, not robust),
# glmQLFTest per contrast, topTags' BH. Written: every step's per-gene values and the globals.
# Beside it the likelihood-ratio route of McCarthy et al. (2012), "edgeR-GLM": glmFit (tagwise
# dispersions, prior.count 0.125) and glmLRT per contrast (edger_lrt_results_*.csv.gz).
edger_case <- function(name, design, contrasts) {
  dir <- file.path(out_root, name)
  counts <- t(as.matrix(read.csv(gzfile(file.path(dir, "counts.csv.gz")), row.names = 1)))
  coldata <- read.csv(file.path(dir, "coldata.csv"), row.names = 1)
  mm <- model.matrix(design, coldata)
  y <- calcNormFactors(DGEList(counts))
  y <- estimateDisp(y, mm)
  fit <- glmQLFit(y, mm)
  lrt_fit <- glmFit(y, mm)
  genes <- data.frame(
    AveLogCPM = y$AveLogCPM, trended = y$trended.dispersion, tagwise = y$tagwise.dispersion,
    deviance = fit$deviance, df_residual_zeros = fit$df.residual.zeros,
    s2_prior = fit$var.prior, s2_post = fit$var.post, row.names = rownames(y)
  )
  write_gz(genes, file.path(dir, "edger_genes.csv.gz"))
  glob <- data.frame(
    key = c("common_dispersion", "span", "disp_prior_df", "ql_df_prior"),
    value = c(y$common.dispersion, y$span, y$prior.df, fit$df.prior[1])
  )
  write.csv(glob, file.path(dir, "edger_global.csv"), row.names = FALSE)
  for (con in contrasts) {
    vec <- setNames(numeric(ncol(mm)), colnames(mm))
    ref_level <- sort(unique(as.character(coldata[[con[1]]])))[1]
    if (con[2] != ref_level) vec[paste0(con[1], con[2])] <- 1
    if (con[3] != ref_level) vec[paste0(con[1], con[3])] <- -1
    res <- glmQLFTest(fit, contrast = vec)
    tab <- topTags(res, n = Inf, sort.by = "none")$table
    write_gz(tab[, c("logFC", "logCPM", "F", "PValue", "FDR")],
             file.path(dir, paste0("edger_results_", paste(con, collapse = "_"), ".csv.gz")))
    lrt <- topTags(glmLRT(lrt_fit, contrast = vec), n = Inf, sort.by = "none")$table
    write_gz(lrt[, c("logFC", "logCPM", "LR", "PValue", "FDR")],
             file.path(dir, paste0("edger_lrt_results_", paste(con, collapse = "_"), ".csv.gz")))
  }
}
edger_case("small_df", ~ cell + dex, list(c("dex", "trt", "untrt")))
edger_case("small_df_scatter", ~ cell + dex, list(c("dex", "trt", "untrt")))
edger_case("many_levels", ~ tissue, list(c("tissue", "t2", "t1"), c("tissue", "t5", "t3")))
edger_case("unbalanced", ~ group, list(c("group", "case", "ctrl")))
edger_case("large_counts", ~ condition, list(c("condition", "B", "A")))

# Sabbatini & Manganaro (2023) dataset A (Figure 2): gexplain's simulated counts (seed 0, 2,000
# samples x 20 variables, written by tests/r/sabbatini_counts.py, not simulated here), ~ group.
# edgeR's QL F test and the paper's "edgeR-GLM" LRT with TMM, the LRT with DESeq2's size factors
# as normalisation factors, and DESeq2's padj (tests/test_sabbatini_figures.py).
sabbatini_case <- function(name) {
  dir <- file.path(out_root, name)
  if (!file.exists(file.path(dir, "counts.csv.gz"))) return(invisible(NULL))
  counts <- t(as.matrix(read.csv(gzfile(file.path(dir, "counts.csv.gz")), row.names = 1)))
  coldata <- read.csv(file.path(dir, "coldata.csv"), row.names = 1)
  coldata$group <- factor(coldata$group)
  mm <- model.matrix(~ group, coldata)
  y <- estimateDisp(calcNormFactors(DGEList(counts)), mm)
  ql <- topTags(glmQLFTest(glmQLFit(y, mm), coef = 2), n = Inf, sort.by = "none")$table
  lrt <- topTags(glmLRT(glmFit(y, mm), coef = 2), n = Inf, sort.by = "none")$table
  dds <- DESeq(DESeqDataSetFromMatrix(counts, coldata, ~ group), quiet = TRUE)
  nf <- sizeFactors(dds) / colSums(counts)
  y_ratio <- DGEList(counts)
  y_ratio$samples$norm.factors <- nf / exp(mean(log(nf)))
  y_ratio <- estimateDisp(y_ratio, mm)
  lrt_ratio <- topTags(glmLRT(glmFit(y_ratio, mm), coef = 2), n = Inf, sort.by = "none")$table
  res <- results(dds, contrast = c("group", "group_1", "group_0"), alpha = 0.05)
  out <- data.frame(
    ql_logFC = ql$logFC, ql_F = ql$F, ql_PValue = ql$PValue, ql_FDR = ql$FDR,
    lrt_logFC = lrt$logFC, lrt_LR = lrt$LR, lrt_PValue = lrt$PValue, lrt_FDR = lrt$FDR,
    lrt_ratio_PValue = lrt_ratio$PValue, lrt_ratio_FDR = lrt_ratio$FDR,
    deseq2_padj = res$padj, row.names = rownames(counts)
  )
  write.csv(out, file.path(dir, "sabbatini_r.csv"))
}
sabbatini_case("sabbatini_a")
