"""End to end on the real MiniLM: harvest the layer-3 MLP activation, train a small SAE, run
the neurons and features analyses with texts (slow: `make test-slow`)."""

from __future__ import annotations

import pytest

import polysemy as ps
from polysemy.analysis.features import analyze_features
from polysemy.analysis.folder import read_analysis
from polysemy.analysis.neurons import analyze_neurons

SITE = "encoder.layer.3.intermediate.intermediate_act_fn.output"


@pytest.mark.slow
def test_minilm_mlp_neurons_and_features(tmp_path) -> None:
    model = ps.load_model("minilm")
    store = ps.harvest(model, "concepts:train:2000", site=SITE, tokens=20_000,
                       out=tmp_path / "acts", progress=False)  # fmt: skip
    assert store.d_in == 1536
    run = ps.train_sae(store, arch="topk", d_sae=3072, k=32, tokens=200_000, progress=False)
    n = analyze_neurons(run.sae, store, out=tmp_path / "neurons", top_contexts=6, rows=20_000)
    assert n.privileged and n.warning is None
    assert n.neurons.numel() == 1536
    # An MLP basis after its GELU is privileged: fewer voices than random directions.
    assert n.effective_features_median.estimate < n.baseline_effective_features_median.estimate
    records = read_analysis(tmp_path / "neurons", "neurons").json("neurons.json")
    assert len(records) == 1536 and len(records[0]["features"]) == 20
    contexts = read_analysis(tmp_path / "neurons").json("contexts.json")
    assert "[[" in contexts[0]["groups"][0]["contexts"][0]["text"]
    f = analyze_features(run.sae, store, out=tmp_path / "features", rows=20_000)
    assert f.cooccurrence == "dense"
    examples = read_analysis(tmp_path / "features", "features").json("examples.json")
    live = [e for e in examples if e["top"]]
    assert live and "[[" in live[0]["top"][0]["text"]
    residual = analyze_neurons(run.sae, store, texts=False, basis="arbitrary", rows=2000)
    assert "arbitrary axes" in (residual.warning or "")
