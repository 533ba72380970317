"""`write_report`: one offline HTML page (and Markdown) for whatever runs a path holds.

>>> write_report("runs/demo")                           # doctest: +SKIP
PosixPath('runs/demo/report')

The report folder holds `index.html`, `report.md`, `figures/*.png` (matplotlib, the fallback
of every interactive chart), `data.js` (the charts' data as a script: pages opened from
file:// cannot fetch JSON), `plotly.min.js` copied once from the installed `plotly` package
(never a CDN, never inlined per page) and `report.json` (`polysemy.report/1`, its marker).
It is written atomically: a failed report leaves the old folder, or none.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from polysemy import runfolder
from polysemy.report import page
from polysemy.report.charts import draw_png
from polysemy.report.sections import sections_for
from polysemy.report.sources import Sources, discover
from polysemy.validation import check_int

__all__ = ["ReportConfig", "plotly_js_path", "write_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows."""

    chorus_cards: int = 12
    """Neurons given a chorus card per neurons analysis (those the SAE reconstructs best,
    among the neurons seen firing)."""
    voices: int = 3
    """Strongest features named in each card."""
    contexts: int = 3
    """Dominant features whose top context each card shows."""
    interactive: bool = True
    """Interactive plotly charts (needs the `plotly` package: pip install polysemy[report]);
    the PNG figures are written either way."""

    def __post_init__(self) -> None:
        check_int("chorus_cards", self.chorus_cards, least=0)
        check_int("voices", self.voices, least=1)
        check_int("contexts", self.contexts, least=0)


def plotly_js_path() -> Path | None:
    """`plotly.min.js` of the installed plotly package, or None when plotly is missing."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / page.PLOTLY_FILE
    return path if path.is_file() else None


def _intro(sources: Sources) -> str:
    counts: dict[str, int] = {}
    for s in sources.items:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    found = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    return (
        f"What polysemy measured under {sources.root}: {found}. Every figure states its "
        "sample size and its interval, beside a null; a verdict is 'inconclusive' where the "
        "intervals cannot decide. Neurons are described as choruses of features, never as "
        "one named concept."
    )


def write_report(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    config: ReportConfig | None = None,
) -> Path:
    """Write the report of every run found under `path` (a demo run folder, a toy run, an
    SAE checkpoint or one analysis folder) to `out` (default `path/report`); return `out`.

    ValueError (one line, nothing written) when `path` holds no polysemy run, or when `out`
    holds something other than a report (unless `force`).
    """
    config = config or ReportConfig()
    if not isinstance(config, ReportConfig):
        raise TypeError(f"config must be a ReportConfig; got {type(config).__name__}")
    sources = discover(path)
    target = Path(out) if out is not None else Path(path) / "report"
    target = runfolder.check_out(target, runfolder.REPORT, force=force)
    plotly_js = plotly_js_path() if config.interactive else None
    if config.interactive and plotly_js is None:
        logger.warning(
            "plotly is not installed (pip install polysemy[report]): the report shows PNG "
            "figures only"
        )
    sections = sections_for(sources, config)
    charts = [c for s in sections for c in s.charts]
    title = f"polysemy report: {Path(path).resolve().name}"
    intro = _intro(sources)
    with runfolder.atomic_folder(target) as tmp:
        for chart in charts:
            draw_png(chart, tmp / chart.png)
        for s in sections:
            for draw, rel in s.images:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                draw(tmp / rel)
        interactive = plotly_js is not None
        if interactive:
            assert plotly_js is not None
            shutil.copyfile(plotly_js, tmp / page.PLOTLY_FILE)
            (tmp / page.DATA_FILE).write_text(page.charts_script(charts))
        (tmp / "index.html").write_text(
            page.render_html(title, intro, sections, interactive=interactive)
        )
        (tmp / "report.md").write_text(page.render_markdown(title, intro, sections))
        runfolder.atomic_write_json(
            tmp / runfolder.REPORT.marker,
            {
                "format": runfolder.REPORT.format,
                "source": str(Path(path).resolve()),
                "interactive": interactive,
                "sources": [{"kind": s.kind, "path": s.name} for s in sources.items],
                "sections": [s.title for s in sections],
                "charts": len(charts),
                "chorus_cards": sum(len(s.cards) for s in sections),
            },
        )
    return target
