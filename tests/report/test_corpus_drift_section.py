"""The report's cross-corpus drift section on a real `corpus_drift` folder: the fractions
against the null, a few neurons' voices on A and on B, the histogram, captions with n and
intervals, the PNGs; and the summary-only fallback when its arrays are gone."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from tests.analysis.corpus_drift_run import corpus_drift_run

from polysemy.report import write_report

TITLE = "Meaning drift across corpora: analyses/drift-corpora"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-corpora") / "run"
    shutil.copytree(corpus_drift_run(tmp_path_factory), root)
    broken = root / "analyses" / "drift-corpora-broken"
    shutil.copytree(root / "analyses" / "drift-corpora", broken)
    (broken / "corpus_drift.safetensors").unlink()
    return write_report(root, out=root.parent / "report")


def test_corpora_section_figures_and_captions(report: Path) -> None:
    meta = json.loads((report / "report.json").read_text())
    assert TITLE in meta["sections"]
    html = (report / "index.html").read_text()
    section = html.split(TITLE)[2].split("</section>")[0]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", section, re.S)
    assert len(captions) == 6  # fractions, 3 most different + 1 stable neuron, histogram
    assert all("n = " in c or "tokens of A" in c for c in captions), captions
    assert sum("interval" in c or "bootstrap" in c for c in captions) >= 5
    assert "SAE error" in (report / "data.js").read_text()
    assert "most stable" in section and "null 95% point" in section
    assert "features alone" in section and "FVU" in section
    figures = sorted(p.name for p in (report / "figures").glob("analyses-drift-corpora-corpora*"))
    assert len(figures) == 6 and all(
        (report / "figures" / f).stat().st_size > 3000 for f in figures
    )
    broken = html.split("Meaning drift: analyses/drift-corpora-broken")[2].split("</section>")[0]
    assert "summary as recorded" in broken and "different_fraction" in broken
