"""HTML building blocks of the report: escaped text, interactive tables, figure grids, sections.

The page is one self-contained file: inline CSS, figures as inline SVG (:func:`figure_svg`, text
kept as text at 10 pt) and one small inline script (:data:`SCRIPT`: click a column header to sort,
type to filter a table, search gene names across every table). No external resources, so it
opens anywhere (offline, in a mail attachment). Every string that comes from data is HTML-escaped
(:func:`esc`; matplotlib escapes the text it writes into SVG); the script reads the page, never
data from elsewhere, and writes only text (``textContent``). Each column header carries its
glossary entry as a tooltip (:func:`gexplain.pipelines.report.glossary.describe`).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from gexplain.pipelines.report.glossary import describe
from gexplain.pipelines.report.plots import styled
from matplotlib.figure import Figure

COLUMN_PX = 420  # narrowest figure column of a grid, CSS px
GENE_COLUMNS = frozenset({"gene", "symbol", "gene_symbol", "genes"})

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1360px;
       color: #222; line-height: 1.4; padding: .4em 1em 2em; }
h1 { font-size: 1.5em; margin: .3em 0 0; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; color: #234; }
h3 { color: #345; margin: .8em 0 .3em; }
.sub { color: #555; font-size: .85em; margin: .1em 0; }
.sub details { display: inline; }
.sub pre { font-size: .95em; background: #f6f8fa; padding: .4em; white-space: pre-wrap; }
nav { font-size: .85em; margin: .2em 0 .3em; }
nav a { margin-right: .9em; white-space: nowrap; }
table { border-collapse: collapse; font-size: 0.85em; margin: .3em 0 .2em; }
th, td { border: 1px solid #ccc; padding: .2em .45em; text-align: right; }
th { background: #eef2f6; position: sticky; top: 0; }
table.data th { cursor: pointer; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
.tblwrap { margin: .5em 0 .2em; }
.tbl { max-height: 26em; overflow: auto; display: inline-block; max-width: 100%; vertical-align: top; }
.filter { display: block; }
.filter, #gene-search { font: inherit; font-size: .85em; padding: .15em .4em; margin: .2em 0; width: 16em; }
.note, .csv { color: #555; font-size: .85em; }
.missing { color: #a33; font-style: italic; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: .8em; }
.grid figure { margin: 0; min-width: 0; }
.grid figure.wide { grid-column: 1 / -1; }
figure svg { max-width: 100%; height: auto; display: block; }
#summary h2 { margin: .2em 0 .1em; font-size: 1.2em; }
.cards { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: .6em; align-items: start; }
.cards .col { display: grid; gap: .6em; min-width: 0; }
.card { border: 1px solid #cdd5de; border-radius: 6px; padding: .3em .7em .4em; background: #fafcfe; min-width: 0; }
.card h3 { margin: .1em 0 .25em; font-size: 1em; }
.card p { margin: .15em 0; font-size: .9em; }
.big { font-size: 1.2em; font-weight: 600; }
.card table { font-size: .8em; margin: .2em 0; }
.cg { display: inline-block; margin: 0 .5em .1em 0; }
.cg small { color: #555; }
.yes { color: #1a6e2e; font-weight: 600; }
.no { color: #a33; font-weight: 600; }
.search { font-size: .85em; margin: .1em 0 .3em; }
tr.hit td.g { background: #fff3b0; }
dl.glossary dt { font-weight: 600; margin-top: .3em; }
dl.glossary dd { margin-left: 1.5em; }
"""

