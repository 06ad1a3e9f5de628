"""Merging a GTEx-like GCT cohort with a TCGA-like GDC cohort; the ``ingest`` stage and CLI merge."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydantic
import pytest
import test_ingest_readers as files  # the file writers (tests/ is on sys.path under pytest)
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.ingest_stage import STAGE, IngestParams
from gexplain.pipelines.progress import SILENT
from gexplain.pipelines.stages import StageContext, get_stage
from gexplain.storage.ingest import ingest
from gexplain.storage.store import open_store


def _cohorts(tmp_path: Path) -> dict:
    rng = np.random.default_rng(11)
    # GTEx (GENCODE v26 versions) has genes 0..9; TCGA (v36 versions) has genes 3..12 in another order
    gtex_genes = [f"ENSG{i:011d}.{i % 3 + 1}" for i in range(10)]
    tcga_order = [12, 5, 3, 11, 4, 6, 9, 8, 7, 10]
    tcga_genes = [f"ENSG{i:011d}.{i % 4 + 5}" for i in tcga_order]
    gtex_samples = [f"GTEX-{i}" for i in range(6)]
    tcga_samples = [f"TCGA-{i}-01A" for i in range(4)]
    gtex_counts = files.nb_counts(rng, (10, 6))  # genes x samples
    tcga_counts = files.nb_counts(rng, (4, 10))  # samples x genes (tcga order)
    gct = files.write_gct(
        tmp_path / "gtex.gct.gz", gtex_genes, [f"G{i}" for i in range(10)], gtex_samples, gtex_counts
    )
    sheet = files.write_gtex_sheet(
        tmp_path / "attr.txt", gtex_samples, ["Breast"] * 6, ["Breast - Mammary"] * 6, [7.0] * 6
    )
    root, gdc_sheet, _ = files.write_gdc(
        tmp_path / "gdc",
        tcga_samples,
        tcga_genes,
        [f"G{i}" for i in tcga_order],
        tcga_counts,
        np.ones((4, 10)),
        ["Primary Tumor"] * 4,
    )
    return dict(
        gct=gct,
        sheet=sheet,
        root=root,
        gdc_sheet=gdc_sheet,
        gtex_genes=gtex_genes,
        tcga_genes=tcga_genes,
        tcga_order=tcga_order,
        gtex_counts=gtex_counts,
        tcga_counts=tcga_counts,
        gtex_samples=gtex_samples,
        tcga_samples=tcga_samples,
    )


def test_merge_gtex_tcga_reports_dropped_genes(tmp_path: Path) -> None:
    c = _cohorts(tmp_path)
    report = ingest(
        [c["gct"], c["root"]],
        str(tmp_path / "merged.zarr"),
        sample_sheets=[c["sheet"], c["gdc_sheet"]],
        merge=True,
        cohorts=["gtex", "tcga"],
        chunks={"sample": 4, "gene": 4},
        buffer_bytes=1,
    )
    # independent reference: set arithmetic on the ids the test wrote
    kept = [i for i in range(10) if 3 <= i <= 12]
    assert report.dropped_genes == {
        "gtex": [f"ENSG{i:011d}" for i in range(3)],
        "tcga": [f"ENSG{i:011d}" for i in (12, 11, 10)],
    }
    ds = open_store(report.url)
    assert list(ds["gene"].values) == [f"ENSG{i:011d}" for i in kept]
    assert list(ds["sample"].values) == c["gtex_samples"] + c["tcga_samples"]
    assert list(ds["sample_cohort"].values) == ["gtex"] * 6 + ["tcga"] * 4
    expected_gtex = c["gtex_counts"][kept].T
    tcga_col = {g: j for j, g in enumerate(c["tcga_order"])}
    expected_tcga = c["tcga_counts"][:, [tcga_col[i] for i in kept]]
    np.testing.assert_array_equal(ds["counts"].values, np.vstack([expected_gtex, expected_tcga]))
    assert list(ds["gene_id_versioned"].values) == [c["gtex_genes"][i] for i in kept]
    assert list(ds["gene_symbol"].values) == [f"G{i}" for i in kept]
    assert list(ds["sample_tissue"].values) == ["Breast"] * 6 + [""] * 4
    assert list(ds["sample_sample_type"].values) == [""] * 6 + ["Primary Tumor"] * 4
    assert np.isnan(ds["sample_smrin"].values[6:]).all()
    assert ds.attrs["merge"]["genes_dropped"] == {"gtex": 3, "tcga": 3}
    assert len(ds.attrs["sources"]) == 2 + 4 + 1  # gct + sheet, 4 GDC files + sheet
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ingest-merge-")]


def test_merge_rejects_shared_sample_ids(tmp_path: Path) -> None:
    c = _cohorts(tmp_path)
    out = tmp_path / "m.zarr"
    assert (
        main(
            [
                "ingest",
                str(c["gct"]),
                str(c["gct"]),
                "--merge",
                "--cohort",
                "a",
                "--cohort",
                "b",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert not out.exists()


def test_cli_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = _cohorts(tmp_path)
    out = tmp_path / "cli.zarr"
    code = main(
        [
            "ingest",
            str(c["gct"]),
            str(c["root"]),
            "--merge",
            "--sample-sheet",
            str(c["sheet"]),
            "--sample-sheet",
            str(c["gdc_sheet"]),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert re.search(r"dropped \(gtex\)\s+3 genes absent", capsys.readouterr().out)
    assert open_store(str(out)).sizes == {"sample": 10, "gene": 7}


def test_ingest_stage(tmp_path: Path) -> None:
    assert get_stage("ingest") is STAGE
    c = _cohorts(tmp_path)
    params = IngestParams.model_validate(
        {"sources": [str(c["gct"])], "sample_sheets": [str(c["sheet"])], "chunk_gene": 4}
    )
    with pytest.raises(pydantic.ValidationError, match="colum"):
        IngestParams.model_validate({"sources": [str(c["gct"])], "colum": "x"})
    store = tmp_path / "run" / "store.zarr"
    ctx = StageContext(run_dir=tmp_path / "run", store_url=str(store), seed=0, runtime=None, progress=SILENT)  # type: ignore[arg-type]
    outputs = STAGE.run(ctx, params)
    assert outputs["n_samples"] == 6 and outputs["layer"] == "counts"
    np.testing.assert_array_equal(open_store(str(store))["counts"].values, c["gtex_counts"].T)
    STAGE.run(ctx, params)  # a rerun replaces the store
    assert open_store(str(store)).sizes == {"sample": 6, "gene": 10}
