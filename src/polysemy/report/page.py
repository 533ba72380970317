"""The report as one HTML page (plotly charts over PNG fallbacks) and as Markdown.

The page opens from disk (file://) with no network: plotly.js is loaded from `plotly.min.js`
beside the page (copied once by the writer) and the charts' data from `data.js`, a script
(pages opened from file:// cannot fetch JSON). Each chart's `<div>` holds its PNG until
plotly draws over it, so with JavaScript off or plotly missing the figures still show.
"""

from __future__ import annotations

import html as _html
import json
import math
from collections.abc import Sequence
from typing import Any

from polysemy.report.charts import Chart
from polysemy.report.chorus import card_html, card_markdown
from polysemy.report.html import _CSS, _fmt
from polysemy.report.sections import ReportSection, Table

__all__ = ["DATA_FILE", "PLOTLY_FILE", "charts_script", "render_html", "render_markdown"]

PLOTLY_FILE = "plotly.min.js"
DATA_FILE = "data.js"

_EXTRA_CSS = """
figure{margin:1em 0}figcaption{font-size:.9em;color:#444}
.plot{min-height:340px}.plot img{max-width:100%}
.chorus{border:1px solid #ddd;border-left:4px solid #5b7bd5;padding:.4em 1em;margin:.8em 0;
border-radius:4px;background:#fbfbfe}.chorus ul{margin:.2em 0}
.error-line{color:#6b3b00;font-size:.9em}
mark{background:#ffe58a;padding:0 .15em;border-radius:2px}.ctx{font-family:ui-monospace,monospace;
font-size:.9em}
"""

_RENDER_JS = """
(function () {
  var charts = window.POLYSEMY_CHARTS || {};
  if (!window.Plotly) { return; }
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var spec = charts[el.getAttribute("data-chart")];
    if (!spec) { return; }
    el.innerHTML = "";
    Plotly.newPlot(el, spec.data, spec.layout, {responsive: true, displaylogo: false});
  });
})();
"""


def _finite(value: Any) -> Any:
    """NaN and infinities as null (a gap in the chart): JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def charts_script(charts: Sequence[Chart]) -> str:
    """`data.js`: every chart's plotly spec, keyed by its id."""
    data = {c.id: _finite(c.plotly()) for c in charts}
    return "window.POLYSEMY_CHARTS = " + json.dumps(data, allow_nan=False) + ";\n"


def _table_html(table: Table) -> str:
    esc = _html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _numbers_rows(numbers: dict[str, Any]) -> list[list[str]]:
    return [[k, _fmt(v)] for k, v in numbers.items() if v is not None]


def render_html(
    title: str, intro: str, sections: Sequence[ReportSection], *, interactive: bool
) -> str:
    """The page. With `interactive`, loads plotly.min.js and data.js from its folder."""
    esc = _html.escape
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no /favicon.ico request
        f"<title>{esc(title)}</title><style>{_CSS}{_EXTRA_CSS}</style>",
    ]
    if interactive:
        head += [f'<script src="{PLOTLY_FILE}"></script>', f'<script src="{DATA_FILE}"></script>']
    parts = [*head, "</head><body>", f"<h1>{esc(title)}</h1>"]
    parts += [f"<p>{esc(p)}</p>" for p in intro.split("\n\n") if p.strip()]
    if sections:
        parts.append(
            '<p class="summary">Sections: '
            + ", ".join(
                f'<a href="#s{i}">{esc(s.title)}</a>' for i, s in enumerate(sections, start=1)
            )
            + "</p>"
        )
    for i, s in enumerate(sections, start=1):
        kind_class = "section-" + "".join(c if c.isalnum() else "-" for c in s.kind)
        parts.append(f'<section class="{kind_class}" id="s{i}"><h2>{esc(s.title)}</h2>')
        parts += [f"<p>{esc(p)}</p>" for p in s.text.split("\n\n") if p.strip()]
        for c in s.charts:
            parts.append(
                f'<figure><div class="plot" id="plot-{c.id}" data-chart="{c.id}">'
                f'<img src="{c.png}" alt="{esc(c.title)}"></div>'
                f"<figcaption>{esc(c.caption)}</figcaption></figure>"
            )
        for _, rel in s.images:
            parts.append(f'<div><img src="{esc(rel)}" alt="{esc(s.title)}"></div>')
        parts += [card_html(card) for card in s.cards]
        parts += [_table_html(t) for t in s.tables]
        if s.numbers:
            parts.append(_table_html(Table(["quantity", "value"], _numbers_rows(s.numbers))))
        parts.append("</section>")
    if interactive:
        parts.append(f"<script>{_RENDER_JS}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_md(table: Table) -> str:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in table.header) + " |",
        "|" + "---|" * len(table.header),
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def render_markdown(title: str, intro: str, sections: Sequence[ReportSection]) -> str:
    """report.md: the same text, PNG figures, cards and tables."""
    parts = [f"# {title}", intro.strip()]
    for s in sections:
        parts.append(f"## {s.title}")
        if s.text:
            parts.append(s.text)
        for c in s.charts:
            parts.append(f"![{c.title}]({c.png})\n\n*{c.caption}*")
        for _, rel in s.images:
            parts.append(f"![{s.title}]({rel})")
        parts += [card_markdown(card) for card in s.cards]
        parts += [_table_md(t) for t in s.tables]
        if s.numbers:
            parts.append(_table_md(Table(["quantity", "value"], _numbers_rows(s.numbers))))
    return "\n\n".join(p for p in parts if p) + "\n"
