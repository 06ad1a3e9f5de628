"""Bad input: every case raises InputError naming file, line and column, and writes nothing."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.cli.main import main
from gexplain.storage.errors import InputError
from gexplain.storage.ingest import ingest
from gexplain.storage.paths import exists
from gexplain.storage.store import open_store

GENES = [f"ENSG{i:011d}.1" for i in range(4)]
SAMPLES = ["S1", "S2", "S3"]
GOOD = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]])


def gct_text(rows: list[list[str]], *, samples=SAMPLES, genes=GENES, dims: str | None = None) -> str:
    dims = dims or f"{len(genes)}\t{len(samples)}"
    head = f"#1.2\n{dims}\nName\tDescription\t" + "\t".join(samples) + "\n"
    return head + "".join(f"{g}\tsym\t" + "\t".join(r) + "\n" for g, r in zip(genes, rows, strict=True))


def good_rows() -> list[list[str]]:
    return [[str(v) for v in row] for row in GOOD]


def assert_rejected(tmp_path: Path, source: Path, pattern: str, **kwargs) -> str:
    """Ingest must raise InputError matching ``pattern`` and leave no store (nor temp dir)."""
    out = tmp_path / "out.zarr"
    with pytest.raises(InputError) as info:
        ingest(source, str(out), chunks={"sample": 2, "gene": 2}, **kwargs)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.zarr")]
    return message


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "value,values,pattern",
    [
        ("NaN", None, r"line 6, column 4 \(sample 'S2'\).*missing or not finite"),
        (
            "",
            None,
            r"line 6, column 4 \(sample 'S2'\): '' is not a number \(missing values are not allowed\)",
        ),
        ("-3", None, r"line 6, column 4 \(sample 'S2'\).*negative value -3 where counts"),
        ("2.5", None, r"line 6, column 4 \(sample 'S2'\).*non-integer value 2.5 where counts.*--tpm"),
        ("-0.5", "tpm", r"line 6, column 4 \(sample 'S2'\).*negative value -0.5 where tpm"),
        ("abc", None, r"line 6, column 4 \(sample 'S2'\).*'abc' is not a number"),
    ],
)
def test_bad_values_are_located(tmp_path: Path, value: str, values: str | None, pattern: str) -> None:
    rows = good_rows()
    rows[2][1] = value  # third gene (line 6), second sample (column 4)
    gct = write(tmp_path, "bad.gct", gct_text(rows))
    message = assert_rejected(tmp_path, gct, pattern, values=values)
    assert str(gct) in message


def test_non_integer_values_pass_when_declared_tpm(tmp_path: Path) -> None:
    rows = good_rows()
    rows[2][1] = "2.5"
    gct = write(tmp_path, "tpm.gct", gct_text(rows))
    report = ingest(gct, str(tmp_path / "ok.zarr"), values="tpm")
    assert open_store(report.url)["tpm"].values[1, 2] == pytest.approx(2.5)


def test_duplicate_sample_ids(tmp_path: Path) -> None:
    gct = write(tmp_path, "dup.gct", gct_text(good_rows(), samples=["S1", "S2", "S1"]))
    assert_rejected(tmp_path, gct, r"duplicate sample id 'S1'.*column 3 and .*column 5")


def test_duplicate_gene_ids(tmp_path: Path) -> None:
    genes = [GENES[0], GENES[1], GENES[0], GENES[3]]
    gct = write(tmp_path, "dup.gct", gct_text(good_rows(), genes=genes))
    assert_rejected(tmp_path, gct, r"duplicate gene id 'ENSG00000000000.1'.*line 4.*line 6")


def test_duplicate_gene_ids_after_version_strip(tmp_path: Path) -> None:
    genes = [GENES[0], GENES[1], "ENSG00000000000.7", GENES[3]]
    gct = write(tmp_path, "dup.gct", gct_text(good_rows(), genes=genes))
    assert_rejected(
        tmp_path, gct, r"duplicate gene \(version suffix stripped\) id 'ENSG00000000000'.*line 4.*line 6"
    )


def test_sample_sheet_missing_and_extra_rows(tmp_path: Path) -> None:
    gct = write(tmp_path, "m.gct", gct_text(good_rows()))
    missing = tmp_path / "missing.tsv"
    pd.DataFrame({"SAMPID": ["S1", "S2"], "SMTS": ["a", "b"]}).to_csv(missing, sep="\t", index=False)
    assert_rejected(
        tmp_path, gct, r"missing.tsv: 1 sample\(s\) of .*m.gct have no row.*\['S3'\]", sample_sheets=missing
    )
    extra = tmp_path / "extra.tsv"
    pd.DataFrame({"SAMPID": ["S1", "S2", "S3", "S9"], "SMTS": list("abcd")}).to_csv(
        extra, sep="\t", index=False
    )
    assert_rejected(
        tmp_path,
        gct,
        r"extra.tsv: 1 sample-sheet row\(s\) match no sample.*line 5 \('S9'\).*--ignore-extra-sheet-rows",
        sample_sheets=extra,
    )
    report = ingest(gct, str(tmp_path / "ok.zarr"), sample_sheets=extra, ignore_extra_sheet_rows=True)
    assert list(open_store(report.url)["sample_tissue"].values) == ["a", "b", "c"]


def test_duplicate_rows_in_sample_sheet(tmp_path: Path) -> None:
    gct = write(tmp_path, "m.gct", gct_text(good_rows()))
    sheet = tmp_path / "dup.csv"
    pd.DataFrame({"sample": ["S1", "S2", "S3", "S2"], "x": list("abcd")}).to_csv(sheet, index=False)
    assert_rejected(
        tmp_path,
        gct,
        r"dup.csv: duplicate sample id 'S2' in column 'sample' on lines 3, 5",
        sample_sheets=sheet,
    )


def test_ragged_row(tmp_path: Path) -> None:
    rows = good_rows()
    rows[1] = rows[1][:2]
    gct = write(tmp_path, "ragged.gct", gct_text(rows))
    assert_rejected(tmp_path, gct, r"ragged.gct: line 5 has 4 fields but the header \(line 3\) has 5")


def test_ragged_csv_matrix(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "gene,S1,S2\nENSG00000000001,1,2\nENSG00000000002,3,4,5\n")
    assert_rejected(tmp_path, path, r"r.csv: line 3 has 4 fields but the header \(line 1\) has 3")


def test_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress(gct_text(good_rows()).encode())
    path = tmp_path / "cut.gct.gz"
    path.write_bytes(data[: len(data) - 12])
    assert_rejected(
        tmp_path, path, r"cut.gct.gz: the gzip stream is truncated or corrupt after line \d+.*gzip -t"
    )
    corrupt = tmp_path / "corrupt.gct.gz"
    corrupt.write_bytes(data[:20] + bytes(b ^ 0x5A for b in data[20:40]) + data[40:])
    assert_rejected(tmp_path, corrupt, r"corrupt.gct.gz: the gzip stream is truncated or corrupt")


def test_empty_files(tmp_path: Path) -> None:
    for name in ("empty.gct", "empty.csv", "empty.h5ad", "empty.parquet"):
        path = write(tmp_path, name, "")
        assert_rejected(tmp_path, path, rf"{name}: the .* is empty \(0 bytes\)")
    header_only = write(tmp_path, "h.csv", "gene,S1,S2\n")
    assert_rejected(tmp_path, header_only, r"h.csv: the matrix has a header but no data rows")
    gct = write(tmp_path, "m.gct", gct_text(good_rows()))
    sheet = write(tmp_path, "sheet.csv", "")
    assert_rejected(tmp_path, gct, r"sheet.csv: the sample sheet is empty", sample_sheets=sheet)


def test_gct_dimensions_line_mismatch(tmp_path: Path) -> None:
    gct = write(tmp_path, "dims.gct", gct_text(good_rows(), dims="5\t3"))
    assert_rejected(
        tmp_path, gct, r"dims.gct: line 2 declares 5 genes x 3 samples but the table has 4 gene rows"
    )
    not_gct = write(tmp_path, "x.gct", gct_text(good_rows()).replace("#1.2", "#1.3"))
    assert_rejected(tmp_path, not_gct, r"x.gct: line 1 is '#1.3', expected '#1.2'")


def _gdc(tmp_path: Path, n: int = 2) -> tuple[Path, Path, list[Path]]:
    root = tmp_path / "gdc"
    rows, files = [], []
    for k in range(n):
        name = f"f{k}.rna_seq.augmented_star_gene_counts.tsv"
        body = "# gene-model: GENCODE v36\ngene_id\tgene_name\tgene_type\tunstranded\ttpm_unstranded\n"
        body += "".join(
            f"{s}\t\t\t5\t\n" for s in ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")
        )
        body += "".join(f"{g}\tG{i}\tprotein_coding\t{i + k}\t1.5\n" for i, g in enumerate(GENES))
        path = root / f"d{k}" / name
        path.parent.mkdir(parents=True)
        path.write_text(body)
        files.append(path)
        rows.append({"File Name": name, "Sample ID": f"TCGA-{k}", "Sample Type": "Primary Tumor"})
    sheet = tmp_path / "gdc_sample_sheet.tsv"
    pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return root, sheet, files


def test_gdc_bad_inputs(tmp_path: Path) -> None:
    root, sheet, files = _gdc(tmp_path)
    assert_rejected(
        tmp_path,
        root,
        r"no value column 'unstrandd'; choose --column from unstranded, tpm_unstranded",
        sample_sheets=sheet,
        column="unstrandd",
    )
    text = files[1].read_text().splitlines()
    text[7] = text[7].replace("\t2\t", "\t-2\t")  # line 8: second gene of the second file
    files[1].write_text("\n".join(text) + "\n")
    assert_rejected(
        tmp_path,
        root,
        r"f1.rna_seq.*: line 8, column 4 \('unstranded', gene 'ENSG00000000001.1'\).*negative",
        sample_sheets=sheet,
    )
    text[7] = text[7].replace("ENSG00000000001.1", "ENSG00000000099.1").replace("\t-2\t", "\t2\t")
    files[1].write_text("\n".join(text) + "\n")
    assert_rejected(
        tmp_path,
        root,
        r"f1.rna_seq.*: the gene list differs from .*f0.rna_seq.*gene row 2",
        sample_sheets=sheet,
    )
    (root / "d9").mkdir()
    (root / "d9" / "f9.rna_seq.augmented_star_gene_counts.tsv").write_text(files[0].read_text())
    assert_rejected(
        tmp_path, root, r"1 file\(s\) in .* have no row in the sample sheet.*f9.rna_seq", sample_sheets=sheet
    )


def test_gdc_duplicate_sample_ids_name_files(tmp_path: Path) -> None:
    root, sheet, files = _gdc(tmp_path)
    table = pd.read_csv(sheet, sep="\t")
    table["Sample ID"] = "TCGA-0"
    table.to_csv(sheet, sep="\t", index=False)
    assert_rejected(
        tmp_path, root, r"duplicate sample id 'TCGA-0': .*f0.rna_seq.* and .*f1.rna_seq", sample_sheets=sheet
    )


def test_failed_overwrite_keeps_existing_store(tmp_path: Path) -> None:
    gct = write(tmp_path, "good.gct", gct_text(good_rows()))
    out = tmp_path / "keep.zarr"
    ingest(gct, str(out))
    rows = good_rows()
    rows[3][2] = "-1"
    bad = write(tmp_path, "bad.gct", gct_text(rows))
    with pytest.raises(InputError, match="negative"):
        ingest(bad, str(out), overwrite=True, chunks={"sample": 2, "gene": 2}, buffer_bytes=1)
    np.testing.assert_array_equal(open_store(str(out))["counts"].values, GOOD.T)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".keep.zarr")] == []


def test_failed_memory_store_leaves_nothing(tmp_path: Path) -> None:
    rows = good_rows()
    rows[3][2] = "1.5"
    bad = write(tmp_path, "bad.gct", gct_text(rows))
    url = "memory://ingest-tests/failed.zarr"
    with pytest.raises(InputError, match="non-integer"):
        ingest(bad, url, chunks={"sample": 2, "gene": 2}, buffer_bytes=1)
    assert not exists(url)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = good_rows()
    rows[0][0] = "NaN"
    bad = write(tmp_path, "bad.gct", gct_text(rows))
    assert main(["ingest", str(bad), "--out", str(tmp_path / "x.zarr")]) == 2
    assert "bad.gct: line 4, column 3 (sample 'S1'): value nan" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x.zarr").exists()
    good = write(tmp_path, "good.gct", gct_text(good_rows()))
    assert main(["ingest", str(good), "--out", str(tmp_path / "y.zarr"), "--tpm"]) == 0
    np.testing.assert_allclose(open_store(str(tmp_path / "y.zarr"))["tpm"].values, GOOD.T)
    assert main(["ingest", str(good), "--out", str(tmp_path / "z.zarr"), "--format", "nope"]) == 2
    assert main(["ingest", str(good), str(good), "--out", str(tmp_path / "z.zarr")]) == 2
