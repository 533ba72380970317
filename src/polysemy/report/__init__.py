"""Figures and pages: turn results the library computed into PNGs, HTML and Markdown.

`report` never computes what the library could have written: it takes arrays and named
results and draws them. Figures use matplotlib's object API (no global pyplot state, the
Agg renderer, so it works headless); pages open from disk with no network access.
`write_report(RUN)` reports on a whole run folder (or one SAE, toy run or analysis folder),
with plotly charts whose JS is copied from the installed package.
"""

from polysemy.report.html import Section, render_page, write_page
from polysemy.report.writer import ReportConfig, write_report

__all__ = ["ReportConfig", "Section", "render_page", "write_page", "write_report"]
