"""The HTML report: self-contained, every section present, tables as CSV, graceful when inputs are missing."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.cli.main import main
from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.saturation_stage import SaturationParams, saturation_part
from gexplain.pipelines.evaluate.stage import EvaluateParams
from gexplain.pipelines.evaluate.tables import write_table
from gexplain.pipelines.report.build import SECTION_TITLES, build_report
from gexplain.storage.store import create_store
from test_evaluate_store import make_demo_store


class _Collect(HTMLParser):
    """Collect h2 texts, resource URLs (src/href) and script tags."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.urls: list[str] = []
        self.scripts = 0
        self.script_src = 0
        self.images_outside_grid = 0
        self._in_h2 = False
        self._grid = 0
        self._stack: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_h2 = tag == "h2"
        if tag == "h2":
            self.h2.append("")
        if tag == "script":
            self.scripts += 1
            self.script_src += any(k == "src" for k, _ in attrs)
        if tag == "div":
            is_grid = ("class", "grid") in attrs
            self._stack.append(is_grid)
            self._grid += is_grid
        if tag == "img" and not self._grid:
            self.images_outside_grid += 1
        for key, value in attrs:
            if key in ("src", "href") and value is not None:
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False
        if tag == "div" and self._stack:
            self._grid -= self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.h2[-1] += data


def _parse(path: Path) -> tuple[_Collect, str]:
    text = path.read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(text)
    return parser, text


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("report")
    url = make_demo_store(path)
    opts = EvaluateParams(k=5, faithfulness_ks=(1, 5), n_random=1)
    evaluate_store(url, opts)
    params = SaturationParams(enabled=True, axes=["references"], pool=4, samples=4, n_steps=8, draws=1)
    for table, df in saturation_part(url, opts, params).items():
        write_table(url, opts.name, table, df)
    return url, build_report(url, path / "out" / "report.html")


