"""The HTML report: self-contained, every section present, tables as CSV, graceful when inputs are missing,
a first screen that answers (checked against direct computations on the store), readable figures."""

from __future__ import annotations

import html
import json
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
from gexplain.pipelines.report.build import SECTION_TITLES, build_report, saturation_tol
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
        self.figures_outside_grid = 0
        self.svgs = 0
        self.imgs = 0
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
        if tag == "svg":
            self.svgs += 1
            self.figures_outside_grid += not self._grid
        self.imgs += tag == "img"
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
    assert parser.figures_outside_grid == 0  # figures in grids
    assert parser.imgs == 0  # figures are inline SVG, not images
    for url in parser.urls:  # only in-page anchors
        assert url.startswith("#"), url
    # accuracy, volcano, consensus heatmap, reproducibility, saturation, ground truth, 2 faithfulness, scatter
    assert parser.svgs == 9
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
        "saturation_curves", "saturation_summary", "saturation_verdicts", "top_genes_consensus",
        "hidden_to_de_genes", "ground_truth_de_missed", "ground_truth_auprc",
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


def _visible(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment)))


def _attributions(url: str, run: str) -> tuple[np.ndarray, np.ndarray]:
    from gexplain.storage.store import open_store, read_result

    res = read_result(url, f"explain/{run}")
    labels = open_store(url)["sample_tissue"].values.astype(str)
    return np.asarray(res["attr_ig"].values, dtype=np.float64), labels


def test_summary_answers_from_the_evaluation(full_report: tuple[str, Path]) -> None:
    from gexplain.storage.store import read_result
    from scipy.stats import spearmanr

    url, report = full_report
    text = report.read_text(encoding="utf-8")
    assert text.index('<section id="summary">') < text.index('<section id="data">')
    summary = _summary_html(text)
    assert "0.90</span> held-out accuracy, default: mlp, 1 replicate, macro-F1 0.88" in summary  # stored
    a = np.asarray(read_result(url, "explain/r1")["attr_ig"].values, dtype=np.float64)
    b = np.asarray(read_result(url, "explain/r2")["attr_ig"].values, dtype=np.float64)
    rho = np.mean(
        [spearmanr(np.abs(x), np.abs(y)).statistic for x, y in zip(a, b, strict=True)]
    )  # scipy, on |attr|
    assert (
        f'<td class="text">ig</td><td class="text"><span title="mean over 1 run pair">{rho:.2f}</span>'
        in summary
    )
    for link in ("#models", "#reproducibility", "#top_genes", "#hidden", "#ground_truth"):
        assert f'href="{link}"' in summary
    assert 'id="gene-search"' in summary


def test_first_screen_consensus_by_hand(full_report: tuple[str, Path]) -> None:
    """The consensus of r1:ig and r2:ig (top 15 of each class's ranking), the sign of the signed
    class means read from the store and the DE call of the one contrast (welch, B vs A)."""
    url, report = full_report
    summary = _summary_html(report.read_text(encoding="utf-8"))
    tables = report.parent / "report_tables"
    ranks = {run: pd.read_csv(tables / f"top_genes_{run}_ig.csv") for run in ("r1", "r2")}
    signed = {run: _attributions(url, run) for run in ranks}
    row_of = {
        label: summary.split(f'<td class="text">{label}</td>', 1)[1].split("</tr>", 1)[0]
        for label in ("A", "B")
    }
    for label in ("A", "B"):
        top = {
            run: t[(t["label"] == label) & (t["rank"] <= 15)].set_index("gene")["rank"]
            for run, t in ranks.items()
        }
        genes = sorted(set(top["r1"].index) | set(top["r2"].index))
        agreement = {g: sum(g in top[r].index for r in top) for g in genes}
        mean_rank = {g: np.mean([top[r].get(g, 16) for r in top]) for g in genes}
        expected = sorted(genes, key=lambda g: (-agreement[g], mean_rank[g], g))[:5]
        badges = re.findall(
            r'<span class="cg" title="([^"]*)"><b>([^<]*)</b> ([^ ]*) <small>(\d)/2', row_of[label]
        )
        assert [bdg[0].split(":")[0] for bdg in badges] == expected
        for (_, symbol, sign, agree), gene in zip(badges, expected, strict=True):
            assert symbol == f"SYM{int(gene[1:])}" and int(agree) == agreement[gene]
            means = [x[lab == label, int(gene[1:])].mean() for x, lab in signed.values()]
            want = "+" if min(means) > 0 else "-" if max(means) < 0 else "mixed"
            assert html.unescape(sign) == want
    # welch tests B against A: genes 0-4 (padj 5e-5) are DE in B; A is tested by no contrast
    for gene_html in re.findall(r'<span class="cg".*?</span></small></span>', row_of["B"]):
        called = re.search(r"<b>SYM([0-4])</b>", gene_html) is not None
        assert ('<span class="yes">DE</span> welch' in gene_html) == called
    assert "DE not tested" in row_of["A"] and "DE</span>" not in row_of["A"]


