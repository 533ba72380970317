"""Probes and edits on the real MiniLM (slow): harvest a layer from `concepts`, probe for
plurality, then edit plurality and watch the probe's direction and a token-identity
direction move."""

from __future__ import annotations

from pathlib import Path

import pytest

from polysemy.activations.harvest import HarvestConfig, harvest
from polysemy.analysis.edits import analyze_edits
from polysemy.analysis.probes import analyze_probes
from polysemy.corpora import open_corpus
from polysemy.models import load_model

pytestmark = pytest.mark.slow
SITE = "encoder.layer.3.output"


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


@pytest.fixture(scope="module")
def acts(minilm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "acts"
    config = HarvestConfig(sites=(SITE,), tokens=10**6, seq_len=64, dtype="float32")
    harvest(minilm, open_corpus("concepts:train:600"), config, out=out)
    return out


@pytest.mark.parametrize(("concept", "level"), [("plurality", "token"), ("tense", "sentence")])
def test_probes_then_edits(minilm, acts: Path, tmp_path: Path, concept: str, level: str) -> None:
    probes = analyze_probes(
        acts, concept=concept, level=level, model=minilm, heldout_sentences=300,
        resamples=200, out=tmp_path / "probes",
    )  # fmt: skip
    direction = probes.probe("direction")
    assert direction.accuracy["iid"].low > 0.9
    assert direction.accuracy["concepts:heldout"].estimate > 0.85
    # A direction beats the best single neuron, in and out of distribution.
    neuron = probes.probe("neuron")
    for name in ("iid", "concepts:heldout"):
        assert neuron.accuracy[name].estimate < direction.accuracy[name].estimate
    if level == "sentence":
        # Tense on every token of the sentence: word identity cannot carry it, so the probe is
        # selective against the word-type control task. (At token level, plural nouns are
        # their own word types and the control task learns them too: not asserted.)
        assert direction.selectivity_verdict == "effect"
    # The probe's direction moves under the concept's edits more than under control edits.
    edits = analyze_edits(
        minilm, site=SITE, concept=concept, sentences=150, resamples=200,
        permutations=200, direction=str(tmp_path / "probes"),
    )  # fmt: skip
    r = edits.target("direction")
    assert r.sensitivity.verdict == "effect" and r.sensitivity.effect.low > 0
    assert r.leak_ratio is not None and r.leak_ratio < 0.5
    assert r.control_split.verdict != "effect"


def test_token_identity_direction_tracks_its_word(minilm) -> None:
    # At the word-embedding site a token's row is its embedding, so the direction of "dog"'s
    # embedding moves when an animal edit removes or adds "dog", and no other edit touches it.
    emb = minilm.model.get_input_embeddings().weight
    dog = minilm.tokenizer("dog", add_special_tokens=False)["input_ids"][0]
    result = analyze_edits(minilm, site="embeddings.word_embeddings.output", concept="animal",
                           direction_vector=emb[dog].detach(), sentences=400, resamples=200,
                           permutations=200)  # fmt: skip
    r = result.target("direction")
    assert r.sensitivity.verdict == "effect"
    assert r.sensitivity.effect.estimate > 0
    assert r.leak_ratio is not None and r.leak_ratio < 1  # no other concept moves it more
