"""Open the report in a real headless browser (Debian's chromium) at 1400 x 900: no console errors,
the first screen answers (consensus table, DE-miss sentence, saturation verdict within the first
900 px), no text is clipped, figure text is rendered at >= 10 pt, tables sort and filter.

A probe script appended to the page measures the layout and writes the result into the DOM, which
``--dump-dom`` returns. Skips when no chromium is installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gexplain.pipelines.evaluate.run import evaluate_store
from gexplain.pipelines.evaluate.saturation_stage import SaturationParams, saturation_part
from gexplain.pipelines.evaluate.stage import EvaluateParams
from gexplain.pipelines.evaluate.tables import write_table
from gexplain.pipelines.report.build import SECTION_TITLES, build_report
from test_evaluate_store import make_demo_store

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
WIDTH, HEIGHT = 1400, 900
TEN_PT_PX = 10 * 96 / 72


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def load_in_browser(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load ``page`` headless (1400 x 900 window); return the DOM after load and its console messages.

    ``extra`` replaces ``--dump-dom`` (e.g. ``--screenshot=PATH``); the DOM is then empty.
    """
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium browser installed (apt-get install -y chromium)")
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
        f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", *(extra or ("--dump-dom",)),
        page.resolve().as_uri(),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium could not run here: {exc}")
    if proc.returncode != 0 or (not extra and "<html" not in proc.stdout):
        pytest.skip(f"chromium could not load a page here (exit {proc.returncode}): {proc.stderr[-500:]}")
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


def probe(page: str, script: str, path: Path, profile: Path) -> dict:
    """Append ``script`` (which sets ``data-probe`` on the body) to ``page``, load it, return the probe."""
    path.write_text(page.replace("</body>", f"<script>{script}</script></body>", 1), encoding="utf-8")
    dom, console = load_in_browser(path, profile)
    assert console == []
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe script did not run"
    return json.loads(html.unescape(found.group(1)))


LAYOUT = """
(function () {
  function clipped() {
    var out = [];
    Array.prototype.forEach.call(document.querySelectorAll("body *"), function (el) {
      if (el.closest("svg") || el.tagName === "SCRIPT" || !el.textContent.trim()) { return; }
      var cs = getComputedStyle(el);
      var summary = el.closest("#summary") !== null;
      function hides(v) { return /hidden|clip/.test(v) || (summary && /auto|scroll/.test(v)); }
      var wide = el.scrollWidth > el.clientWidth + 1, tall = el.scrollHeight > el.clientHeight + 1;
      if ((hides(cs.overflowX) && wide) || (hides(cs.overflowY) && tall) || (cs.textOverflow === "ellipsis" && wide)) {
        out.push(el.tagName.toLowerCase() + "." + el.className + "#" + el.id);
      }
    });
    if (document.documentElement.scrollWidth > window.innerWidth + 1) { out.push("page wider than the window"); }
    return out;
  }
  function svgText() {
    var min = Infinity, outside = [];
    Array.prototype.forEach.call(document.querySelectorAll("figure svg"), function (svg) {
      var r = svg.getBoundingClientRect(), scale = r.width / svg.viewBox.baseVal.width;
      Array.prototype.forEach.call(svg.querySelectorAll("text"), function (t) {
        if (!t.textContent.trim()) { return; }
        min = Math.min(min, parseFloat(getComputedStyle(t).fontSize) * scale);
        var b = t.getBoundingClientRect();
        if (b.left < r.left - 1 || b.right > r.right + 1 || b.top < r.top - 1 || b.bottom > r.bottom + 1) {
          outside.push(t.textContent);
        }
      });
    });
    return {minFontPx: min, outside: outside};
  }
  function box(el) {  // page coordinates: where the element lies on the first screen, whatever the window height
    if (!el) { return null; }
    var r = el.getBoundingClientRect();
    return {top: r.top + window.scrollY, bottom: r.bottom + window.scrollY, text: el.textContent};
  }
  var paragraphs = Array.prototype.slice.call(document.querySelectorAll("#summary p"));
  var out = {
    viewport: [window.innerWidth, window.innerHeight],
    clipped: clipped(),
    svg: svgText(),
    consensus: box(document.getElementById("t-summary-consensus")),
    deMiss: box(paragraphs.filter(function (p) { return /attribution recovers/.test(p.textContent); })[0]),
    verdict: box(document.querySelector("#summary .big.yes, #summary .big.no")),
    cards: Array.prototype.map.call(document.querySelectorAll("#summary .card"), box)
  };
  document.body.setAttribute("data-probe", JSON.stringify(out));
})();
"""

CLIP_TEST_PAGE = """<!DOCTYPE html><html><body>
<div id="cut" style="width: 80px; height: 1.2em; overflow: hidden">a sentence far too long for its box</div>
<div style="width: 200px; overflow: hidden">fits</div>
</body></html>"""


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.svgs = 0
        self._on = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._on = tag == "h2"
        if tag == "h2":
            self.h2.append("")
        self.svgs += tag == "svg"

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._on = False

    def handle_data(self, data: str) -> None:
        if self._on:
            self.h2[-1] += data


