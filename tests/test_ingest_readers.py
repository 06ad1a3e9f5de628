"""Round trips of every ingest reader on small files written by the tests.

The reference is always the data the test itself wrote (or pandas/anndata reading the same file),
never the ingest code's output.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from gexplain.storage.ingest import ingest
from gexplain.storage.store import layer_chunks, open_store

CHUNKS = {"sample": 4, "gene": 4}
SMALL = {"buffer_bytes": 1, "parse_bytes": 1}  # one row per block and per write: many blocks


def nb_counts(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Negative-binomial counts (mean ~ 50, some zeros)."""
    return rng.negative_binomial(2, 2 / (2 + 50), size=shape)


def write_gct(path: Path, gene_ids, symbols, samples, values: np.ndarray, *, dims=None) -> Path:
    """Write a GCT 1.2 file (genes x samples), gzip when the name ends with .gz."""
    opener = gzip.open if path.name.endswith(".gz") else open
    n_g, n_s = dims or values.shape
    with opener(path, "wt") as fh:
        fh.write(f"#1.2\n{n_g}\t{n_s}\nName\tDescription\t" + "\t".join(samples) + "\n")
        for gid, sym, row in zip(gene_ids, symbols, values, strict=True):
            fh.write(f"{gid}\t{sym}\t" + "\t".join(str(v) for v in row) + "\n")
    return path


def write_gtex_sheet(path: Path, samples, tissues, details, rin) -> Path:
    uberon = ["0002190" if i % 2 else "0001157" for i in range(len(samples))]
    pd.DataFrame(
        {"SAMPID": samples, "SMTS": tissues, "SMTSD": details, "SMRIN": rin, "SMUBRID": uberon}
    ).to_csv(path, sep="\t", index=False)
    return path


STAR_SUMMARY = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")


def write_gdc(
    root: Path, samples, gene_ids, gene_names, counts: np.ndarray, tpm: np.ndarray, sample_types
) -> tuple[Path, Path, list[Path]]:
    """Write a GDC-like download (one sub-directory per file) and its sample sheet."""
    files = []
    rows = []
    for k, sample in enumerate(samples):
        file_id = f"{k:08d}-aaaa-bbbb-cccc-{k:012d}"
        name = f"{file_id}.rna_seq.augmented_star_gene_counts.tsv"
        path = root / file_id / name
        path.parent.mkdir(parents=True)
        lines = [
            "# gene-model: GENCODE v36",
            "gene_id\tgene_name\tgene_type\tunstranded\tstranded_first\tstranded_second\t"
            "tpm_unstranded\tfpkm_unstranded\tfpkm_uq_unstranded",
        ]
        lines += [f"{s}\t\t\t{1000 + k}\t{900 + k}\t{800 + k}\t\t\t" for s in STAR_SUMMARY]
        for j, gid in enumerate(gene_ids):
            c = counts[k, j]
            lines.append(
                f"{gid}\t{gene_names[j]}\tprotein_coding\t{c}\t{c // 2}\t{c - c // 2}\t{tpm[k, j]:.4f}\t1.0\t1.0"
            )
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
        rows.append(
            {
                "File ID": file_id,
                "File Name": name,
                "Data Category": "Transcriptome Profiling",
                "Data Type": "Gene Expression Quantification",
                "Project ID": "TCGA-BRCA",
                "Case ID": sample[:12],
                "Sample ID": sample,
                "Sample Type": sample_types[k],
            }
        )
    sheet = root / "gdc_sample_sheet.tsv"
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return root, sheet, files


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_gct_gzip_with_gtex_sheet_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    samples = [f"GTEX-{i:04d}-0011-R1a-SM-{i}" for i in range(7)]
    genes = [f"ENSG{i:011d}.{i % 5 + 1}" for i in range(9)]
    symbols = [f"GENE{i}" for i in range(9)]
    truth = nb_counts(rng, (9, 7))  # genes x samples, as in the file
    gct = write_gct(tmp_path / "reads.gct.gz", genes, symbols, samples, truth)
    tissues = ["Lung", "Lung", "Blood", "Blood", "Liver", "Lung", "Blood"]
    sheet = write_gtex_sheet(
        tmp_path / "attr.txt", samples, tissues, [t + " - detail" for t in tissues], np.linspace(6, 9, 7)
    )
    report = ingest(gct, str(tmp_path / "s.zarr"), sample_sheets=sheet, chunks=CHUNKS, **SMALL)
    ds = open_store(report.url)
    np.testing.assert_array_equal(ds["counts"].values, truth.T)
    assert ds["counts"].dtype == np.int32
    assert list(ds["sample"].values) == samples
    assert list(ds["gene"].values) == [g.split(".")[0] for g in genes]
    assert list(ds["gene_id_versioned"].values) == genes
    assert list(ds["gene_symbol"].values) == symbols
    assert np.isnan(ds["gene_length"].values).all()
    assert list(ds["sample_tissue"].values) == tissues
    assert list(ds["sample_smts"].values) == tissues
    assert list(ds["sample_tissue_detail"].values) == [t + " - detail" for t in tissues]
    np.testing.assert_allclose(ds["sample_smrin"].values, np.linspace(6, 9, 7))
    assert list(ds["sample_smubrid"].values) == ["0002190" if i % 2 else "0001157" for i in range(7)]
    assert ds.attrs["label_column"] == "sample_tissue"
    hashes = {Path(s["path"]).name: s["sha256"] for s in ds.attrs["sources"]}
    assert hashes == {"reads.gct.gz": sha256(gct), "attr.txt": sha256(sheet)}
    assert ds.attrs["gexplain_version"] and ds.attrs["created"]
    assert layer_chunks(ds) == CHUNKS


