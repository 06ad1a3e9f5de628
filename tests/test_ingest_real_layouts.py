"""Public files as downloaded: TCGA legacy RSEM, RSEM/Salmon expected counts, airway's sample sheet,
GTEx + TCGA merges and a symbol-only panel ingest without hand-editing (small files in each layout).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.cli.main import main
from gexplain.storage.errors import InputError
from gexplain.storage.ingest import ingest
from gexplain.storage.store import open_store

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _write_matrix(
    path: Path, ids: list[str], samples: list[str], values: np.ndarray, sep: str = "\t"
) -> None:
    head = sep.join(["gene_id", *samples])
    rows = [sep.join([g, *(repr(float(v)) for v in row)]) for g, row in zip(ids, values, strict=True)]
    path.write_text("\n".join([head, *rows]) + "\n")


# --- 1 and 2: TCGA legacy RSEM (SYMBOL|ENTREZ ids, non-integer expected counts) -------------------


LEGACY_IDS = ["?|100130426", "?|100133144", "A1BG|1", "SLC35E2|728661", "SLC35E2|9906", "TP53|7157"]


def _legacy(tmp_path: Path) -> tuple[Path, np.ndarray, list[str]]:
    rng = np.random.default_rng(3)
    samples = ["TCGA-A7-A0CE-01A-11R-A00Z-07", "TCGA-A7-A0CH-01A-21R-A00Z-07", "TCGA-BH-A0AU-11A-11R-A12P-07"]
    values = np.round(rng.gamma(1.0, 200.0, size=(len(LEGACY_IDS), len(samples))), 2)
    values[0, 0] = 0.5  # halves round to even, as R's round() in tximport
    values[1, 0] = 2.5
    values[2, 0] = 3.5
    path = tmp_path / "BRCA.rsem.genes.results.txt"
    _write_matrix(path, LEGACY_IDS, samples, values)
    return path, values, samples


def test_tcga_legacy_rsem_expected_counts_are_rounded_and_ids_split(tmp_path: Path) -> None:
    path, values, samples = _legacy(tmp_path)
    with pytest.raises(InputError, match="--values expected_counts"):  # the error names the fix
        ingest(path, str(tmp_path / "refused.zarr"), orientation="genes-x-samples")
    report = ingest(
        path, str(tmp_path / "legacy.zarr"), values="expected_counts", orientation="genes-x-samples"
    )
    ds = open_store(report.url)
    assert report.layer == "counts"
    assert ds["counts"].dtype == np.int32 and ds["expected_counts"].dtype == np.float32
    expected = np.array([[round(v) for v in row] for row in values.T])  # Python round: halves to even
    np.testing.assert_array_equal(ds["counts"].values, expected)
    assert ds["counts"].values[0, :3].tolist() == [0, 2, 4]
    np.testing.assert_allclose(ds["expected_counts"].values, values.T.astype(np.float32))
    assert "round" in ds.attrs["ingest"]["rounded"] and ds.attrs["ingest"]["values"] == "expected_counts"
    assert list(ds["gene"].values.astype(str)) == LEGACY_IDS
    assert list(ds["gene_symbol"].values.astype(str)) == ["", "", "A1BG", "SLC35E2", "SLC35E2", "TP53"]
    assert list(ds["gene_entrez"].values.astype(str)) == [
        "100130426",
        "100133144",
        "1",
        "728661",
        "9906",
        "7157",
    ]
    assert list(ds["sample"].values.astype(str)) == samples


@pytest.mark.parametrize(
    ("bad", "what"), [(-1.5, "negative value -1.5"), (float("nan"), "missing or not finite")]
)
def test_expected_counts_refuse_negative_and_nan(tmp_path: Path, bad: float, what: str) -> None:
    path = tmp_path / "salmon.tsv"
    values = np.array([[1.2, 3.4], [5.6, bad]])
    _write_matrix(path, ["ENSG00000000003.15", "ENSG00000000005.6"], ["s1", "s2"], values)
    with pytest.raises(InputError, match=what) as info:
        ingest(path, str(tmp_path / "x.zarr"), values="expected_counts")
    assert "line 3" in str(info.value) and "s2" in str(info.value)
    assert not (tmp_path / "x.zarr").exists()


def test_rsem_salmon_expected_count_matrix_via_cli(tmp_path: Path) -> None:
    """RSEM/Salmon gene-level ``expected_count`` merged across samples (versioned Ensembl ids, CSV)."""
    rng = np.random.default_rng(5)
    ids = ["ENSG00000000003.15", "ENSG00000000005.6", "ENSG00000000419.13", "ENSG00000002586.20_PAR_Y"]
    values = np.round(rng.gamma(0.8, 300.0, size=(4, 3)), 3)
    path = tmp_path / "rsem_expected_count.csv"
    _write_matrix(path, ids, ["S1", "S2", "S3"], values, sep=",")
    out = tmp_path / "rsem.zarr"
    assert main(["ingest", str(path), "--out", str(out), "--values", "expected_counts"]) == 0
    ds = open_store(str(out))
    np.testing.assert_array_equal(ds["counts"].values, np.vectorize(round)(values.T))
    assert list(ds["gene"].values.astype(str))[-1] == "ENSG00000002586_PAR_Y"
    assert set(ds["gene_symbol"].values.astype(str)) == {""}  # Ensembl ids are not symbols


# --- 3: symbol-only panels -----------------------------------------------------------------------


def test_symbol_only_ids_are_copied_into_gene_symbol(tmp_path: Path) -> None:
    symbols = ["ESR1", "PGR", "FOXA1", "GATA3", "ERBB2"]
    path = tmp_path / "panel.csv"
    _write_matrix(path, symbols, ["TCGA.A7.A0CE.11", "TCGA.A7.A0CH.01"], np.full((5, 2), 3.25), sep=",")
    ds = open_store(
        ingest(path, str(tmp_path / "panel.zarr"), values="log_expr", orientation="genes-x-samples").url
    )
    assert list(ds["gene_symbol"].values.astype(str)) == symbols


@pytest.mark.skipif(not (SHARED / "tcga-brca").is_dir(), reason="../shared/data/tcga-brca absent")
def test_real_tcga_brca_symbol_panel(tmp_path: Path) -> None:
    data = SHARED / "tcga-brca"
    matrix = data / "divergence_breastTCGA_log2tpm.csv"
    report = ingest(
        matrix,
        str(tmp_path / "brca.zarr"),
        sample_sheets=data / "divergence_breastTCGA_samples.csv",
        values="log_expr",
    )
    ds = open_store(report.url)
    assert (report.n_samples, report.n_genes) == (887, 260)
    frame = pd.read_csv(matrix, index_col=0)
    assert list(ds["gene_symbol"].values.astype(str)) == list(frame.index.astype(str))
    np.testing.assert_allclose(ds["log_expr"].values, frame.to_numpy(np.float32).T)
    groups = pd.Series(ds["sample_group"].values.astype(str)).value_counts().to_dict()
    assert groups == {"TUMOR": 776, "NORMAL": 111}


# --- 4: the sample-id column is the one whose values match --------------------------------------


AIRWAY_RUNS = ["SRR1039508", "SRR1039509", "SRR1039512", "SRR1039513"]


def _airway(tmp_path: Path, *, extra_copy: bool = False) -> tuple[Path, Path]:
    counts = tmp_path / "airway_counts.csv"
    _write_matrix(
        counts,
        ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419"],
        AIRWAY_RUNS,
        np.arange(12.0).reshape(3, 4),
        ",",
    )
    sheet = tmp_path / "airway_sample_sheet.csv"
    header = "SampleName,cell,dex,albut,Run,avgLength,Experiment,Sample,BioSample,sample"
    rows = [
        f"GSM{1275862 + i},N{61311 + i},{dex},untrt,{run},126,SRX{384345 + i},SRS{508568 + i},SAMN0242{2669 + i},{run}"
        for i, (run, dex) in enumerate(zip(AIRWAY_RUNS, ["untrt", "trt", "untrt", "trt"], strict=True))
    ]
    if not extra_copy:
        header = header.replace(",Run,", ",run_accession,")
        rows = [r.replace(f",{run},126", f",R{run},126") for r, run in zip(rows, AIRWAY_RUNS, strict=True)]
    sheet.write_text("\n".join([header, *rows]) + "\n")
    return counts, sheet


def test_airway_sheet_with_sample_and_Sample_columns(tmp_path: Path) -> None:
    counts, sheet = _airway(tmp_path)
    ds = open_store(ingest(counts, str(tmp_path / "airway.zarr"), sample_sheets=sheet).url)
    assert list(ds["sample"].values.astype(str)) == AIRWAY_RUNS
    assert list(ds["sample_dex"].values.astype(str)) == ["untrt", "trt", "untrt", "trt"]
    assert ds["sample_sample"].values.astype(str)[0] == "SRS508568"  # 'Sample' (SRS accessions) kept as data


def test_identical_id_columns_are_one_choice(tmp_path: Path) -> None:
    """Issue 21: airway's 'Run' and 'sample' hold the same ids on the same rows: no flag needed."""
    counts, sheet = _airway(tmp_path, extra_copy=True)  # 'Run' and 'sample' both hold the SRR ids
    out = tmp_path / "amb.zarr"
    assert main(["ingest", str(counts), "--sample-sheet", str(sheet), "--out", str(out)]) == 0
    assert list(open_store(str(out))["sample"].values.astype(str)) == AIRWAY_RUNS
    code = main(
        ["ingest", str(counts), "--sample-sheet", str(sheet), "--sample-id-column", "Run", "--out", str(out),
         "--overwrite"]
    )  # fmt: skip
    assert code == 0
    assert list(open_store(str(out))["sample"].values.astype(str)) == AIRWAY_RUNS