SCRIPT = """
(function () {
  "use strict";
  function val(td) {
    var raw = td.getAttribute("data-v");
    var text = raw === null ? td.textContent : raw;
    var num = parseFloat(text);
    return (raw !== null || /^\\s*[-+]?(\\d|\\.\\d)/.test(text)) && !isNaN(num) ? num : text.toLowerCase();
  }
  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var asc = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = val(a.cells[index]), y = val(b.cells[index]);
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
  }
  var search = document.getElementById("gene-search");
  var status = document.getElementById("gene-search-status");
  function apply(table) {
    var box = document.getElementById(table.id + "-filter");
    var q = box ? box.value.trim().toLowerCase() : "";
    var g = search ? search.value.trim().toLowerCase() : "";
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0] ? table.tBodies[0].rows : [], function (row) {
      var ok = !q || row.textContent.toLowerCase().indexOf(q) >= 0;
      var hit = false;
      if (g && table.classList.contains("genes")) {
        Array.prototype.forEach.call(row.querySelectorAll("td.g"), function (td) {
          if (td.textContent.toLowerCase().indexOf(g) >= 0) { hit = true; }
        });
        ok = ok && hit;
      }
      row.style.display = ok ? "" : "none";
      row.classList.toggle("hit", hit);
      if (ok) { shown += 1; }
    });
    return shown;
  }
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.data"));
  tables.forEach(function (table) {
    var head = table.tHead ? table.tHead.rows[0] : null;
    if (head) {
      Array.prototype.forEach.call(head.cells, function (th, i) {
        th.title = th.title ? th.title + " (click to sort)" : "click to sort";
        th.addEventListener("click", function () { sortBy(table, i, th); });
      });
    }
    var box = document.getElementById(table.id + "-filter");
    if (box) { box.addEventListener("input", function () { apply(table); }); }
  });
  if (search) {
    search.addEventListener("input", function () {
      var rows = 0, hitTables = 0;
      tables.forEach(function (table) {
        if (!table.classList.contains("genes")) { return; }
        var n = apply(table);
        if (n) { rows += n; hitTables += 1; }
      });
      if (status) {
        status.textContent = search.value.trim()
          ? rows + " matching rows in " + hitTables + " gene tables (highlighted below)" : "";
      }
    });
  }
})();
"""


def esc(text: object) -> str:
    """HTML-escape any value's string form (quotes included)."""
    return html.escape(str(text), quote=True)


def figure_svg(fig: Figure) -> str:
    """Render a matplotlib figure as a ``<figure>`` holding inline SVG (text as ``<text>``).

    A figure wider than a report column (:data:`COLUMN_PX` at 96 px per inch) spans the whole
    row, so it is never scaled below its own size (and its 10 pt text below 10 pt) at 1400 px.

    Parameters
    ----------
    fig
        The figure (created with :class:`matplotlib.figure.Figure`, no pyplot state).
    """
    buf = io.StringIO()
    with styled():
        fig.savefig(buf, format="svg", bbox_inches="tight", dpi=150, metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    width_pt = float(re.search(r'<svg[^>]*\swidth="([0-9.]+)pt"', svg).group(1))  # type: ignore[union-attr]
    title = fig.axes[0].get_title() if fig.axes else "figure"
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{esc(title or "figure")}" ', 1)
    wide = ' class="wide"' if width_pt * 96 / 72 > COLUMN_PX else ""
    return f"<figure{wide}>{svg}</figure>"


def fmt_number(value: float) -> str:
    """Format a float for display: 4 significant decimals, scientific when tiny or huge."""
    if np.isnan(value):
        return ""
    if (abs(value) < 1e-3 and value != 0) or abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _cell(value: object, gene: bool) -> str:
    g = " g" if gene else ""
    if isinstance(value, bool | np.bool_):
        return f'<td class="text{g}">{"yes" if value else "no"}</td>'
    if isinstance(value, float | np.floating):
        v = float(value)
        return f'<td data-v="{"" if np.isnan(v) else repr(v)}">{fmt_number(v)}</td>'
    if isinstance(value, int | np.integer):
        return f"<td>{int(value)}</td>"
    if isinstance(value, Mapping):
        return f'<td class="text{g}">{esc(plain(value))}</td>'
    return f'<td class="text{g}">{esc(value)}</td>'


def plain(value: object) -> str:
    """Readable text for a value that may be a dict or list (never Python's repr of a dict)."""
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, float):
        return fmt_number(value)
    return str(value)


def table_html(df: pd.DataFrame, name: str, max_rows: int = 50, *, filter_box: bool = True) -> str:
    """Render a sortable, filterable table (first ``max_rows`` rows), numbers right-aligned.

    Parameters
    ----------
    df
        The table.
    name
        Table name (its element id is ``t-<name>``; the filter box's ``t-<name>-filter``).
    max_rows
        Rows shown; a note says how many were left out (the CSV has them all).
    filter_box
        Show a text box that filters the rows.
    """
    tid = "t-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    genes = [str(c).lower() in GENE_COLUMNS for c in df.columns]
    text_cls = ' class="text"'
    head = "".join(
        header_cell(str(c), "" if pd.api.types.is_numeric_dtype(df[c]) else text_cls) for c in df.columns
    )
    body = "".join(
        "<tr>" + "".join(_cell(v, g) for v, g in zip(row, genes, strict=True)) + "</tr>"
        for row in df.head(max_rows).itertuples(index=False)
    )
    classes = "data genes" if any(genes) else "data"
    note = ""
    if len(df) > max_rows:
        note = f'<p class="note">showing {max_rows} of {len(df)} rows; the CSV has all of them.</p>'
    box = (
        f'<input class="filter" id="{tid}-filter" type="search" placeholder="filter rows" aria-label="filter {esc(name)}">'
        if filter_box and len(df) > 5
        else ""
    )
    return (
        f'<div class="tblwrap">{box}<div class="tbl"><table class="{classes}" id="{tid}"><thead><tr>{head}</tr>'
        f"</thead><tbody>{body}</tbody></table></div></div>{note}"
    )