def test_gct_plain_tpm_and_gene_lengths(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    truth = np.round(rng.gamma(1.0, 30.0, size=(6, 5)), 3)
    genes = [f"ENSG{i:011d}.3" for i in range(6)]
    gct = write_gct(tmp_path / "tpm.gct", genes, ["A", "B", "C", "D", "E", "F"], list("pqrst"), truth)
    lengths = tmp_path / "lengths.tsv"
    pd.DataFrame({"gene_id": genes[:4], "length": [1000, 2500.5, 300, 4000]}).to_csv(
        lengths, sep="\t", index=False
    )
    report = ingest(gct, str(tmp_path / "t.zarr"), values="tpm", gene_lengths=lengths, chunks=CHUNKS)
    ds = open_store(report.url)
    assert ds["tpm"].dtype == np.float32
    np.testing.assert_allclose(ds["tpm"].values, truth.T.astype(np.float32))
    np.testing.assert_array_equal(ds["gene_length"].values, [1000, 2500.5, 300, 4000, np.nan, np.nan])


@pytest.mark.parametrize("column,layer", [("unstranded", "counts"), ("tpm_unstranded", "tpm")])
def test_gdc_directory_round_trip(tmp_path: Path, column: str, layer: str) -> None:
    rng = np.random.default_rng(3)
    samples = [f"TCGA-A1-A0S{i}-01A" for i in range(5)]
    genes = [f"ENSG{i:011d}.{i + 10}" for i in range(8)] + ["ENSG00000002586.20_PAR_Y"]
    names = [f"SYM{i}" for i in range(9)]
    counts = nb_counts(rng, (5, 9))
    tpm = rng.gamma(1.0, 10.0, size=(5, 9))
    types = ["Primary Tumor"] * 3 + ["Solid Tissue Normal"] * 2
    root, sheet, files = write_gdc(tmp_path / "gdc", samples, genes, names, counts, tpm, types)
    report = ingest(
        root, str(tmp_path / "g.zarr"), sample_sheets=sheet, column=column, chunks=CHUNKS, **SMALL
    )
    ds = open_store(report.url)
    expected = counts if layer == "counts" else np.round(tpm, 4)
    np.testing.assert_allclose(ds[layer].values, expected, rtol=1e-6)
    assert list(ds["sample"].values) == samples
    stripped = [g.split(".")[0] for g in genes[:8]] + ["ENSG00000002586_PAR_Y"]
    assert list(ds["gene"].values) == stripped  # the four N_* summary rows are dropped
    assert list(ds["gene_id_versioned"].values) == genes
    assert list(ds["gene_symbol"].values) == names
    assert list(ds["gene_type"].values) == ["protein_coding"] * 9
    assert list(ds["sample_sample_type"].values) == types
    assert list(ds["sample_project_id"].values) == ["TCGA-BRCA"] * 5
    assert ds.attrs["label_column"] == "sample_sample_type"
    assert ds.attrs["ingest"]["gene_model"] == "gene-model: GENCODE v36"
    recorded = {s["path"]: s["sha256"] for s in ds.attrs["sources"]}
    for f in [*files, sheet]:
        assert recorded[str(f.resolve())] == sha256(f)


def _matrix_case(rng: np.random.Generator) -> tuple[list[str], list[str], np.ndarray, pd.DataFrame]:
    samples = [f"S{i}" for i in range(6)]
    genes = [f"ENSG{i:011d}.1" for i in range(10)]
    counts = nb_counts(rng, (6, 10))
    sheet = pd.DataFrame({"sample": samples, "status": ["case", "ctrl"] * 3, "age": np.arange(6) + 40})
    return samples, genes, counts, sheet


@pytest.mark.parametrize("suffix", ["csv", "tsv.gz", "parquet"])
@pytest.mark.parametrize("layout", ["genes-x-samples", "samples-x-genes"])
def test_matrix_orientation_auto_detected(tmp_path: Path, suffix: str, layout: str) -> None:
    rng = np.random.default_rng(4)
    samples, genes, counts, sheet = _matrix_case(rng)
    frame = (
        pd.DataFrame(counts.T, index=pd.Index(genes, name="gene_id"), columns=samples)
        if layout == "genes-x-samples"
        else pd.DataFrame(counts, index=pd.Index(samples, name="sample"), columns=genes)
    )
    path = tmp_path / f"m.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="," if suffix == "csv" else "\t")
    sheet_path = tmp_path / "sheet.csv"
    sheet.to_csv(sheet_path, index=False)
    report = ingest(path, str(tmp_path / "m.zarr"), sample_sheets=sheet_path, chunks=CHUNKS, **SMALL)
    ds = open_store(report.url)
    assert ds.attrs["ingest"]["orientation"] == layout
    np.testing.assert_array_equal(ds["counts"].values, counts)
    assert list(ds["sample_status"].values) == ["case", "ctrl"] * 3
    np.testing.assert_array_equal(ds["sample_age"].values, np.arange(6) + 40)
    # without a sheet, Ensembl-like ids decide; an explicit orientation overrides detection
    again = ingest(path, str(tmp_path / "n.zarr"), chunks=CHUNKS)
    np.testing.assert_array_equal(open_store(again.url)["counts"].values, counts)


def test_matrix_orientation_override_and_symbol_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(4, 3))  # 4 genes (symbols) x 3 samples: nothing to detect from
    path = tmp_path / "m.tsv"
    with open(path, "w") as fh:
        fh.write("id\tgene_symbol\ta\tb\tc\n")
        for i, row in enumerate(values):
            fh.write(f"g{i}\tSYM{i}\t" + "\t".join(f"{v:.6f}" for v in row) + "\n")
    report = ingest(path, str(tmp_path / "m.zarr"), values="expr")
    ds = open_store(report.url)
    assert list(ds["gene_symbol"].values) == [f"SYM{i}" for i in range(4)]
    np.testing.assert_allclose(ds["expr"].values, values.T, atol=1e-6)
    plain = tmp_path / "p.csv"
    pd.DataFrame(values, index=[f"g{i}" for i in range(4)], columns=list("abc")).to_csv(plain)
    flipped = ingest(plain, str(tmp_path / "f.zarr"), values="expr", orientation="samples-x-genes")
    ds = open_store(flipped.url)
    assert list(ds["sample"].values) == ["g0", "g1", "g2", "g3"]
    np.testing.assert_allclose(ds["expr"].values, values)


