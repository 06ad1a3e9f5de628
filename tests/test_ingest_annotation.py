"""Gene annotation at ingest: a TSV table and a gzip GTF written by the tests fill gene_chrom,
gene_start, gene_length and gene_symbol; unmatched genes keep ''/NaN and are counted.

The reference is always the table the test wrote (positions and lengths computed here from its
start/end columns), never the ingest code's output.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.ingest_stage import IngestParams, inputs
from gexplain.storage.errors import InputError
from gexplain.storage.ingest import ingest
from gexplain.storage.store import open_store

GENES = [f"ENSG{k:011d}.{k % 3 + 1}" for k in range(1, 9)]
STRIPPED = [g.split(".")[0] for g in GENES]
SAMPLES = ["S1", "S2", "S3"]


def write_matrix(path: Path) -> Path:
    """A genes x samples counts CSV without a symbol column (gene_id first)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 100, size=(len(GENES), len(SAMPLES))), columns=SAMPLES)
    frame.insert(0, "gene_id", GENES)
    frame.to_csv(path, index=False)
    return path


def write_gct(path: Path, symbols: list[str]) -> Path:
    """A GCT 1.2 with the given Description (symbol) column."""
    with open(path, "w") as fh:
        fh.write(f"#1.2\n{len(GENES)}\t{len(SAMPLES)}\nName\tDescription\t" + "\t".join(SAMPLES) + "\n")
        for k, (gid, sym) in enumerate(zip(GENES, symbols, strict=True)):
            fh.write(f"{gid}\t{sym}\t{k}\t{k + 1}\t{k + 2}\n")
    return path


def annotation_frame() -> pd.DataFrame:
    """Annotation for genes 0..5 (not 6, 7), in shuffled order, some ids with other versions."""
    order = [3, 0, 5, 1, 4, 2]
    return pd.DataFrame(
        {
            "gene_id": [STRIPPED[i] + (".9" if i % 2 else "") for i in order],
            "chr": [f"chr{i % 3 + 1}" for i in order],
            "start": [1000 * (i + 1) + 7 for i in order],
            "end": [1000 * (i + 1) + 7 + 50 * (i + 1) for i in order],
            "gene_name": [f"SYM{i}" for i in order],
        }
    )


def expected(frame: pd.DataFrame) -> pd.DataFrame:
    """Per store gene (in GENES order): chrom, start, length (end - start + 1), symbol; NaN/'' if absent."""
    table = frame.assign(gene=frame["gene_id"].str.split(".").str[0]).set_index("gene")
    out = table.reindex(STRIPPED)
    return pd.DataFrame(
        {
            "chrom": out["chr"].fillna("").to_numpy(),
            "start": out["start"].to_numpy(dtype=float),
            "length": (out["end"] - out["start"] + 1).to_numpy(dtype=float),
            "symbol": out["gene_name"].fillna("").to_numpy(),
        }
    )


def test_tsv_annotation_fills_positions_lengths_symbols(tmp_path: Path) -> None:
    frame = annotation_frame()
    table = tmp_path / "genes.tsv"
    frame.to_csv(table, sep="\t", index=False)
    report = ingest(write_matrix(tmp_path / "m.csv"), str(tmp_path / "s.zarr"), gene_annotation=table)
    ds = open_store(report.url)
    want = expected(frame)
    assert list(ds["gene"].values) == STRIPPED
    assert list(ds["gene_chrom"].values.astype(str)) == list(want["chrom"])
    np.testing.assert_array_equal(ds["gene_start"].values, want["start"])
    np.testing.assert_array_equal(ds["gene_length"].values, want["length"])
    assert list(ds["gene_symbol"].values.astype(str)) == list(want["symbol"])
    assert report.annotation["unmatched"] == 2
    assert report.annotation["first_unmatched"] == STRIPPED[6:]
    assert ds.attrs["ingest"]["gene_annotation"]["unmatched"] == 2
    assert any(s["path"] == str(table.resolve()) for s in ds.attrs["sources"])


def write_gtf(path: Path, frame: pd.DataFrame) -> Path:
    """A gzip GTF: a gene line per row of ``frame`` plus transcript/exon lines that must be ignored."""
    with gzip.open(path, "wt") as fh:
        fh.write("#!genome-build GRCh38\n")
        for row in frame.itertuples():
            attrs = f'gene_id "{row.gene_id}"; gene_type "protein_coding"; gene_name "{row.gene_name}";'
            fh.write(f"{row.chr}\tHAVANA\tgene\t{row.start}\t{row.end}\t.\t+\t.\t{attrs}\n")
            tx = attrs + ' transcript_id "ENST00000000001.1";'
            fh.write(f"{row.chr}\tHAVANA\ttranscript\t{row.start + 1}\t{row.end}\t.\t+\t.\t{tx}\n")
            fh.write(f"{row.chr}\tHAVANA\texon\t{row.start + 1}\t{row.start + 9}\t.\t+\t.\t{tx}\n")
    return path