def test_browser_detects_console_errors(tmp_path: Path) -> None:
    """The check itself can fail: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><h2>x</h2><script>undefinedFunction();</script></body></html>")
    _, console = load_in_browser(bad, tmp_path / "profile-bad")
    assert any("undefinedFunction" in line for line in console)


def test_clip_probe_detects_clipped_text(tmp_path: Path) -> None:
    """The check itself can fail: a box that cuts its own text is reported, one that fits is not."""
    out = probe(CLIP_TEST_PAGE, LAYOUT, tmp_path / "clip.html", tmp_path / "profile-clip")
    assert out["clipped"] == ["div.#cut"]


@pytest.fixture(scope="module")
def evaluated_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser")
    url = make_demo_store(path)
    opts = EvaluateParams(k=5, faithfulness_ks=[1, 5], n_random=1)
    evaluate_store(url, opts)
    params = SaturationParams(enabled=True, axes=["references"], pool=4, samples=4, n_steps=8, draws=1)
    for table, df in saturation_part(url, opts, params).items():
        write_table(url, opts.name, table, df)
    return build_report(url, path / "report.html")


def test_report_loads_without_console_errors(evaluated_report: Path, tmp_path: Path) -> None:
    dom, console = load_in_browser(evaluated_report, tmp_path / "profile")
    assert console == []
    parsed = _Headings()
    parsed.feed(dom)
    assert parsed.h2 == list(SECTION_TITLES.values())
    assert parsed.svgs >= 6
    assert re.search(r"<title>gexplain report</title>", dom)


def test_first_screen_answers_and_nothing_is_clipped(evaluated_report: Path, tmp_path: Path) -> None:
    """At 1400 x 900 the consensus table, the DE-miss sentence and the saturation verdict lie
    within the first 900 px; no element cuts its text; figure text is >= 10 pt and inside its figure."""
    out = probe(
        evaluated_report.read_text(encoding="utf-8"), LAYOUT, tmp_path / "p.html", tmp_path / "profile"
    )
    assert out["viewport"][0] == WIDTH
    assert out["clipped"] == []
    for key in ("consensus", "deMiss", "verdict"):
        assert out[key] is not None, key
        assert 0 < out[key]["top"] and out[key]["bottom"] <= HEIGHT, (key, out[key])
    assert re.search(r"attribution recovers \d+ of 5 informative genes that DE misses", out["deMiss"]["text"])
    assert out["verdict"]["text"] in ("saturated", "not saturated")
    assert "SYM" in out["consensus"]["text"]
    assert all(card["bottom"] <= HEIGHT for card in out["cards"]), [c["bottom"] for c in out["cards"]]
    assert out["svg"]["minFontPx"] >= TEN_PT_PX - 0.05, out["svg"]
    assert out["svg"]["outside"] == []


TABLES = """
(function () {
  var out = {};
  function visible(id) {
    var t = document.getElementById(id);
    return Array.prototype.filter.call(t.tBodies[0].rows, function (r) { return r.style.display !== "none"; })
      .map(function (r) { return r.textContent; });
  }
  var search = document.getElementById("gene-search");
  search.value = "sym8";
  search.dispatchEvent(new Event("input"));
  out.searchRows = visible("t-top_genes_r1_ig");
  out.status = document.getElementById("gene-search-status").textContent;
  search.value = "";
  search.dispatchEvent(new Event("input"));
  var box = document.getElementById("t-ground_truth-filter");
  box.value = "r1:ig";
  box.dispatchEvent(new Event("input"));
  out.filterRows = visible("t-ground_truth").length;
  box.value = "";
  box.dispatchEvent(new Event("input"));
  var table = document.getElementById("t-ground_truth");
  var heads = Array.prototype.map.call(table.tHead.rows[0].cells, function (c) { return c.textContent; });
  var col = heads.indexOf("auprc");
  function column() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[col].getAttribute("data-v"); });
  }
  table.tHead.rows[0].cells[col].click();
  out.ascending = column();
  table.tHead.rows[0].cells[col].click();
  out.descending = column();
  document.body.setAttribute("data-probe", JSON.stringify(out));
})();
"""


def test_tables_sort_filter_and_search_in_the_browser(evaluated_report: Path, tmp_path: Path) -> None:
    out = probe(
        evaluated_report.read_text(encoding="utf-8"), TABLES, tmp_path / "t.html", tmp_path / "profile"
    )
    tables = evaluated_report.parent / "report_tables"
    top = pd.read_csv(tables / "top_genes_r1_ig.csv")
    expected = top[top["symbol"].str.lower().str.contains("sym8") | top["gene"].str.contains("sym8")]
    assert len(out["searchRows"]) == len(expected) > 0 and all("SYM8" in r for r in out["searchRows"])
    assert "matching rows" in out["status"]
    gt = pd.read_csv(tables / "ground_truth.csv")
    assert out["filterRows"] == int(gt.astype(str).apply(lambda r: "r1:ig" in "".join(r), axis=1).sum())
    auprc = gt["auprc"].to_numpy(float)
    assert [float(v) for v in out["ascending"]] == sorted(auprc.tolist())
    assert [float(v) for v in out["descending"]] == sorted(auprc.tolist(), reverse=True)


def test_screenshot_of_the_first_screen(evaluated_report: Path, tmp_path: Path) -> None:
    """A real headless-Chromium screenshot of the first screen (1400 x 900), kept for a human look."""
    shot = tmp_path / "first_screen.png"
    _, console = load_in_browser(evaluated_report, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    from matplotlib.image import imread

    pixels = imread(shot)[:, :, :3]
    assert pixels.std() > 0.05  # not a blank page: text, cards and tables are drawn
    assert (pixels[150:700] < 0.9).mean() > 0.01  # the summary cards: borders and text


def test_first_screen_fits_with_many_long_classes(tmp_path: Path) -> None:
    """30 GTEx/TCGA-style classes with long names, 3 model sets, 4 run pairs, 2 explainers x 3
    saturation axes, 200 hidden genes: the four answer cards still fit 1400 x 900 (the model-accuracy
    card may fall below) and nothing is clipped."""
    from gexplain.pipelines.report.html import page
    from gexplain.pipelines.report.summary import Answers, summary_section

    rng = np.random.default_rng(0)
    labels = [
        f"GTEx_Skin - Sun Exposed (Lower leg) {i}" if i % 2 else f"TCGA_TCGA-{i:04d}" for i in range(30)
    ]
    consensus = pd.DataFrame(
        [
            {"label": lab, "consensus_rank": r + 1, "gene": f"ENSG{g:011d}", "symbol": f"GENE{g}",
             "agreement": 4 - r % 3, "n_sources": 4, "mean_rank": r + 1.0, "sign": "+-"[r % 2] if r % 3 else "mixed",
             "mean_attr": 0.1, "de_call": "yes: deseq2, mannwhitney" if r % 2 else "no (deseq2, mannwhitney)"}
            for lab in labels
            for r, g in enumerate(rng.choice(60000, 15, replace=False))
        ]
    )  # fmt: skip
    metrics = pd.DataFrame(
        {"model_set": [f"set{i // 5}" for i in range(15)], "arch": "mlp", "accuracy": 0.9, "macro_f1": 0.85}
    )
    classes = pd.DataFrame(
        [
            {"label": lab, "run_a": f"r{p}", "run_b": f"r{p + 1}", "explainer": e, "k": 100,
             "spearman_mean": 0.8, "top_k_overlap_mean": 0.6}
            for p in range(4)
            for e in ("integrated_gradients", "deeplift")
            for lab in ["all", *labels]
        ]
    )  # fmt: skip
    verdicts = pd.DataFrame(
        [
            {"explainer": e, "axis": axis, "variant": "resampled" if axis == "models" else "inter_model",
             "n_models": 5, "points": 4, "max_n": 8, "saturated": axis != "references",
             "saturation_n": 4.0 if axis != "references" else np.nan, "last_gain": 0.03}
            for e in ("integrated_gradients", "deeplift")
            for axis in ("repeats", "references", "models")
        ]
    )  # fmt: skip
    hidden = pd.DataFrame(
        {
            "gene": [f"ENSG{i:011d}" for i in range(200)],
            "symbol": [f"GENE{i}" for i in range(200)],
            "n_sources": 4,
            "classes": ", ".join(labels[:3]),
            "contrasts": "de/deseq2/x",
            "mean_abs_attr": 1.0,
            "padj": 0.5,
        }
    )
    de_missed = pd.DataFrame(
        {"subset": ["all", "linear", "nonlinear"], "n_informative": [128, 64, 64], "n_de_missed": [70, 6, 64],
         "n_recovered": [30, 2, 28], "n_sources": 4}
    )  # fmt: skip
    auprc = pd.DataFrame(
        {"subset": ["all", "linear", "nonlinear"], "auprc_attribution": [0.4, 0.6, 0.18],
         "auprc_de": [0.3, 0.55, 0.07], "n_attribution": 4, "n_de": 2}
    )  # fmt: skip
    answers = Answers(
        metrics=metrics, consensus=consensus, de_missed=de_missed, auprc=auprc, truth_k=100,
        reproducibility=classes, verdicts=verdicts, hidden=hidden, hidden_sources=4, hidden_contrasts=31,
    )  # fmt: skip
    text = page("gexplain report", ["store", "versions"], [summary_section(answers)])
    out = probe(text, LAYOUT, tmp_path / "many.html", tmp_path / "profile-many")
    assert out["clipped"] == []
    answers = [c for c in out["cards"] if not c["text"].startswith("Model accuracy")]
    assert len(answers) == 4 and all(card["bottom"] <= HEIGHT for card in answers), [
        c["bottom"] for c in answers
    ]
    assert out["deMiss"]["bottom"] <= HEIGHT and out["verdict"]["text"] == "not saturated"
    assert "25 more classes in the section" in text
