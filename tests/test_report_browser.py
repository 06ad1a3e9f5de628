"""Open the report in a real headless browser (Debian's chromium): no console errors, sections shown.

Skips when no chromium is installed (``apt-get install -y chromium``; .ci/run installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_evaluate_store import make_demo_store

from pipelines.evaluate.run import evaluate_store
from pipelines.evaluate.stage import EvaluateParams
from pipelines.report.build import SECTION_TITLES, build_report

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def load_in_browser(page: Path, profile: Path) -> tuple[str, list[str]]:
    """Load ``page`` headless; return the DOM after load and the console messages it logged."""
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium browser installed (apt-get install -y chromium)")
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri(),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium could not run here: {exc}")
    if proc.returncode != 0 or "<html" not in proc.stdout:
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
