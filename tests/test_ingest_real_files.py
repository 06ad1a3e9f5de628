"""Issue 21 (real files without surprises) and issue 20's small ingest cases: identical id columns
are one choice, merged labels without doubled prefixes, empty labels are missing, inputs
summarised by one digest, duplicated Parquet columns and empty ids refused by name, and a stray
NUL byte is not binary."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gexplain.pipelines.cli.info import describe_store
from gexplain.storage.errors import InputError
from gexplain.storage.ingest import ingest
from gexplain.storage.ingest.common import sniff_text
from gexplain.storage.ingest.merge import prefixed
from gexplain.storage.store import open_store

GENES = [f"ENSG{i:011d}" for i in range(6)]
RUNS = ["SRR1039508", "SRR1039509", "SRR1039512", "SRR1039513"]


def _matrix(path: Path, samples: list[str] = RUNS) -> Path:
    counts = np.arange(len(GENES) * len(samples)).reshape(len(GENES), len(samples))
    pd.DataFrame(counts, index=pd.Index(GENES, name="gene_id"), columns=samples).to_csv(path)
    return path


def test_an_airway_sheet_with_two_identical_id_columns_ingests_without_flags(tmp_path: Path) -> None:
    """Bioconductor airway's colData: ``sample`` and ``Run`` hold the same ids on the same rows."""
    sheet = pd.DataFrame(
        {
            "sample": RUNS[::-1],  # not in matrix order
            "cell": ["N61311", "N61311", "N052611", "N052611"],
            "dex": ["untrt", "trt", "untrt", "trt"],
            "Run": RUNS[::-1],
        }
    )
    sheet.to_csv(tmp_path / "airway_sample_sheet.csv", index=False)
    ds = open_store(
        ingest(
            _matrix(tmp_path / "airway_counts.csv"),
            str(tmp_path / "airway.zarr"),
            sample_sheets=tmp_path / "airway_sample_sheet.csv",
        ).url
    )
    expected = sheet.set_index("sample").loc[RUNS]  # the sheet's rows in matrix order (pandas)
    assert list(ds["sample"].values) == RUNS
    assert list(ds["sample_dex"].values) == list(expected["dex"])
    assert list(ds["sample_run"].values) == RUNS  # the other id column is kept as a variable


def test_id_columns_that_map_differently_still_ask_which(tmp_path: Path) -> None:
    sheet = pd.DataFrame({"sample": RUNS, "dex": ["a", "b", "a", "b"], "Run": RUNS[::-1]})
    sheet.to_csv(tmp_path / "sheet.csv", index=False)
    with pytest.raises(InputError, match="--sample-id-column"):
        ingest(_matrix(tmp_path / "m.csv"), str(tmp_path / "s.zarr"), sample_sheets=tmp_path / "sheet.csv")
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize(
    ("cohort", "label", "merged"),
    [
        ("TCGA", "TCGA-BRCA", "TCGA-BRCA"),
        ("GTEx", "Lung", "GTEx_Lung"),
        ("GTEx", "gtex_lung", "gtex_lung"),
        ("TCGA", "TCGAX", "TCGA_TCGAX"),  # a longer word is not the prefix
        ("TCGA", "", ""),
        ("TCGA", "  ", ""),
    ],
)
def test_merged_labels_are_not_prefixed_twice(cohort: str, label: str, merged: str) -> None:
    assert prefixed(cohort, label) == merged


def test_empty_labels_are_missing_and_inputs_are_one_digest(tmp_path: Path) -> None:
    sheet = pd.DataFrame({"sample": RUNS, "tissue": ["Lung", "", "Liver", "Lung"]})
    sheet.to_csv(tmp_path / "sheet.csv", index=False)
    matrix = _matrix(tmp_path / "m.csv")
    url = ingest(matrix, str(tmp_path / "s.zarr"), sample_sheets=tmp_path / "sheet.csv").url
    info = describe_store(url)
    assert info["labels"]["sample_tissue"]["levels"] == 2
    assert info["labels"]["sample_tissue"]["missing"] == 1
    assert "" not in info["labels"]["sample_tissue"]["top"]
    files = [matrix, tmp_path / "sheet.csv"]
    digests = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    assert info["inputs"] == {
        "count": 2,
        "bytes": sum(f.stat().st_size for f in files),
        "digest": hashlib.sha256("".join(d + "\n" for d in digests).encode()).hexdigest(),
    }


def test_a_parquet_file_with_duplicated_column_names_is_refused_by_name(tmp_path: Path) -> None:
    table = pa.Table.from_arrays(
        [pa.array(GENES), pa.array(np.ones(6)), pa.array(np.zeros(6))], names=["gene_id", "S1", "S1"]
    )
    path = tmp_path / "dup.parquet"
    pq.write_table(table, path)
    with pytest.raises(InputError, match=r"dup\.parquet: column 'S1' appears 2 times \(columns \[2, 3\]\)"):
        ingest(path, str(tmp_path / "s.zarr"))
    assert not (tmp_path / "s.zarr").exists()


def test_an_empty_gene_id_is_refused_naming_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("gene_id,S1,S2\nENSG00000000001,1,2\n,3,4\n")
    with pytest.raises(InputError, match=r"empty gene id at .*m\.csv.*(line|row) 3"):
        ingest(path, str(tmp_path / "s.zarr"))


def test_one_nul_byte_is_not_binary_but_binary_files_are(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes(
        b"sample,note\n"
        + b"".join(f"{r},ok\n".encode() for r in RUNS[:3])
        + f"{RUNS[3]},bad\x00byte\n".encode()
    )
    sniff_text(sheet)  # no error
    ds = open_store(ingest(_matrix(tmp_path / "m.csv"), str(tmp_path / "s.zarr"), sample_sheets=sheet).url)
    assert ds.sizes["sample"] == 4
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("gene_id,S1\nENSG00000000001,1\n".encode("utf-16-le"))
    with pytest.raises(InputError, match="binary"):
        sniff_text(utf16)
