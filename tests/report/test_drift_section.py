"""The report's drift and organism sections on a real organism drift and a real toy drift:
every figure written (interactive and PNG) with n and interval in its caption, an unknown
summary block (as a later version of the analysis might add) shown as recorded, and the page
drawn offline in Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from tests.analysis.drift_run import drift_run
from tests.report.test_browser import browser_ready, offline_report_page  # noqa: F401

from polysemy.report import write_report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-drift") / "run"
    shutil.copytree(drift_run(tmp_path_factory), root, ignore=shutil.ignore_patterns("explorer"))
    extra = root / "analyses" / "drift-toy"  # as a later version might write it
    record = json.loads((extra / "analysis.json").read_text())
    record["summary"]["calibration"] = {"estimate": 0.02, "low": 0.01, "high": 0.03, "n": 40}
    (extra / "analysis.json").write_text(json.dumps(record))
    other = root / "analyses" / "drift-other"  # another kind of drift: a summary, no tensors
    other.mkdir()
    summary = {"corpora": ["pydocs", "concepts"], "shift": {"estimate": 0.3, "low": 0.2,
               "high": 0.4, "n": 64}}  # fmt: skip
    (other / "analysis.json").write_text(json.dumps({"format": "polysemy.analysis/1",
                                                     "kind": "drift", "inputs": {},
                                                     "summary": summary}))  # fmt: skip
    return write_report(root, out=root.parent / "report")


def test_sections_figures_and_captions(report: Path) -> None:
    meta = json.loads((report / "report.json").read_text())
    assert meta["sections"][:2] == [
        "Model organism: organism",
        "Meaning drift: analyses/drift-organism",
    ]
    assert "Meaning drift: analyses/drift-toy" in meta["sections"]
    html = (report / "index.html").read_text()
    data = (report / "data.js").read_text()
    for stem in ("organism-loss", "switch", "score", "genealogy", "loss"):
        png = report / "figures" / f"analyses-drift-organism-{stem}.png"
        if stem == "organism-loss":
            png = report / "figures" / "organism-organism-loss.png"
        assert png.is_file() and png.stat().st_size > 5000, png
    voices = sorted((report / "figures").glob("analyses-drift-organism-voices-*.png"))
    assert len(voices) == 4  # 3 switching neurons and a stable one
    assert '"stackgroup"' in data and "(stable): voices over snapshots" in html
    toy_figures = " ".join(p.name for p in (report / "figures").glob("*drift-toy*"))
    assert "genealogy" not in toy_figures and "drift-toy-loss" in toy_figures
    assert "Grey: the training run&#x27;s loss" in html or "Grey: the training run's loss" in html
    # Every drift caption states a sample size, and intervals where there are any.
    section = html.split('id="s2"')[1].split("</section>")[0]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", section, re.S)
    assert len(captions) == 8
    assert all(("n = " in c or "n=" in c) for c in captions), captions
    assert sum("interval" in c for c in captions) >= 3
    assert "bigram baseline" in data and "model - bigram" in html
    md = (report / "report.md").read_text()
    assert "## Meaning drift: analyses/drift-organism" in md
    toy_extra = html.split("Meaning drift: analyses/drift-toy")[2].split("</section>")[0]
    assert "other result" in toy_extra and "calibration" in toy_extra
    other = html.split("Meaning drift: analyses/drift-other")[2].split("</section>")[0]
    assert "summary as recorded" in other and "0.3 [0.2, 0.4]" in other


def test_drift_report_draws_offline_in_chromium(browser_ready: None, report: Path) -> None:  # noqa: F811
    with offline_report_page(report) as page:
        n = page.locator("[data-chart]").count()
        assert n >= 12 and page.locator("[data-chart] svg.main-svg").count() >= n
        assert page.locator("[data-chart] img").count() == 0