@pytest.mark.parametrize("storage", ["dense", "csr", "csc"])
def test_h5ad_round_trip(tmp_path: Path, storage: str) -> None:
    rng = np.random.default_rng(6)
    counts = nb_counts(rng, (7, 5)).astype(np.float32)
    counts[counts < 30] = 0  # sparse-ish
    obs = pd.DataFrame(
        {"tissue": pd.Categorical(["a", "b", "a", "b", "a", "b", "a"]), "depth": rng.uniform(size=7)},
        index=[f"cell{i}" for i in range(7)],
    )
    var = pd.DataFrame(
        {"gene_ids": [f"ENSG{i:011d}.2" for i in range(5)], "chrom": ["1", "1", "2", "X", "Y"]},
        index=[f"SYM{i}" for i in range(5)],
    )
    matrix = {"dense": counts, "csr": sp.csr_matrix(counts), "csc": sp.csc_matrix(counts)}[storage]
    adata = anndata.AnnData(X=np.log1p(counts), obs=obs, var=var, layers={"counts": matrix})
    path = tmp_path / "a.h5ad"
    adata.write_h5ad(path)
    report = ingest(path, str(tmp_path / "a.zarr"), layer="counts", chunks={"sample": 2, "gene": 2}, **SMALL)
    ds = open_store(report.url)
    reference = anndata.read_h5ad(path)
    np.testing.assert_array_equal(ds["counts"].values, reference.to_df(layer="counts").to_numpy())
    assert list(ds["sample"].values) == list(reference.obs_names)
    assert list(ds["gene"].values) == [g.split(".")[0] for g in reference.var["gene_ids"]]
    assert list(ds["gene_symbol"].values) == list(reference.var_names)
    assert list(ds["gene_chrom"].values) == list(reference.var["chrom"])
    assert list(ds["sample_tissue"].values) == list(reference.obs["tissue"].astype(str))
    np.testing.assert_allclose(ds["sample_depth"].values, reference.obs["depth"].to_numpy())
    x = ingest(path, str(tmp_path / "x.zarr"), values="log_expr")
    np.testing.assert_allclose(open_store(x.url)["log_expr"].values, reference.X, rtol=1e-6)


