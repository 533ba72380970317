"""Sections of the model-level analyses (fidelity, ablate, probes, edits) on real folders
written by the library with a tiny seeded encoder (built from a config, nothing downloaded)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from polysemy.report import write_report

SITE = "encoder.layer.1.output"


@pytest.fixture(scope="module")
def evidence_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from polysemy.activations.harvest import HarvestConfig, harvest
    from polysemy.analysis.ablation import ablate
    from polysemy.analysis.ablation_calibration import tiny_encoder
    from polysemy.analysis.edits import analyze_edits
    from polysemy.analysis.fidelity import analyze_fidelity
    from polysemy.analysis.probes import analyze_probes
    from polysemy.corpora import open_corpus
    from polysemy.sae import sae_from_weights

    root = tmp_path_factory.mktemp("evidence") / "run"
    loaded = tiny_encoder(seed=0)
    g = torch.Generator().manual_seed(0)
    W = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=-1)
    sae = sae_from_weights("relu", W_enc=W.T.clone(), b_enc=torch.zeros(64), W_dec=W * 0.5,
                           b_dec=torch.zeros(32))  # fmt: skip
    sentences = open_corpus("concepts:heldout:120").take(120)
    a = root / "analyses"
    analyze_fidelity(loaded, sae, sentences, site=SITE, examples=20, resamples=100,
                     out=a / "fidelity")  # fmt: skip
    ablate(loaded, sentences, sae=sae, site=SITE, targets=("feature:1", "neuron:2"),
           examples=20, random=19, out=a / "ablate")  # fmt: skip
    analyze_edits(loaded, sae=sae, site=SITE, targets=("neuron:1", "feature:1"),
                  concept="tense", sentences=120, resamples=100, permutations=100,
                  out=a / "edits")  # fmt: skip
    config = HarvestConfig(sites=(SITE,), tokens=10**6, seq_len=64, dtype="float32")
    harvest(loaded, open_corpus("concepts:train:150"), config, out=root / "stores" / "concepts")
    analyze_probes(root / "stores" / "concepts", concept="plurality", model=loaded,
                   heldout_sentences=40, resamples=100, out=a / "probes",
                   kinds=("neuron", "direction"))  # fmt: skip
    return root


def test_model_level_sections(evidence_run: Path, tmp_path: Path) -> None:
    out = write_report(evidence_run, tmp_path / "r")
    record = json.loads((out / "report.json").read_text())
    assert [t.split(":")[0] for t in record["sections"]] == [
        "Fidelity", "Ablation", "Probes", "Edits"
    ]  # fmt: skip
    html = (out / "index.html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert len(captions) == 4
    for caption in captions:
        assert re.search(r"\bn = \d+", caption), caption
    assert re.search(r"fvu [\d.]+ \[[\d.]+, [\d.]+\] \(95% bootstrap, n=20\)", captions[0])
    assert "19 random directions (null)" in captions[1]
    assert "tense pairs and" in captions[3]
    ablate_rows = re.findall(r"<tr><td>(feature:1|neuron:2)</td>", html)
    assert ablate_rows[:2] == ["feature:1", "neuron:2"]
    for verdict_cell in re.findall(r"<td>(effect|no effect|inconclusive)</td>", html):
        assert verdict_cell in {"effect", "no effect", "inconclusive"}
    assert not re.search(r"https?://", html)