def header_cell(column: str, attrs: str = "") -> str:
    """A ``<th>`` for ``column`` with its glossary entry as tooltip (``title``)."""
    about = describe(column)
    title = f' title="{esc(about)}"' if about else ""
    return f"<th{attrs}{title}>{esc(column)}</th>"


class _Headers(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self._head = self._th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._head = self._head or tag == "thead"
        if tag == "th" and self._head:
            self._th = True
            self.names.append("")

    def handle_endtag(self, tag: str) -> None:
        self._head = self._head and tag != "thead"
        self._th = self._th and tag != "th"

    def handle_data(self, data: str) -> None:
        if self._th:
            self.names[-1] += data


def column_names(fragment: str) -> list[str]:
    """The column headers (``<thead>`` cells) of every table in an HTML fragment, in order, unique."""
    parser = _Headers()
    parser.feed(fragment)
    return list(dict.fromkeys(n.strip() for n in parser.names))


def kv_table(items: Mapping[str, object]) -> str:
    """A two-column key/value table for provenance dicts (nested values flattened to text)."""
    rows = "".join(
        f'<tr><th class="text">{esc(k)}</th><td class="text">{esc(plain(v))}</td></tr>'
        for k, v in items.items()
    )
    return f"<table>{rows}</table>"


@dataclass
class Section:
    """One report section: an id, a heading, HTML body parts and the tables it shows.

    Attributes
    ----------
    sid
        Anchor id.
    title
        Heading text.
    parts
        HTML fragments, in order (consecutive figures are laid out in a grid).
    tables
        Table name -> table, each written as CSV beside the report.
    """

    sid: str
    title: str
    parts: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def text(self, text: str, cls: str = "") -> None:
        """Add a paragraph of (escaped) text."""
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{esc(text)}</p>")

    def raw(self, fragment: str) -> None:
        """Add an HTML fragment built from escaped parts (:func:`esc`) by the caller."""
        self.parts.append(fragment)

    def missing(self, what: str) -> None:
        """Say that an input of this section was not computed."""
        self.text(f"not computed: {what}", "missing")

    def heading(self, text: str) -> None:
        """Add a sub-heading."""
        self.parts.append(f"<h3>{esc(text)}</h3>")

    def figure(self, fig: Figure) -> None:
        """Embed a figure (consecutive figures share a grid)."""
        self.parts.append(figure_svg(fig))

    def table(self, name: str, df: pd.DataFrame, max_rows: int = 50) -> None:
        """Show a table and register it for CSV export under ``name``."""
        self.tables[name] = df
        self.parts.append(
            table_html(df, name, max_rows)
            + f'<p class="csv">CSV: {esc(name)}.csv in the tables folder beside this page</p>'
        )

    def body(self) -> str:
        """The section's HTML, consecutive figures wrapped in one grid."""
        out: list[str] = []
        run: list[str] = []
        for part in [*self.parts, ""]:
            if part.startswith("<figure"):
                run.append(part)
                continue
            if run:
                out.append(f'<div class="grid">{"".join(run)}</div>')
                run = []
            out.append(part)
        return "".join(out)


def page(title: str, header: list[str], sections: list[Section]) -> str:
    """Assemble the full HTML document.

    Parameters
    ----------
    title
        Page title (h1).
    header
        HTML lines under the title (store, date, versions, run config), built from escaped parts.
    sections
        The sections, in order; the first (the summary) comes right under the title and a line of
        links to every section.
    """
    nav = " ".join(f'<a href="#{esc(s.sid)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.sid)}"><h2>{esc(s.title)}</h2>{s.body()}</section>' for s in sections
    )
    lines = "".join(f'<div class="sub">{line}</div>' for line in header)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>{lines}"
        f"<nav>{nav}</nav>{body}<script>{SCRIPT}</script></body></html>\n"
    )
