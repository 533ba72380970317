"""Tests for polysemy/demo/pipeline.py: the real pipeline, end to end, on MiniLM (tiny
budgets), its resume and its refusals. The kill-and-resume test is in tests/cli/test_demo.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import polysemy as ps
from polysemy.demo import STAGES, preset, run_demo
from polysemy.demo.stages import harvest_corpus
from polysemy.validation import ParameterError


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ps.demo.DemoResult]:
    out = tmp_path_factory.mktemp("demo") / "run"
    return out, run_demo(preset("tiny"), out=out, progress=False)


def test_tiny_demo_writes_the_run_folder(tiny_run: tuple[Path, ps.demo.DemoResult]) -> None:
    out, result = tiny_run
    record = json.loads((out / "demo.json").read_text())
    assert record["format"] == "polysemy.demo/1"
    assert record["config"] == preset("tiny").to_dict()
    names = [name for name, _ in STAGES]
    assert list(record["stages"]) == names
    for name in names:
        stage = record["stages"][name]
        assert stage["done"] is True and stage["seconds"] > 0, name
        assert name in result.ran
    assert result.resumed == ()

    widths = {"mlp": 1536, "resid": 384, "attn": 384}
    for name, d_in in widths.items():
        manifest = json.loads((out / "stores" / name / "manifest.json").read_text())
        assert manifest["format"] == "polysemy.activations/1" and manifest["d_in"] == d_in
        assert manifest["rows"] == preset("tiny").tokens
        assert "concepts" in manifest["source"]["corpus"]
        sae = json.loads((out / "saes" / name / "config.json").read_text())
        assert sae["format"] == "polysemy.sae/1" and sae["arch"] == "topk" and sae["d_in"] == d_in
    kinds = {
        "fidelity-mlp": "fidelity",
        "fidelity-resid": "fidelity",
        "neurons-mlp": "neurons",
        "features-mlp": "features",
        "features-resid": "features",
        "features-attn": "features",
        "geometry-mlp": "geometry",
        "geometry-resid": "geometry",
        "ablate-mlp": "ablate",
        "circuits-resid-attn": "circuits",
        "claims-minilm": "claims",
    }
    for folder, kind in kinds.items():
        analysis = json.loads((out / "analyses" / folder / "analysis.json").read_text())
        assert analysis["format"] == "polysemy.analysis/1" and analysis["kind"] == kind
    # the ablation tests features of the MLP SAE and a neuron, each against its null
    targets = record["stages"]["ablate-mlp"]["verdicts"]
    assert any(t.startswith("feature:") for t in targets)
    assert any(t.startswith("neuron:") for t in targets)
    assert not any(t.startswith("random:") for t in targets)
    assert result.explore_command == f"polysemy explore {out}"
    # the claims battery gave every shipped claim a verdict; the report and explorer index exist
    claims = json.loads((out / "analyses" / "claims-minilm" / "claims.json").read_text())
    assert claims["claims"] and all(
        c["verdict"] in {"supported", "partial", "refuted", "inconclusive"} and c["sentence"]
        for c in claims["claims"]
    )
    assert sum(record["stages"]["claims"]["verdicts"].values()) == len(claims["claims"])
    assert result.report is not None and "chorus" in result.report.read_text()
    assert (out / "explorer" / "index.json").is_file()


def test_tiny_demo_draws_a_circuit(tiny_run: tuple[Path, ps.demo.DemoResult]) -> None:
    out, result = tiny_run
    # two SAEs trained from different seeds (same seed: shared start, spurious a == b edges)
    up = json.loads((out / "saes" / "resid" / "config.json").read_text())
    down = json.loads((out / "saes" / "attn" / "config.json").read_text())
    assert up["source"]["site"] == "encoder.layer.3.output"
    assert down["source"]["site"] == "encoder.layer.4.intermediate.input"
    assert (up["training"]["seed"], down["training"]["seed"]) == (0, 1)
    folder = out / "analyses" / "circuits-resid-attn"
    summary = json.loads((folder / "analysis.json").read_text())["summary"]
    assert summary["method"] == "factored"
    assert len(json.loads((folder / "edges.json").read_text())) == preset("tiny").circuits_top
    assert len(summary["ablation"]["edges"]) == preset("tiny").circuits_ablate
    stage = result.stages["circuits"]
    assert stage["edges"] == preset("tiny").circuits_top and stage["effects"] >= 0
    # the explorer lists the circuit, its endpoints matched to the run's two dictionaries
    index = json.loads((out / "explorer" / "index.json").read_text())
    (entry,) = index["circuits"]
    assert entry["folder"] == "analyses/circuits-resid-attn"
    assert (entry["dict_up"], entry["dict_down"]) == ("resid", "attn")
    assert entry["n_edges"] == preset("tiny").circuits_top
    page = json.loads((out / "explorer" / "circuits" / f"{entry['id']}.json").read_text())
    assert page["edges"][0]["label_up"] and page["edges"][0]["label_down"]
    assert "circuits-resid-attn" in result.report.read_text()  # type: ignore[union-attr]


def test_rerun_skips_done_stages(tiny_run: tuple[Path, ps.demo.DemoResult]) -> None:
    out, first = tiny_run
    manifest = out / "stores" / "mlp" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    again = run_demo(preset("tiny"), out=out, progress=False)
    assert set(again.resumed) == set(first.ran)
    assert again.ran == ()
    assert manifest.stat().st_mtime_ns == before


def test_refuses_another_config(tiny_run: tuple[Path, ps.demo.DemoResult]) -> None:
    out, _ = tiny_run
    with pytest.raises(ValueError, match=r"holds a demo run with another config \(k=4 \(now 8\)"):
        run_demo(preset("tiny", k=8), out=out, progress=False)
    assert json.loads((out / "demo.json").read_text())["config"]["k"] == 4


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="pass force=True"):
        run_demo(preset("tiny"), out=tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "demo.json").exists()


def test_harvest_corpus_mixes_concepts_after_each_document() -> None:
    corpus = harvest_corpus(preset("tiny", concepts=8))
    docs = corpus.take(12)
    concepts = ps.open_corpus("concepts:train:8", seed=0).take(8)
    assert docs[1:5] == concepts[:4] and docs[6:10] == concepts[4:8]
    assert docs[0] not in concepts and docs[5] not in concepts
    assert "concepts" in corpus.name
    assert harvest_corpus(preset("tiny", concepts=0)).name == ps.open_corpus("pydocs").name


def test_run_demo_refuses_a_non_config(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="config must be a DemoConfig; got dict"):
        run_demo({"tokens": 5}, out=tmp_path / "x")  # type: ignore[arg-type]


def test_refuses_the_last_layer_before_writing(tmp_path: Path) -> None:
    # MiniLM has layers 0-5: layer 5 has no next layer for the circuits' downstream end.
    out = tmp_path / "demo"
    with pytest.raises(ParameterError, match=r"layer must be a layer of minilm with a next layer"):
        run_demo(preset("tiny", layer=5), out=out, progress=False)
    assert not out.exists()