def test_gtf_annotation_keeps_source_symbols_and_lengths(tmp_path: Path) -> None:
    frame = annotation_frame()
    gtf = write_gtf(tmp_path / "genes.gtf.gz", frame)
    source_symbols = ["", "A1", "", "A3", "", "", "A6", ""]
    lengths = tmp_path / "lengths.tsv"
    pd.DataFrame({"gene_id": GENES[:2], "length": [11.0, 22.0]}).to_csv(lengths, sep="\t", index=False)
    report = ingest(
        write_gct(tmp_path / "m.gct", source_symbols),
        str(tmp_path / "s.zarr"),
        gene_annotation=gtf,
        gene_lengths=lengths,
    )
    ds = open_store(report.url)
    want = expected(frame)
    assert list(ds["gene_chrom"].values.astype(str)) == list(want["chrom"])
    np.testing.assert_array_equal(ds["gene_start"].values, want["start"])
    # --gene-lengths values win; the GTF fills the rest (end - start + 1 of the gene line).
    np.testing.assert_array_equal(ds["gene_length"].values, [11.0, 22.0, *want["length"][2:]])
    symbols = [s or w for s, w in zip(source_symbols, want["symbol"], strict=True)]
    assert list(ds["gene_symbol"].values.astype(str)) == symbols
    assert report.annotation["unmatched"] == 2


def test_annotation_survives_merge(tmp_path: Path) -> None:
    frame = annotation_frame()
    table = tmp_path / "genes.csv"
    frame.rename(columns={"chr": "seqname"}).to_csv(table, index=False)
    first = write_matrix(tmp_path / "a.csv")
    second = tmp_path / "b.csv"
    other = pd.read_csv(first).iloc[1:].rename(columns={s: s + "b" for s in SAMPLES})
    other.to_csv(second, index=False)  # lacks gene 0: dropped by the merge
    report = ingest([first, second], str(tmp_path / "s.zarr"), merge=True, gene_annotation=table)
    ds = open_store(report.url)
    want = expected(frame).iloc[1:]
    assert list(ds["gene"].values) == STRIPPED[1:]
    assert list(ds["gene_chrom"].values.astype(str)) == list(want["chrom"])
    np.testing.assert_array_equal(ds["gene_start"].values, want["start"])
    assert report.annotation["unmatched"] == 2


def test_cli_and_stage_take_the_annotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "genes.tsv"
    annotation_frame().to_csv(table, sep="\t", index=False)
    matrix = write_matrix(tmp_path / "m.csv")
    out = tmp_path / "s.zarr"
    assert main(["ingest", str(matrix), "--out", str(out), "--gene-annotation", str(table)]) == 0
    assert "2 of 8 genes not found" in capsys.readouterr().out
    np.testing.assert_array_equal(
        open_store(str(out))["gene_start"].values, expected(annotation_frame())["start"]
    )
    params = IngestParams(sources=[str(matrix)], gene_annotation=str(table))
    assert str(table) in inputs(params)


@pytest.mark.parametrize(
    ("text", "name", "pattern"),
    [
        (
            "gene_id\tchr\tstart\nENSG00000000001\tchr1\t100\nENSG00000000002\tchr1\t1e2x\n",
            "a.tsv",
            r"a\.tsv: line 3, column 'start': '1e2x' is not a whole number",
        ),
        (
            "gene_id\tchr\tstart\tlength\nENSG00000000001\tchr1\t100\t0\n",
            "a.tsv",
            r"a\.tsv: line 2, column 'length': '0' is not a positive whole number",
        ),
        ("ident\tchr\tstart\nENSG00000000001\tchr1\t100\n", "a.tsv", r"a\.tsv: line 1: no gene id column"),
        ("gene_id\tchr\tbegin\nENSG00000000001\tchr1\t100\n", "a.tsv", r"a\.tsv: line 1: no start column"),
        (
            "gene_id\tchr\tstart\nENSG00000000001.1\tchr1\t100\nENSG00000000001.2\tchr2\t5\n",
            "a.tsv",
            r"a\.tsv: line 3: gene id 'ENSG00000000001' .* already given on line 2",
        ),
        (
            'chr1\tX\tgene\t10\tten\t.\t+\t.\tgene_id "ENSG00000000001";\n',
            "a.gtf",
            r"a\.gtf: line 1, column '5 \(end\)': 'ten'",
        ),
        (
            "chr1\tX\tgene\t10\t20\t.\t+\n",
            "a.gtf",
            r"a\.gtf: line 1: 7 tab-separated fields, a GTF line has 9",
        ),
        (
            'chr1\tX\tgene\t10\t20\t.\t+\t.\tgene_name "A";\n',
            "a.gtf",
            r"a\.gtf: line 1, column 9 .* no gene_id",
        ),
    ],
)
def test_bad_annotation_names_file_line_column(tmp_path: Path, text: str, name: str, pattern: str) -> None:
    bad = tmp_path / name
    bad.write_text(text)
    out = tmp_path / "s.zarr"
    with pytest.raises(InputError, match=pattern):
        ingest(write_matrix(tmp_path / "m.csv"), str(out), gene_annotation=bad)
    assert not out.exists()
