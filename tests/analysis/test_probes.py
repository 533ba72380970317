"""analyze_probes: labels traced from a concepts harvest, the planted truth found, a spurious
neuron's gap flagged, the control task, the chorus hook, the folder, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy.activations.harvest import HarvestConfig, harvest
from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.analysis.folder import read_analysis
from polysemy.analysis.probe_calibration import PlantedEncoder, planted_rows
from polysemy.analysis.probe_chorus import chorus_flags, read_neurons
from polysemy.analysis.probe_data import concept_rows, control_labels, label_mask
from polysemy.analysis.probes import analyze_probes
from polysemy.corpora import open_corpus
from polysemy.validation import ParameterError

SITE = "encoder.layer.1.output"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("probes")
    loaded = tiny_encoder(seed=0)
    config = HarvestConfig(sites=(SITE,), tokens=10**6, seq_len=64, dtype="float32")
    for name, spec in (("train", "concepts:train:300"), ("heldout", "concepts:heldout:100")):
        harvest(loaded, open_corpus(spec), config, out=root / name)
    return {"train": root / "train", "heldout": root / "heldout", "root": root}


@pytest.fixture(scope="module")
def planted() -> dict[str, object]:
    train, features = planted_rows(6000, seed=0, spurious="label")
    broken, _ = planted_rows(3000, seed=1, spurious="coin", dictionary_seed=0)
    fresh, _ = planted_rows(3000, seed=2, spurious="label", dictionary_seed=0)
    return {"train": train, "broken": broken, "fresh": fresh, "features": features}


def test_label_rules() -> None:
    tokens = [{"tense": "past"}, {}, {"tense": "present"}, {"animal": "dog", "plurality": "plural"}]
    sentences = [{"tense": "past", "animal": "dog"}] * 4
    keep, y = label_mask(tokens, sentences, "tense", None, "token")
    assert keep.tolist() == [True, False, True, False] and y[keep].tolist() == [True, False]
    keep, y = label_mask(tokens, sentences, "animal", None, "token")
    assert keep.all() and y.tolist() == [False, False, False, True]
    keep, y = label_mask(tokens, sentences, "animal", "cat", "token")
    assert not y.any()
    keep, y = label_mask(tokens, sentences, "tense", "present", "sentence")
    assert keep.all() and not y.any()


def test_control_labels_are_per_word_and_seeded() -> None:
    word = torch.tensor([5, 7, 5, 9, 7, 5] * 200)
    a = control_labels(word, 0.5, seed=3)
    assert torch.equal(a, control_labels(word, 0.5, seed=3))
    assert torch.equal(a[word == 5], a[word == 5][:1].expand(600))  # one label per word type
    many = control_labels(torch.arange(20000), 0.3, seed=0)
    assert abs(float(many.double().mean()) - 0.3) < 0.02
    # A word's label does not depend on which other words a set holds.
    assert torch.equal(control_labels(torch.tensor([7]), 0.5, seed=3), a[1:2])


def test_concept_rows_trace_the_store(stores) -> None:
    rows = concept_rows(stores["train"], "tense")
    assert rows.y.any() and not rows.y.all() and rows.x.shape[1] == 32
    every = concept_rows(stores["train"], "tense", level="sentence")
    assert every.y.numel() > rows.y.numel()  # token level keeps only the verbs
    from polysemy.activations.store import ActivationStore

    assert every.y.numel() == len(ActivationStore(stores["train"]))


def test_planted_feature_found_and_spurious_gap_flagged(planted) -> None:
    sae = PlantedEncoder(planted["features"])
    sets = {"broken": planted["broken"], "fresh": planted["fresh"]}
    result = analyze_probes(planted["train"], sae=sae, resamples=200, sets=sets)
    assert result.probe("feature").units == (0,)
    neuron = result.probe("neuron")
    assert neuron.units == (32,)  # the spurious coordinate
    assert neuron.gap_verdicts["broken"] == "effect" and neuron.gaps["broken"].low > 0.2
    assert result.probe("feature").gap_verdicts["broken"] != "effect"
    assert all(p.gap_verdicts["fresh"] != "effect" for p in result.probes)
    for p in result.probes:
        assert p.accuracy["iid"].estimate > p.chance["iid"] + 0.1
        assert p.selectivity_verdict == "effect"
        assert p.accuracy["iid"].low <= p.accuracy["iid"].estimate <= p.accuracy["iid"].high


def test_random_labels_have_no_selectivity(planted) -> None:
    noise, features = planted_rows(6000, seed=5, spurious="none", random_labels=True)
    result = analyze_probes(noise, sae=PlantedEncoder(features), resamples=200)
    for p in result.probes:
        assert p.selectivity_verdict != "effect"
        assert abs(p.accuracy["iid"].estimate - p.chance["iid"]) < 0.05


def test_store_with_model_harvests_heldout_families_and_writes_folder(stores, tmp_path) -> None:
    out = tmp_path / "probes"
    loaded = tiny_encoder(seed=0)
    result = analyze_probes(
        stores["train"], concept="plurality", model=loaded, heldout_sentences=60,
        resamples=100, out=out, kinds=("neuron", "direction"),
    )  # fmt: skip
    assert set(result.rows) == {"train", "iid", "concepts:heldout"}
    folder = read_analysis(out, "probes")
    assert folder.summary["concept"] == "plurality"
    w = folder.tensors("weights.safetensors")
    assert w["direction.coef"].shape == (32,) and w["neuron.units"].numel() == 1
    c = folder.tensors("correct.safetensors")
    assert c["concepts:heldout.neuron"].numel() == result.rows["concepts:heldout"]


def test_deterministic(stores) -> None:
    kw = dict(
        concept="tense",
        resamples=100,
        kinds=("neuron", "neurons"),
        shifted=(str(stores["heldout"]),),
    )
    a = analyze_probes(stores["train"], **kw).summary()
    b = analyze_probes(stores["train"], **kw).summary()
    assert a == b
    assert str(stores["heldout"]) in a["rows"]


def test_chorus_hook_names_other_voices(tmp_path) -> None:
    records = [
        {"neuron": 3, "effective_features": 4.2, "features": [[10, 0.5], [11, 0.3], [12, 0.2]]},
        {"neuron": 5, "effective_features": 1.0, "features": [[10, 1.0]]},
    ]
    (tmp_path / "neurons.json").write_text(json.dumps(records))
    neurons = read_neurons(tmp_path)
    assert neurons[3][0] == 4.2
    coef = torch.tensor([0.0, 0.0, 0.0, 2.0, 0.0, 1.0])
    flags = chorus_flags("direction", coef, None, neurons, threshold=2.0, own_feature=10)
    assert [f.neuron for f in flags] == [3]  # neuron 5 carries one feature: no chorus
    assert flags[0].voices == ((11, 0.3), (12, 0.2)) and flags[0].weight_share == pytest.approx(
        2 / 3
    )
    (tmp_path / "neurons.json").write_text(json.dumps([{"neuron": 1}]))
    with pytest.raises(ParameterError, match="neurons"):
        read_neurons(tmp_path)


def test_chorus_in_analysis(planted, tmp_path) -> None:
    records = [{"neuron": n, "effective_features": 3.0, "features": [[0, 0.4], [7, 0.6]]}
               for n in range(33)]  # fmt: skip
    (tmp_path / "neurons.json").write_text(json.dumps(records))
    result = analyze_probes(planted["train"], sae=PlantedEncoder(planted["features"]),
                            neurons=str(tmp_path), resamples=100)  # fmt: skip
    flag = result.probe("neuron").chorus[0]
    assert flag.neuron == 32 and flag.voices == ((7, 0.6),)  # feature 0 is the probe's own


def test_refusals(stores, planted, tmp_path) -> None:
    with pytest.raises(ParameterError, match=r"^concept"):
        analyze_probes(stores["train"], concept="flavour")
    with pytest.raises(ParameterError, match=r"^value"):
        analyze_probes(stores["train"], concept="tense", value="future")
    with pytest.raises(ParameterError, match=r"^concept"):
        analyze_probes(stores["train"], concept="negation", max_rows=10)  # no negated row
    with pytest.raises(ParameterError, match=r"^sae"):
        analyze_probes(planted["train"], sae=PlantedEncoder(torch.zeros(4, 7)))
    with pytest.raises(ParameterError, match=r"^sae"):
        analyze_probes(planted["train"], kinds=("feature",))
    with pytest.raises(ParameterError, match=r"^kinds"):
        analyze_probes(planted["train"], kinds=("neuron", "neuron"))
    import numpy as np

    np.save(tmp_path / "plain.npy", np.zeros((20, 4), dtype=np.float32))
    with pytest.raises(ParameterError, match=r"^acts"):
        analyze_probes(tmp_path / "plain.npy")
