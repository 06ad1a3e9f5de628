"""Open the report in a real headless browser (Debian's chromium): no console errors, sections shown.

Skips when no chromium is installed (``apt-get install -y chromium``; .ci/run installs it).
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
from gexplain.pipelines.evaluate.stage import EvaluateParams
from gexplain.pipelines.report.build import SECTION_TITLES, build_report
from test_evaluate_store import make_demo_store

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def load_in_browser(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load ``page`` headless (1280 x 800 window); return the DOM after load and its console messages.

    ``extra`` replaces ``--dump-dom`` (e.g. ``--screenshot=PATH``); the DOM is then empty.
    """
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium browser installed (apt-get install -y chromium)")
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--window-size=1280,800",
        "--hide-scrollbars", *(extra or ("--dump-dom",)), page.resolve().as_uri(),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium could not run here: {exc}")
    if proc.returncode != 0 or (not extra and "<html" not in proc.stdout):
        pytest.skip(f"chromium could not load a page here (exit {proc.returncode}): {proc.stderr[-500:]}")
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.images = 0
        self._on = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._on = tag == "h2"
        if tag == "h2":
            self.h2.append("")
        if tag == "img":
            self.images += 1

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


def test_report_loads_without_console_errors(tmp_path: Path) -> None:
    url = make_demo_store(tmp_path)
    evaluate_store(url, EvaluateParams(k=5, faithfulness_ks=(1, 5), n_random=1))
    report = build_report(url, tmp_path / "report.html")
    dom, console = load_in_browser(report, tmp_path / "profile")
    assert console == []
    parsed = _Headings()
    parsed.feed(dom)
    assert parsed.h2 == list(SECTION_TITLES.values())
    assert parsed.images >= 6
    assert re.search(r"<title>gexplain report</title>", dom)


PROBE = """<script>
(function () {
  var out = {};
  var cards = Array.prototype.map.call(document.querySelectorAll("#summary .card"), function (c) {
    return c.getBoundingClientRect();
  });
  out.cards = cards.length;
  out.cardsTop = Math.min.apply(null, cards.map(function (r) { return r.top; }));
  out.cardsBottom = Math.max.apply(null, cards.map(function (r) { return r.bottom; }));
  out.viewport = window.innerHeight;
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
</script></body>"""


@pytest.fixture(scope="module")
def evaluated_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("browser")
    url = make_demo_store(path)
    evaluate_store(url, EvaluateParams(k=5, faithfulness_ks=[1, 5], n_random=1))
    return build_report(url, path / "report.html")


def test_first_screen_holds_the_summary_and_tables_work(evaluated_report: Path, tmp_path: Path) -> None:
    """In a 1280 x 800 window the four summary cards sit entirely on the first screen; sorting,
    filtering and the gene search work in the browser, with no console errors."""
    probed = tmp_path / "probed.html"
    probed.write_text(
        evaluated_report.read_text(encoding="utf-8").replace("</body>", PROBE, 1), encoding="utf-8"
    )
    dom, console = load_in_browser(probed, tmp_path / "profile")
    assert console == []
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the probe script did not run"
    out = json.loads(html.unescape(found.group(1)))
    assert out["cards"] == 4
    assert 0 < out["cardsTop"] and out["cardsBottom"] <= out["viewport"], out
    tables = evaluated_report.parent / "report_tables"
    top = pd.read_csv(tables / "top_genes_r1_ig.csv")
    expected = top[top["symbol"].str.lower().str.contains("sym8") | top["gene"].str.contains("sym8")]
    assert len(out["searchRows"]) == len(expected) > 0 and all("SYM8" in r for r in out["searchRows"])
    assert out["status"].startswith(f"{len(expected)} matching rows") or "matching rows" in out["status"]
    gt = pd.read_csv(tables / "ground_truth.csv")
    assert out["filterRows"] == int(gt.astype(str).apply(lambda r: "r1:ig" in "".join(r), axis=1).sum())
    auprc = gt["auprc"].to_numpy(float)
    assert [float(v) for v in out["ascending"]] == sorted(auprc.tolist())
    assert [float(v) for v in out["descending"]] == sorted(auprc.tolist(), reverse=True)


def test_screenshot_of_the_first_screen(evaluated_report: Path, tmp_path: Path) -> None:
    """A real headless-Chromium screenshot of the first screen (1280 x 800), kept for a human look."""
    shot = tmp_path / "first_screen.png"
    _, console = load_in_browser(evaluated_report, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 800)
    from matplotlib.image import imread

    pixels = imread(shot)[:, :, :3]
    assert pixels.std() > 0.05  # not a blank page: text, cards and tables are drawn
    cards_band = pixels[150:600]  # the summary cards: their borders and text are not background
    assert (cards_band < 0.9).mean() > 0.01


LAYOUT_PROBE = """<script>
(function () {
  var cards = Array.prototype.map.call(document.querySelectorAll("#summary .card"), function (c) {
    return c.getBoundingClientRect().bottom;
  });
  document.body.setAttribute("data-probe", JSON.stringify({cards: cards.length,
    bottom: Math.max.apply(null, cards), viewport: window.innerHeight}));
})();
</script></body>"""


def test_summary_fits_the_first_screen_with_many_long_classes(tmp_path: Path) -> None:
    """30 GTEx/TCGA-style classes with long names, 3 model sets, 4 run pairs: still one screen."""
    from gexplain.pipelines.report.html import page
    from gexplain.pipelines.report.summary import summary_section

    rng = np.random.default_rng(0)
    labels = [
        f"GTEx_Skin - Sun Exposed (Lower leg) {i}" if i % 2 else f"TCGA_TCGA-{i:04d}" for i in range(30)
    ]
    top = pd.DataFrame(
        [
            {
                "source": "run:integrated_gradients",
                "label": lab,
                "gene": f"ENSG{g:011d}",
                "rank": r + 1,
                "shared": True,
            }
            for lab in labels
            for r, g in enumerate(rng.choice(60000, 15, replace=False))
        ]
    )
    metrics = pd.DataFrame(
        {"model_set": [f"set{i // 5}" for i in range(15)], "arch": "mlp", "accuracy": 0.9, "macro_f1": 0.85}
    )
    classes = pd.DataFrame(
        [
            {"label": lab, "run_a": f"r{p}", "run_b": f"r{p + 1}", "explainer": "integrated_gradients", "k": 100,
             "spearman_mean": 0.8, "top_k_overlap_mean": 0.6}
            for p in range(4)
            for lab in ["all", *labels]
        ]
    )  # fmt: skip
    hidden = top.head(200).assign(contrast=[f"de/deseq2/{lab}_vs_rest" for lab in top.head(200)["label"]])
    section = summary_section(
        metrics,
        {"top_genes": top, "reproducibility_classes": classes, "hidden_to_de": hidden},
        {f"ENSG{g:011d}": f"GENE{g}" for g in range(60000)},
    )
    path = tmp_path / "many.html"
    path.write_text(page("gexplain report", "store", [section]).replace("</body>", LAYOUT_PROBE, 1))
    dom, console = load_in_browser(path, tmp_path / "profile-many")
    assert console == []
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found
    out = json.loads(html.unescape(found.group(1)))
    assert out["cards"] == 4 and out["bottom"] <= out["viewport"], out