def test_first_screen_de_missed_sentence_by_hand(full_report: tuple[str, Path]) -> None:
    """X of Y: informative genes with padj >= 0.05 in the DE result, in the global top 10 (as many
    as are informative) of mean |attribution| of at least one of the two runs (half of the sources)."""
    from gexplain.storage.store import open_store, read_result

    url, report = full_report
    visible = _visible(_summary_html(report.read_text(encoding="utf-8")))
    ds = open_store(url)
    informative = np.asarray(ds["truth_informative"].values, dtype=bool)
    missed = informative & ~(read_result(url, "de/welch/tissue_B_vs_A")["padj"].values < 0.05)
    tops = []
    for run in ("r1", "r2"):
        imp = np.abs(_attributions(url, run)[0]).mean(axis=0)
        top = np.zeros(imp.size, bool)
        top[np.argsort(-imp, kind="stable")[:10]] = True
        tops.append(top)
    x = int((missed & (tops[0] | tops[1])).sum())
    assert missed.sum() == 5  # genes 5-9, the non-linear ones
    assert f"attribution recovers {x} of 5 informative genes that DE misses (of 10 informative;" in visible
    gt = pd.read_csv(report.parent / "report_tables" / "ground_truth.csv")
    allg = gt[gt["subset"] == "all"]
    attr = allg.loc[allg["kind"] == "attribution", "auprc"].mean()
    de = allg.loc[allg["kind"] == "de", "auprc"].mean()
    assert f"all: attribution {attr:.2f} vs DE {de:.2f}" in visible


def test_first_screen_saturation_verdict_and_hidden_genes(full_report: tuple[str, Path]) -> None:
    _, report = full_report
    visible = _visible(_summary_html(report.read_text(encoding="utf-8")))
    tables = report.parent / "report_tables"
    curve = pd.read_csv(tables / "saturation_curves.csv").sort_values("n")
    values = dict(zip(curve["n"], curve["spearman_mean"], strict=True))
    flat = [n for n in sorted(values) if 2 * n in values and values[2 * n] - values[n] < 0.01]
    if flat:
        assert "saturated : 1 of 1 curve flat (gain < 0.01 mean Spearman per doubling of n)" in visible
        assert f"saturated at n = {flat[0]}" in visible
    else:
        assert "not saturated : 0 of 1 curve flat (gain < 0.01 mean Spearman per doubling of n)" in visible
    assert 'title="threshold from the evaluate default"' in report.read_text()  # no run config: said so
    hidden = pd.read_csv(tables / "hidden_to_de.csv")
    n_sources = hidden.groupby("gene")["source"].nunique().sort_values(ascending=False)
    assert f"{hidden['gene'].nunique()} distinct genes have strong, reproducible attribution" in visible
    assert f"over {hidden['source'].nunique()} sources and 1 contrast" in visible
    dedup = pd.read_csv(tables / "hidden_to_de_genes.csv").set_index("gene")["n_sources"]
    assert dedup.sort_index().to_dict() == n_sources.sort_index().to_dict()


