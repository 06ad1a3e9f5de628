"""Every long stage reports real totals outside a terminal: ingest through its storage callback
(merges counted as one growing total), normalize and export by Dask tasks, DE calibration by
permutations, evaluate's parts by sources and sample blocks, the report by sections."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import test_ingest_merge as merge_files  # tests/ is on sys.path under pytest
from gexplain.pipelines.de.analysis import execute, plan
from gexplain.pipelines.de.calibration import calibrate
from gexplain.pipelines.de.params import DeTest
from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.stage import EvaluateParams
from gexplain.pipelines.export import export_anndata
from gexplain.pipelines.ingest_stage import STAGE as INGEST
from gexplain.pipelines.ingest_stage import IngestParams
from gexplain.pipelines.normalize.stage import STAGE as NORMALIZE
from gexplain.pipelines.normalize.stage import NormalizeParams
from gexplain.pipelines.progress import Progress
from gexplain.pipelines.report.build import SECTION_TITLES
from gexplain.pipelines.report.stage import STAGE as REPORT
from gexplain.pipelines.report.stage import ReportParams
from gexplain.pipelines.stages import StageContext
from gexplain.storage.ingest import ingest
from gexplain.storage.store import open_store
from test_de_calibration import _store as calibration_store
from test_evaluate_store import N_PER_CLASS, make_demo_store

DONE = re.compile(r"(?P<what>.+): done (?P<done>\d+)/(?P<total>\d+) \(100%\) in \d+ s")


def _done(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    """Task -> its final count, from the ``done d/d`` lines (which must be complete)."""
    out = {}
    for record in caplog.records:
        m = DONE.fullmatch(record.getMessage())
        if m:
            assert m["done"] == m["total"], record.getMessage()
            out[m["what"]] = int(m["total"])
    return out


def _ctx(tmp_path: Path, store: str, name: str) -> StageContext:
    progress = Progress(log_every=0.0, heartbeat=False)
    return StageContext(
        run_dir=tmp_path, store_url=store, seed=0, runtime=None, progress=progress, stage_name=name
    )  # type: ignore[arg-type]


def test_ingest_reports_rows_through_its_callback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = merge_files._cohorts(tmp_path)
    params = IngestParams.model_validate(
        {"sources": [str(c["gct"])], "sample_sheets": [str(c["sheet"])], "chunk_gene": 4}
    )
    with caplog.at_level(logging.INFO, logger="gexplain"):
        INGEST.run(_ctx(tmp_path, str(tmp_path / "one.zarr"), "ingest"), params)
    counts = [r.getMessage().split(": ")[2].split(" ")[0] for r in caplog.records if "ETA" in r.getMessage()]
    assert counts == ["4/10", "8/10", "10/10"]  # 10 GCT gene rows in chunks of 4
    calls: list[tuple[int, int]] = []
    ingest(
        [c["gct"], c["root"]],
        str(tmp_path / "merged.zarr"),
        sample_sheets=[c["sheet"], c["gdc_sheet"]],
        merge=True,
        on_progress=lambda done, total: calls.append((done, total)),
    )
    n_merged = open_store(str(tmp_path / "merged.zarr")).sizes["sample"]
    assert n_merged == len(c["gtex_samples"]) + len(c["tcga_samples"])
    # GTEx gene rows, then TCGA sample rows, then the merged store's samples, one count
    assert calls[-1] == (len(c["gtex_genes"]) + len(c["tcga_samples"]) + n_merged,) * 2
    assert all(b[0] >= a[0] and b[1] >= a[1] and b[0] <= b[1] for a, b in zip(calls, calls[1:], strict=False))


def test_normalize_counts_dask_tasks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = calibration_store(tmp_path)
    with caplog.at_level(logging.INFO, logger="gexplain"):
        NORMALIZE.run(_ctx(tmp_path, store, "normalize"), NormalizeParams(layers=["cpm"]))
    done = _done(caplog)
    # 40 x 60 counts in (16, 32) chunks: 6 chunks, each read and written at least once
    assert done["normalize: size factors (dask tasks)"] >= 6
    assert done["normalize: write layers (dask tasks)"] >= 6


def test_calibration_counts_permutations(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = open_store(calibration_store(tmp_path))
    checked = plan(
        ds, DeTest.model_validate({"method": "welch", "layer": "log_expr", "contrasts": [["cond", "B", "A"]]})
    )
    progress = Progress(log_every=0.0, heartbeat=False)
    with caplog.at_level(logging.INFO, logger="gexplain"):
        calibrate(ds, checked, execute(ds, checked), 3, 0, progress=progress)
    assert _done(caplog) == {"de calibration: welch permutations": 3}  # nothing per rerun


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("progress")
    return path, make_demo_store(path)


def test_evaluate_parts_have_real_totals(demo: tuple[Path, str], caplog: pytest.LogCaptureFixture) -> None:
    path, url = demo
    opts = EvaluateParams(k=5, block=16, faithfulness_perturbations=4, n_random=1)
    with caplog.at_level(logging.INFO, logger="gexplain"):
        evaluate_store(url, opts, progress=Progress(log_every=0.0, heartbeat=False))
    n = 2 * N_PER_CLASS  # 40 samples; runs r1, r2 with one explainer each; one DE result (B vs A)
    blocks = -(-n // 16)
    assert _done(caplog) == {
        "evaluate: ground truth (sources)": 2 + 1,
        "evaluate: reproducibility (sample blocks)": blocks,  # r1 vs r2
        "evaluate: faithfulness (sample blocks)": 2 * (n // 8),  # blocks of 8, one variant
        "evaluate: biology (sample blocks)": 2 * (blocks + 1),  # + one overlap step per source
        "evaluate: hidden-to-DE (source x contrast)": 2,
    }


def test_report_and_export_report_their_steps(
    demo: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    path, url = demo
    with caplog.at_level(logging.INFO, logger="gexplain"):
        REPORT.run(_ctx(path, url, "report"), ReportParams())
        export_anndata(url, h5ad=path / "demo.h5ad", progress=Progress(log_every=0.0, heartbeat=False))
    done = _done(caplog)
    assert done["report: sections"] == len(SECTION_TITLES) + 1  # every section, then the page
    assert done["export: write demo.h5ad (dask tasks)"] >= 3  # the store's tpm and log_expr chunks
    assert (path / "report.html").exists() and (path / "demo.h5ad").exists()