def test_report_is_self_contained_with_every_section(full_report: tuple[str, Path]) -> None:
    _, report = full_report
    parser, text = _parse(report)
    assert parser.h2 == list(SECTION_TITLES.values())
    assert parser.scripts == 1 and parser.script_src == 0  # one small inline script, nothing loaded
    assert parser.images_outside_grid == 0  # figures in grids
    for url in parser.urls:  # only embedded images and in-page anchors
        assert url.startswith(("data:image/png;base64,", "#")), url
    images = [u for u in parser.urls if u.startswith("data:")]
    # accuracy, volcano, 2 heatmaps, reproducibility, saturation, ground truth, 2 faithfulness, scatter
    assert len(images) == 10
    for img in images:
        assert base64.b64decode(img.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "not computed" not in text


def test_report_tables_written_as_csv(full_report: tuple[str, Path]) -> None:
    url, report = full_report
    tables = report.parent / "report_tables"
    gt = pd.read_csv(tables / "ground_truth.csv")
    assert set(gt["source"]) == {"r1:ig", "r2:ig", "de/welch/tissue_B_vs_A"}
    de = pd.read_csv(tables / "de_summary.csv")
    assert de.loc[0, "padj<0.05"] == 5  # hand-made DE result: genes 0-4 have padj = 5e-5
    classes = pd.read_csv(tables / "data_classes.csv")
    assert classes.set_index("class")["samples"].to_dict() == {"A": 20, "B": 20}
    for name in (
        "model_metrics", "faithfulness", "hidden_to_de", "class_overlaps", "reproducibility_classes",
        "saturation_curves", "saturation_summary",
    ):  # fmt: skip
        assert (tables / f"{name}.csv").is_file(), name


def test_report_degrades_gracefully_on_a_bare_store(tmp_path: Path) -> None:
    url = str(tmp_path / "bare.zarr")
    w = create_store(
        url,
        sample_ids=np.array(["a", "b", "c"], dtype=object),
        gene_ids=np.array(["g1", "g2"], dtype=object),
        layers={"counts": "int32"},
    )
    w.write_block({}, {"counts": np.ones((3, 2), np.int32)})
    w.commit()
    report = build_report(url, tmp_path / "bare.html")
    parser, text = _parse(report)
    assert parser.h2 == list(SECTION_TITLES.values())
    assert len(re.findall(r"not computed", text)) >= 7
    assert "no label column" in text


def test_report_cli(tmp_path: Path) -> None:
    url = make_demo_store(tmp_path, models=False)
    out = tmp_path / "cli.html"
    assert main(["report", url, "--out", str(out)]) == 0
    assert out.is_file() and (tmp_path / "cli_tables" / "de_summary.csv").is_file()
    assert main(["report", url, "--out", str(tmp_path / "r.pdf")]) == 2
    assert main(["report", str(tmp_path / "missing.zarr"), "--out", str(out)]) == 2


def _summary_html(text: str) -> str:
    return text.split('<section id="summary">', 1)[1].split("</section>", 1)[0]


def test_summary_answers_from_the_evaluation(full_report: tuple[str, Path]) -> None:
    from gexplain.storage.store import read_result
    from scipy.stats import spearmanr

    url, report = full_report
    text = report.read_text(encoding="utf-8")
    assert text.index('<section id="summary">') < text.index('<section id="data">')
    summary = _summary_html(text)
    assert "0.90</span> held-out accuracy" in summary  # the model's stored held-out accuracy 0.9
    a = np.asarray(read_result(url, "explain/r1")["attr_ig"].values, dtype=np.float64)
    b = np.asarray(read_result(url, "explain/r2")["attr_ig"].values, dtype=np.float64)
    rho = np.mean(
        [spearmanr(np.abs(x), np.abs(y)).statistic for x, y in zip(a, b, strict=True)]
    )  # scipy, on |attr|
    assert f"{rho:.2f}</span> mean per-sample Spearman of |attribution| between runs r1 and r2" in summary
    tables = report.parent / "report_tables"
    sat = pd.read_csv(tables / "saturation_summary.csv").iloc[0]
    curve = pd.read_csv(tables / "saturation_curves.csv").sort_values("n")
    assert sat["variant"] == "intra_model"  # the demo store has one model: said on screen
    note = f"{sat['curve']} (one model&#x27;s items in disjoint subsets: tends to 1, not comparable with Zhao et al.)"
    if pd.isna(sat["saturation_n_spearman"]):
        gain = curve["spearman_mean"].iloc[-1] - curve["spearman_mean"].iloc[-2]
        assert f"{note}: not saturated" in summary and f"still gained {gain:+.3f} Spearman" in summary
    else:
        assert f"{note}: saturated at n = {int(sat['saturation_n_spearman'])}" in summary
    top = pd.read_csv(tables / "top_genes_r1_ig.csv")
    for label in ("A", "B"):
        best = top[top["label"] == label].sort_values("rank")["symbol"].head(5)
        assert f'<td class="text">{label}</td><td class="text g">{", ".join(best)}</td>' in summary
    hidden = pd.read_csv(tables / "hidden_to_de.csv")
    assert f'<span class="big">{hidden["gene"].nunique()}</span> genes' in summary
    for link in ("#models", "#reproducibility", "#top_genes", "#hidden"):
        assert f'href="{link}"' in summary
    assert 'id="gene-search"' in summary


def test_report_shows_no_raw_dicts(full_report: tuple[str, Path]) -> None:
    _, report = full_report
    visible = re.sub(r"<script>.*?</script>|<style>.*?</style>|<[^>]+>", " ", report.read_text(), flags=re.S)
    assert not re.search(r"\{'|\{&#x27;|\{&quot;|\{\"", visible), "a Python dict is shown as text"
    assert "informative genes (5 linear, 5 nonlinear)" in visible


def test_report_escapes_every_string(tmp_path: Path) -> None:
    from gexplain.storage.store import open_store

    evil_symbol = '<img src=x onerror="alert(1)">'
    evil_label = 'A&B"<script>alert(2)</script>'
    url = make_demo_store(tmp_path)
    store = open_store(url)
    from gexplain.storage.store import create_store as _create

    w = _create(
        str(tmp_path / "evil.zarr"),
        sample_ids=store["sample"].values.astype(str).astype(object),
        gene_ids=store["gene"].values.astype(str).astype(object),
        coords={
            "sample_tissue": (
                "sample",
                np.where(store["sample_tissue"].values.astype(str) == "A", evil_label, "B").astype(object),
            ),
            "gene_symbol": ("gene", np.array([evil_symbol] + [f"S{i}" for i in range(49)], dtype=object)),
        },
        layers={"tpm": "float32"},
        attrs={"label_column": "sample_tissue", "simulator": {"name": "<b>sim</b>", "params": {"x": "<i>"}}},
    )
    w.write_block({}, {"tpm": store["tpm"].values})
    w.commit()
    text = build_report(str(tmp_path / "evil.zarr"), tmp_path / "evil.html").read_text()
    assert "<img src=x" not in text and "<script>alert" not in text and "<b>sim</b>" not in text
    assert "A&amp;B&quot;&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "&lt;b&gt;sim&lt;/b&gt;" in text