# --- 5: GTEx + TCGA merge maps each cohort's label column into one sample_tissue ------------------


GENES = ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419"]


def _gtex(tmp_path: Path) -> tuple[Path, Path]:
    samples = ["GTEX-1117F-0226-SM-5GZZ7", "GTEX-1117F-0426-SM-5EGHI", "GTEX-111CU-1826-SM-5GZYN"]
    gct = tmp_path / "GTEx_gene_reads.gct.gz"
    lines = ["#1.2", f"{len(GENES)}\t{len(samples)}", "\t".join(["Name", "Description", *samples])]
    lines += [
        f"{g}.{i + 5}\tSYM{i}\t" + "\t".join(str(10 * i + j) for j in range(3)) for i, g in enumerate(GENES)
    ]
    with gzip.open(gct, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    sheet = tmp_path / "GTEx_SampleAttributesDS.txt"
    sheet.write_text(
        "SAMPID\tSMATSSCR\tSMTS\tSMTSD\tSMUBRID\n"
        f"{samples[0]}\t0\tAdipose Tissue\tAdipose - Subcutaneous\t0002190\n"
        f"{samples[1]}\t1\tMuscle\tMuscle - Skeletal\t0011907\n"
        f"{samples[2]}\t0\tLung\tLung\t0008952\n"
        "GTEX-ZZZZZ-0001-SM-ZZZZZ\t0\tBlood\tWhole Blood\t0013756\n"  # not in the matrix, as in the real sheet
    )
    return gct, sheet


def _tcga_gdc(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "gdc"
    sheet_rows = []
    projects = ["TCGA-LUAD", "TCGA-BRCA"]
    for k, project in enumerate(projects):
        fid = f"0f0e{k:04d}-aaaa-bbbb-cccc-dddddddddddd"
        name = f"5a5b{k:04d}-1111-2222-3333-444444444444.rna_seq.augmented_star_gene_counts.tsv"
        (root / fid).mkdir(parents=True)
        body = ["# gene-model: GENCODE v36", "gene_id\tgene_name\tgene_type\tunstranded\tstranded_first\t"
                "stranded_second\ttpm_unstranded\tfpkm_unstranded\tfpkm_uq_unstranded"]  # fmt: skip
        body += [
            f"{s}\t\t\t5\t5\t5\t\t\t" for s in ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")
        ]
        body += [
            f"{g}.{i + 3}\tSYM{i}\tprotein_coding\t{7 * i + k}\t1\t1\t1.0\t1.0\t1.0"
            for i, g in enumerate(GENES)
        ]
        body.append("ENSG00000999999.1\tONLYTCGA\tlncRNA\t1\t0\t0\t0.1\t0.1\t0.1")
        (root / fid / name).write_text("\n".join(body) + "\n")
        sheet_rows.append(
            f"{fid}\t{name}\tTranscriptome Profiling\tGene Expression Quantification\t{project}\t"
            f"TCGA-05-438{k}\tTCGA-05-438{k}-01A\tPrimary Tumor"
        )
    sheet = tmp_path / "gdc_sample_sheet.tsv"
    sheet.write_text(
        "File ID\tFile Name\tData Category\tData Type\tProject ID\tCase ID\tSample ID\tSample Type\n"
        + "\n".join(sheet_rows)
        + "\n"
    )
    return root, sheet


def test_gtex_tcga_merge_maps_labels_with_cohort_prefix(tmp_path: Path) -> None:
    """TCGA's Project ID already names its cohort (TCGA-LUAD): it is not prefixed twice."""
    gct, gsheet = _gtex(tmp_path)
    gdc, tsheet = _tcga_gdc(tmp_path)
    out = tmp_path / "zhao.zarr"
    code = main(
        ["ingest", str(gct), str(gdc), "--merge", "--cohort", "GTEx", "--cohort", "TCGA",
         "--sample-sheet", str(gsheet), "--sample-sheet", str(tsheet), "--ignore-extra-sheet-rows",
         "--merge-label", "GTEx=SMTSD", "--merge-label", "TCGA=Project ID", "--label-prefix", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    ds = open_store(str(out))
    assert ds.attrs["label_column"] == "sample_tissue"
    assert list(ds["sample_tissue"].values.astype(str)) == [
        "GTEx_Adipose - Subcutaneous", "GTEx_Muscle - Skeletal", "GTEx_Lung", "TCGA-LUAD", "TCGA-BRCA",
    ]  # fmt: skip
    assert list(ds["gene"].values.astype(str)) == GENES  # ENSG00000999999 only in TCGA: dropped
    assert ds.attrs["merge"]["unlabelled_samples"] == {}


def test_merge_without_a_label_for_one_cohort_reports_its_samples(tmp_path: Path) -> None:
    gct, gsheet = _gtex(tmp_path)
    gdc, tsheet = _tcga_gdc(tmp_path)
    report = ingest(
        [gct, gdc], str(tmp_path / "m.zarr"), sample_sheets=[gsheet, tsheet], merge=True, cohorts=["GTEx", "TCGA"],
        ignore_extra_sheet_rows=True, merge_labels=["GTEx=SMTS"],
    )  # fmt: skip
    assert report.unlabelled == {"TCGA": ["TCGA-05-4380-01A", "TCGA-05-4381-01A"]}
    ds = open_store(report.url)
    assert list(ds["sample_tissue"].values.astype(str)) == ["Adipose Tissue", "Muscle", "Lung", "", ""]
    assert ds.attrs["merge"]["unlabelled_samples"] == {"TCGA": 2}
    # without any mapping, the GTEx label column leaves TCGA empty: reported, not silent
    plain = ingest(
        [gct, gdc], str(tmp_path / "p.zarr"), sample_sheets=[gsheet, tsheet], merge=True, cohorts=["GTEx", "TCGA"],
        ignore_extra_sheet_rows=True,
    )  # fmt: skip
    assert set(plain.unlabelled) == {"TCGA"}
    with pytest.raises(InputError, match="no sample column 'primary_site'"):
        ingest(
            [gct, gdc], str(tmp_path / "q.zarr"), sample_sheets=[gsheet, tsheet], merge=True,
            cohorts=["GTEx", "TCGA"], ignore_extra_sheet_rows=True, merge_labels=["TCGA=primary_site"],
        )  # fmt: skip
    with pytest.raises(InputError, match="no cohort 'tcga'"):
        ingest(
            [gct, gdc],
            str(tmp_path / "r.zarr"),
            merge=True,
            cohorts=["GTEx", "TCGA"],
            merge_labels=["tcga=x"],
        )
    assert not (tmp_path / "q.zarr").exists() and not (tmp_path / "r.zarr").exists()


# --- issue 11 item 8: binary garbage and quoted commas ------------------------------------------


@pytest.mark.parametrize("name", ["expr.csv", "expr.gct", "expr.tsv.gz", "sheet_target.csv"])
def test_binary_garbage_exits_2_naming_the_file(tmp_path: Path, name: str) -> None:
    garbage = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(garbage))
    else:
        path.write_bytes(garbage)
    out = tmp_path / "g.zarr"
    if name.startswith("sheet"):
        counts, _ = _airway(tmp_path)
        args = ["ingest", str(counts), "--sample-sheet", str(path), "--out", str(out)]
    else:
        args = ["ingest", str(path), "--out", str(out)]
    with pytest.raises(InputError, match="not UTF-8 text.*binary file") as info:
        ingest(Path(args[1]), str(out), sample_sheets=Path(args[3]) if name.startswith("sheet") else None)
    assert str(path) in str(info.value) and "Export the table as CSV/TSV" in str(info.value)
    assert main(args) == 2
    assert not out.exists()


def test_quoted_field_with_a_comma(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_text(
        'gene_id,gene_symbol,s1,s2\nENSG00000000003,"TSPAN6,alias",1,2\nENSG00000000005,TNMD,3,4\n'
        "ENSG00000000419,DPM1,5,6,7\n"
    )
    with pytest.raises(InputError, match=r"line 4 has 5 fields but the header \(line 1\) has 4"):
        ingest(path, str(tmp_path / "bad.zarr"))
    path.write_text(path.read_text().replace(",5,6,7", ",5,6"))
    ds = open_store(ingest(path, str(tmp_path / "ok.zarr")).url)
    assert ds["gene_symbol"].values.astype(str)[0] == "TSPAN6,alias"
    np.testing.assert_array_equal(ds["counts"].values, [[1, 3, 5], [2, 4, 6]])


def test_ingest_stage_params_accept_new_fields() -> None:
    from gexplain.pipelines.ingest_stage import IngestParams

    p = IngestParams(sources=["a"], values="expected_counts", merge_labels=["GTEx=SMTSD"], label_prefix=True)
    assert p.values == "expected_counts" and p.merge_labels == ["GTEx=SMTSD"] and p.label_prefix


def test_firehose_rsem_genes_two_header_lines(tmp_path: Path) -> None:
    """Broad Firehose ``RSEM_genes__data.data.txt``: sample line, quantity line, 3 columns per sample."""
    samples = ["TCGA-3C-AAAU-01A-11R-A41B-07", "TCGA-3C-AALI-01A-11R-A41B-07"]
    raw = np.array([[0.0, 2.5], [12.49, 7.0], [1021.67, 3.5]])
    lines = ["\t".join(["Hybridization REF"] + [s for s in samples for _ in range(3)])]
    lines.append("\t".join(["gene_id"] + ["raw_count", "scaled_estimate", "transcript_id"] * 2))
    for g, row in zip(LEGACY_IDS[:3], raw, strict=True):
        fields = [g]
        for v in row:
            fields += [f"{v:.2f}", "1.2e-07", "uc011lsn.1,uc009vjk.2"]
        lines.append("\t".join(fields))
    path = tmp_path / "BRCA.rnaseqv2__illuminahiseq_rnaseqv2__unc_edu__Level_3__RSEM_genes__data.data.txt"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "firehose.zarr"
    assert main(["ingest", str(path), "--values", "expected_counts", "--out", str(out)]) == 0
    ds = open_store(str(out))
    assert list(ds["sample"].values.astype(str)) == samples
    np.testing.assert_array_equal(ds["counts"].values, np.vectorize(round)(raw.T))
    np.testing.assert_allclose(ds["expected_counts"].values, raw.T.astype(np.float32))
    assert list(ds["gene_symbol"].values.astype(str)) == ["", "", "A1BG"]
    assert ds.attrs["ingest"]["firehose_quantity"] == "raw_count"
    lines[3] = lines[3].replace("12.49", "n/a", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"line 4, column 2 \(sample 'TCGA-3C-AAAU-01A-11R-A41B-07'\)"):
        ingest(path, str(tmp_path / "bad.zarr"), values="expected_counts")
