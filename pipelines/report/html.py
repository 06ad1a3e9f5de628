"""HTML building blocks of the report: escaped text, tables, embedded PNG figures, sections.

The page is static: inline CSS, images as ``data:image/png;base64`` URIs, no scripts and no
external resources, so it opens anywhere (offline, in a mail attachment) without errors.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #345; padding-bottom: .3em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; color: #234; }
h3 { color: #345; }
table { border-collapse: collapse; font-size: 0.85em; margin: .6em 0 1.2em; display: block; overflow-x: auto;
        max-width: 100%; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; }
th { background: #eef2f6; }
td.text, th.text { text-align: left; }
.note { color: #666; font-style: italic; }
.missing { color: #a33; font-style: italic; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
nav ul { columns: 2; }
.csv { font-size: 0.8em; }
"""


def esc(text: object) -> str:
    """HTML-escape any value's string form."""
    return html.escape(str(text), quote=True)


def figure_png(fig: Figure, dpi: int = 96) -> str:
    """Render a matplotlib figure as an ``<img>`` tag with an embedded base64 PNG.

    Parameters
    ----------
    fig
        The figure (created with :class:`matplotlib.figure.Figure`, no pyplot state).
    dpi
        Resolution in dots per inch.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    title = fig.axes[0].get_title() if fig.axes else "figure"
    return f'<img alt="{esc(title or "figure")}" src="data:image/png;base64,{data}">'


def _cell(value: object) -> tuple[str, str]:
    if isinstance(value, float | np.floating):
        v = float(value)
        if np.isnan(v):
            return "", ""
        text = (
            f"{v:.3g}" if (abs(v) < 1e-3 and v != 0) or abs(v) >= 1e5 else f"{v:.4f}".rstrip("0").rstrip(".")
        )
        return text, ""
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), ' class="text"'
    if isinstance(value, int | np.integer):
        return str(int(value)), ""
    return esc(value), ' class="text"'


def table_html(df: pd.DataFrame, max_rows: int = 50) -> str:
    """Render a table (first ``max_rows`` rows) as HTML, numbers right-aligned.

    Parameters
    ----------
    df
        The table.
    max_rows
        Rows shown; a note says how many were left out (the CSV has them all).
    """
    text_cls = ' class="text"'
    head = "".join(
        f"<th{'' if pd.api.types.is_numeric_dtype(df[c]) else text_cls}>{esc(c)}</th>" for c in df.columns
    )
    body = []
    for row in df.head(max_rows).itertuples(index=False):
        cells = []
        for value in row:
            text, cls = _cell(value)
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = ""
    if len(df) > max_rows:
        note = f'<p class="note">showing {max_rows} of {len(df)} rows; the CSV has all of them.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}"


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
        HTML fragments, in order.
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

    def missing(self, what: str) -> None:
        """Say that an input of this section was not computed."""
        self.text(f"not computed: {what}", "missing")

    def heading(self, text: str) -> None:
        """Add a sub-heading."""
        self.parts.append(f"<h3>{esc(text)}</h3>")

    def figure(self, fig: Figure) -> None:
        """Embed a figure."""
        self.parts.append(figure_png(fig))

    def table(self, name: str, df: pd.DataFrame, max_rows: int = 50) -> None:
        """Show a table and register it for CSV export under ``name``."""
        self.tables[name] = df
        self.parts.append(
            table_html(df, max_rows)
            + f'<p class="csv">CSV: {esc(name)}.csv in the tables folder beside this page</p>'
        )


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    """Assemble the full HTML document.

    Parameters
    ----------
    title
        Page title (h1).
    subtitle
        A line under the title (store, date).
    sections
        The sections, in order; a table of contents links to them.
    """
    toc = "".join(f'<li><a href="#{esc(s.sid)}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.sid)}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>' for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{esc(title)}</h1><p class="note">{esc(subtitle)}</p>'
        f"<nav><ul>{toc}</ul></nav>{body}</body></html>\n"
    )
