"""The report's circuits section on a real circuits folder (analyze_circuits on a tiny random
BERT with two tiny SAEs): its charts, captions (n and interval each), edge table, and the
`ablation` block and `method` field when a folder has them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from polysemy.report import write_report
from polysemy.report.circuits_section import braid_verdict


@pytest.fixture(scope="module")
def circuits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from polysemy.analysis.ablation_calibration import tiny_encoder
    from polysemy.analysis.circuits import analyze_circuits
    from polysemy.corpora import open_corpus
    from polysemy.sae import sae_from_weights

    g = torch.Generator().manual_seed(0)
    saes = []
    for site in ("encoder.layer.0.output", "encoder.layer.1.output"):
        W = F.normalize(torch.randn(24, 32, generator=g), dim=-1)
        sae = sae_from_weights(
            "relu", W_enc=W.T.clone(), b_enc=torch.zeros(24) + 0.1, W_dec=W, b_dec=torch.zeros(32)
        )
        sae.metadata = {"source": {"site": site}}
        saes.append(sae)
    out = tmp_path_factory.mktemp("circuits") / "run" / "analyses" / "circuits"
    docs = open_corpus("concepts:train:40").take(40)
    analyze_circuits(
        tiny_encoder(seed=0),
        saes[0],
        saes[1],
        docs,
        examples=12,
        seq_len=24,
        top_k=4,
        top=8,
        resamples=200,
        shuffles=20,
        out=out,
    )
    return out.parents[1]


def _captions(html: str) -> list[str]:
    return re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)


def test_section_draws_edges_against_the_null_and_the_braids(
    circuits_folder: Path, tmp_path: Path
) -> None:
    out = write_report(circuits_folder, tmp_path / "r")
    record = json.loads((out / "report.json").read_text())
    assert record["sections"] == ["Circuits: analyses/circuits"]
    html = (out / "index.html").read_text()
    captions = _captions(html)
    assert len(captions) == 2
    for caption in captions:
        assert re.search(r"\bn = \d+", caption), caption
    assert "n = 12 contexts" in captions[0] and "q95 = " in captions[0]
    assert re.search(
        r"\[[\d.]+, [\d.]+\] \(95% clopper-pearson, n=8\) over n = 8 edges", captions[1]
    )
    assert "shuffled contexts, n=20" in captions[1]
    edges = json.loads((circuits_folder / "analyses" / "circuits" / "edges.json").read_text())
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\d+)</td>", html)
    assert rows == [(str(e["up"]), str(e["down"])) for e in edges]
    for stem in ("edges", "braids"):
        assert (out / "figures" / f"analyses-circuits-{stem}.png").stat().st_size > 1000
    assert not re.search(r"https?://", html)
    md = (out / "report.md").read_text()
    assert "## Circuits: analyses/circuits" in md


def test_ablation_and_method_shown_when_present(circuits_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(circuits_folder, run)
    folder = run / "analyses" / "circuits"
    record = json.loads((folder / "analysis.json").read_text())
    record["summary"]["method"] = "attribution"
    record["summary"]["ablation"] = {
        "effect": {"estimate": 0.31, "low": 0.2, "high": 0.42, "n": 12, "level": 0.95},
        "null_range": [0.01, 0.05],
        "null": {"kind": "random directions", "quantiles": {"q50": 0.04, "q95": 0.16}},
        # analysis.edge_ablation's per-edge list: a table of its own, not a line of JSON
        "edges": [
            {"up": 7, "down": 3, "weight": 0.3, "effect": 0.31,
             "ci": {"estimate": 0.31, "low": 0.2, "high": 0.42, "n": 12, "level": 0.95},
             "null": {"band": 0.05}, "verdict": "causal", "null_edges": {"band": 0.5},
             "verdict_edges": "inconclusive"}
        ],
    }  # fmt: skip
    (folder / "analysis.json").write_text(json.dumps(record))
    edges = json.loads((folder / "edges.json").read_text())
    edges[0]["ablation"] = {"estimate": 0.5, "low": 0.25, "high": 0.75, "n": 12}
    (folder / "edges.json").write_text(json.dumps(edges))
    html = (write_report(run, tmp_path / "r") / "index.html").read_text()
    assert "Method: attribution." in html
    assert "<th>ablation</th>" in html and "0.5 [0.25, 0.75]" in html
    assert "<td>effect</td><td>0.31 [0.2, 0.42] (95%, n=12)</td>" in html
    assert "<td>null_range</td><td>[0.01, 0.05]</td>" in html
    assert "<td>null</td><td>kind random directions; quantiles q50 0.04; q95 0.16</td>" in html
    assert "<th>random-edge band</th>" in html and "<td>edges</td><td>[" not in html
    assert (
        "<tr><td>7</td><td>3</td><td>0.3</td><td>0.31 [0.2, 0.42] (95%, n=12)</td>"
        "<td>±0.05</td><td>causal</td><td>±0.5</td><td>inconclusive</td></tr>"
    ) in html
    assert '{"' not in html.split("<th>edge ablation</th>")[1].split("</table>")[0]


@pytest.mark.parametrize(
    ("ci", "null", "verdict"),
    [
        ((0.4, 0.6), (0.0, 0.1), "above the null"),
        ((0.0, 0.1), (0.5, 0.9), "below the null"),
        ((0.0, 0.3), (0.2, 0.5), "inconclusive"),
    ],
)
def test_braid_verdict(ci: tuple, null: tuple, verdict: str) -> None:
    braids = {"ci": {"low": ci[0], "high": ci[1]}, "null_ci": {"low": null[0], "high": null[1]}}
    assert braid_verdict(braids) == verdict
    assert braid_verdict({}) == "inconclusive"
