"""Figures and pages: turn results the library computed into PNGs and one HTML page.

`report` never computes what the library could have written: it takes arrays and named
results and draws them. Figures use matplotlib's object API (no global pyplot state, the
Agg renderer, so it works headless); pages are self-contained HTML with no network access.
"""

from polysemy.report.html import Section, render_page, write_page

__all__ = ["Section", "render_page", "write_page"]