def test_memory_store_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    truth = nb_counts(rng, (5, 4))
    gct = write_gct(
        tmp_path / "m.gct", [f"ENSG{i:011d}.1" for i in range(5)], list("abcde"), list("wxyz"), truth
    )
    report = ingest(gct, "memory://ingest-tests/readers.zarr", chunks=CHUNKS)
    assert report.url == "memory://ingest-tests/readers.zarr"
    np.testing.assert_array_equal(open_store(report.url)["counts"].values, truth.T)


def test_shared_tcga_brca_log2tpm(shared_data: Path, tmp_path: Path) -> None:
    matrix = shared_data / "tcga-brca" / "divergence_breastTCGA_log2tpm.csv"
    sheet = shared_data / "tcga-brca" / "divergence_breastTCGA_samples.csv"
    report = ingest(matrix, str(tmp_path / "brca.zarr"), sample_sheets=sheet, values="log_expr")
    ds = open_store(report.url)
    reference = pd.read_csv(matrix, index_col=0)  # genes x samples
    labels = pd.read_csv(sheet, index_col=0, keep_default_na=False)
    assert ds.attrs["ingest"]["orientation"] == "genes-x-samples"
    assert list(ds["gene"].values) == list(reference.index)
    np.testing.assert_allclose(ds["log_expr"].values, reference.to_numpy().T.astype(np.float32))
    assert list(ds["sample_group"].values) == list(labels.loc[ds["sample"].values, "group"])
    assert (ds["sample_group"].values == "NORMAL").sum() == 111


def test_shared_pydeseq2_counts_r_style_header(shared_data: Path, tmp_path: Path) -> None:
    counts = shared_data / "pydeseq2-r-reference" / "synthetic" / "test_counts.csv"
    meta = shared_data / "pydeseq2-r-reference" / "synthetic" / "test_metadata.csv"
    report = ingest(counts, str(tmp_path / "deseq.zarr"), sample_sheets=meta)
    ds = open_store(report.url)
    reference = pd.read_csv(counts, index_col=0).T  # samples x genes
    np.testing.assert_array_equal(ds["counts"].values, reference.to_numpy())
    assert list(ds["sample"].values) == list(reference.index)
    assert list(ds["sample_condition"].values) == list(pd.read_csv(meta, index_col=0)["condition"])