def test_every_column_shown_is_in_the_glossary(full_report: tuple[str, Path]) -> None:
    from gexplain.pipelines.report.glossary import describe
    from gexplain.pipelines.report.html import column_names

    _, report = full_report
    text = report.read_text(encoding="utf-8")
    body, glossary = text.split('<section id="glossary">', 1)
    shown = column_names(body)
    assert len(shown) > 60
    missing = [c for c in shown if describe(c) is None]
    assert missing == []
    for column in shown:
        assert f"<dt>{html.escape(column)}</dt>" in glossary
        assert f'title="{html.escape(describe(column) or "")}"' in body  # the header's tooltip


def test_figures_are_svg_text_at_10_pt(full_report: tuple[str, Path]) -> None:
    """Every text of every figure is SVG text at >= 10 units of a viewBox measured in points."""
    _, report = full_report
    text = report.read_text(encoding="utf-8")
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert svgs
    for svg in svgs:
        width, box = re.search(r'width="([0-9.]+)pt".*?viewBox="0 0 ([0-9.]+) ', svg, flags=re.S).groups()
        assert float(width) == pytest.approx(float(box))  # one user unit = one point
        sizes = [float(v) for v in re.findall(r"font-size: ([0-9.]+)px", svg)]
        assert sizes and min(sizes) >= 10, sizes
    assert "-log10 adjusted p (padj)" in text and "-log10 p-value</text>" not in text
    assert "k top genes perturbed (Gaussian noise, sd = sigma x gene sd)" in text


def test_volcano_marks_the_cap_and_labels_do_not_overlap() -> None:
    from gexplain.pipelines.report.plots import P_CAP, volcano

    rng = np.random.default_rng(0)
    lfc = np.r_[rng.normal(size=200), np.linspace(2, 3, 12)]
    padj = np.r_[rng.uniform(0.001, 1, 200), np.zeros(12)]  # 12 genes at padj = 0: capped
    names = np.array([f"GENE{i}" for i in range(212)], dtype=object)
    fig = volcano(lfc, padj, "t", 0.05, names=names)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "-log10 adjusted p (padj)"
    texts = [t.get_text() for t in ax.texts]
    assert f"cap: 12 genes with padj < 1e-{P_CAP:.0f}" in texts
    labels = [t for t in ax.texts if t.get_text().startswith("GENE")]
    assert 1 <= len(labels) <= 8
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, one in enumerate(boxes):
        for other in boxes[i + 1 :]:
            assert not one.overlaps(other)
    cap_lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(cap_lines) == 1


def test_one_point_curve_is_a_marker_with_a_note() -> None:
    from gexplain.pipelines.report.plots import curves

    fig = curves(
        {"one": pd.DataFrame({"n": [1], "y": [0.5]}), "two": pd.DataFrame({"n": [1, 2], "y": [0.5, 0.6]})},
        "n", "y", "t", "n", "y", True,
    )  # fmt: skip
    one, two = fig.axes[0].get_lines()
    assert one.get_linestyle() == "None" and one.get_marker() == "D" and two.get_linestyle() == "-"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["one (one point: no curve)", "two"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2"]  # plain numbers, no mathtext


def test_header_shows_versions_and_the_escaped_run_config(tmp_path: Path) -> None:
    from gexplain.pipelines.versions import library_versions

    url = make_demo_store(tmp_path, models=False)
    config = {
        "run": {"name": "<script>alert(3)</script>"},
        "stage": [{"kind": "evaluate", "params": {"saturation": {"tol": 0.05}}}],
    }
    text = build_report(url, tmp_path / "h.html", run_config=config).read_text()
    header = text.split("<nav>", 1)[0]
    for name in ("gexplain", "torch", "numpy", "zarr", "ray"):
        assert f"{name} {library_versions((name,))[name]}" in header
    assert "<script>alert(3)" not in text
    assert html.escape(json.dumps(config, indent=2)) in header
    assert saturation_tol(config) == (0.05, "evaluate saturation.tol in the run config")
    bare = build_report(url, tmp_path / "bare.html").read_text().split("<nav>", 1)[0]
    assert "run config: none (report built outside a run" in bare


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
