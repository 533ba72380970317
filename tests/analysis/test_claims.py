"""check_claims: claims files and every refusal, the battery's statistics against brute force,
the verdict rules, and verdicts on planted word neurons whose truth is known."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.analysis.claims import MINILM_CLAIMS, check_claims
from polysemy.analysis.claims_battery import auroc_interval, detection, pick_threshold
from polysemy.analysis.claims_file import (
    Thresholds,
    effective_thresholds,
    parse_claims,
    read_claims,
)
from polysemy.analysis.claims_verdict import against, decide
from polysemy.analysis.edit_calibration import PLANTED_CONCEPTS, WORD_SITE, plant_word_neurons
from polysemy.analysis.folder import read_analysis, write_analysis
from polysemy.analysis.stats import Interval
from polysemy.validation import ParameterError

from .conftest import random_sae

FAST = {"sentences": 300, "shifted": 100, "edit_sentences": 100, "resamples": 200,
        "permutations": 200, "ablation_examples": 0}  # fmt: skip


@pytest.fixture(scope="module")
def planted():
    loaded = tiny_encoder(seed=0)
    plant_word_neurons(loaded, seed=0)
    return loaded


# ---- the file -------------------------------------------------------------------------------


def test_minilm_file_parses_with_every_kind() -> None:
    cf = read_claims(MINILM_CLAIMS)
    assert {c.kind for c in cf.claims} == {"neuron", "feature", "direction"}
    assert cf.thresholds["auroc"] == 0.8


def test_precedence_claim_over_file_over_caller() -> None:
    cf = parse_claims({"thresholds": {"auroc": 0.7, "recall": 0.2},
                       "claim": [{"neuron": 1, "site": "s", "concept": "food",
                                  "thresholds": {"auroc": 0.9}}]})  # fmt: skip
    t = effective_thresholds(cf.claims[0], cf, Thresholds(auroc=0.6, recall=0.6, precision=0.3))
    assert (t.auroc, t.recall, t.precision, t.specificity) == (0.9, 0.2, 0.3, 0.75)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"claim": [{"neuron": 1, "site": "s", "concept": "food"}], "colour": 1},
         "claims must be top-level keys"),
        ({"claim": [{"neuron": 1, "site": "s", "concept": "food", "mean": "x"}]},
         r"claim\[0\] must be keys among"),
        ({"claim": [{"neuron": 1, "site": "s", "concept": "dessert"}]},
         r"claim\[0\]\.concept must be one of"),
        ({"claim": [{"neuron": 1, "site": "s", "concept": "food", "value": "rock"}]},
         r"claim\[0\]\.value must be a value of food"),
        ({"claim": [{"neuron": 1, "site": "s", "concept": "food",
                     "thresholds": {"auroc": 1.5}}]}, r"claim\[0\]\.thresholds\.auroc must be"),
        ({"thresholds": {"recall": -0.1}, "claim": [{"neuron": 1, "site": "s",
                                                      "concept": "food"}]},
         r"thresholds\.recall must be a number in \[0, 1\]"),
        ({"thresholds": {"power": 0.5}, "claim": [{"neuron": 1, "site": "s",
                                                   "concept": "food"}]},
         "thresholds must be thresholds among"),
        ({"claim": []}, "claims must be at least one"),
        ({}, "claims must be at least one"),
        ({"claim": [{"neuron": 1, "feature": 2, "site": "s", "concept": "food"}]},
         "exactly one of neuron, feature, direction"),
        ({"claim": [{"neuron": -1, "site": "s", "concept": "food"}]},
         r"claim\[0\]\.neuron must be an int >= 0"),
        ({"claim": [{"neuron": 1, "concept": "food"}]}, r"claim\[0\]\.site must be a site"),
        ({"claim": [{"feature": 1, "concept": "food"}]}, r"claim\[0\]\.sae must be"),
        ({"claim": [{"direction": "tense", "concept": "tense"}]}, r"claim\[0\]\.site must be"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_naming_the_key(data, match) -> None:
    with pytest.raises(ParameterError, match=match):
        parse_claims(data)


def test_read_claims_toml_yaml_and_broken(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    (tmp_path / "c.toml").write_text('site = "s"\n[[claim]]\nneuron = 3\nconcept = "tense"\n')
    (tmp_path / "c.yaml").write_text("site: s\nclaim:\n  - neuron: 3\n    concept: tense\n")
    assert read_claims(tmp_path / "c.toml").claims == read_claims(tmp_path / "c.yaml").claims
    (tmp_path / "bad.toml").write_text("[[claim]\n")
    with pytest.raises(ValueError, match="not TOML"):
        read_claims(tmp_path / "bad.toml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_claims(tmp_path / "none.toml")


# ---- statistics and rules -------------------------------------------------------------------


def test_auroc_matches_pairwise_count_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 5, (60,), generator=g).double()  # many ties
    y = torch.rand(60, generator=g) < 0.4
    pos, neg = s[y], s[~y]
    brute = sum(float(a > b) + 0.5 * float(a == b) for a, b in itertools.product(pos, neg))
    ci = auroc_interval(s, y, resamples=300, seed=1)
    assert ci.estimate == pytest.approx(brute / (len(pos) * len(neg)))
    assert ci.low <= ci.estimate <= ci.high and ci.n == 60


def test_auroc_of_one_class_decides_nothing() -> None:
    ci = auroc_interval(torch.arange(10.0), torch.zeros(10, dtype=torch.bool), resamples=100)
    assert (ci.low, ci.high) == (0.0, 1.0)
    assert against(ci, 0.8) == "undecided"


def test_detection_at_threshold() -> None:
    s = torch.tensor([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 0.5, 0.0])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0], dtype=torch.bool)
    assert pick_threshold(s, y) == 0.5
    d = detection(s, y, 1.0, top=3, resamples=200)
    assert (d.precision.estimate, d.recall.estimate, d.top_precision.estimate) == (1, 0.75, 1)
    assert d.auroc.estimate == 1.0 and d.positives == 4


def test_verdict_rules() -> None:
    i = Interval(0.9, 0.85, 0.95, 0.95, 100, "bootstrap")
    assert against(i, 0.8) == "pass" and against(i, 0.99) == "fail"
    assert against(i, 0.9) == "undecided"
    ok = {"a": "pass", "b": "pass"}
    assert decide(ok, ok) == "supported"
    assert decide(ok, {"a": "fail", "b": "undecided"}) == "partial"
    assert decide(ok, {"a": "undecided"}) == "inconclusive"
    assert decide({"a": "undecided", "b": "pass"}, ok) == "inconclusive"
    assert decide({"a": "fail", "b": "undecided"}, ok) == "refuted"


# ---- the check on planted neurons -----------------------------------------------------------


def test_planted_true_supported_false_refuted_and_folder(planted, tmp_path: Path) -> None:
    claims = {"site": WORD_SITE, "claim": [
        {"neuron": 0, "concept": PLANTED_CONCEPTS[0]},
        {"neuron": 1, "concept": PLANTED_CONCEPTS[1]},
        {"neuron": 0, "concept": PLANTED_CONCEPTS[2]},
        {"neuron": 1, "concept": "tense"},
    ]}  # fmt: skip
    out = tmp_path / "claims"
    result = check_claims(claims, model=planted, out=out, **FAST)
    assert [c.verdict for c in result.claims] == ["supported", "supported", "refuted", "refuted"]
    first = result.claims[0]
    assert first.evidence["heldout"]["auroc"]["estimate"] > 0.95
    assert first.evidence["edits"]["sensitivity"]["verdict"] == "effect"
    assert "is supported" in first.sentence and "refuted" in result.claims[2].sentence
    folder = read_analysis(out, "claims")
    assert folder.summary["counts"]["supported"] == 2
    saved = folder.json("claims.json")
    assert [c["verdict"] for c in saved["claims"]] == [c.verdict for c in result.claims]
    assert saved["claims"][0]["claim"] == {"neuron": 0, "concept": PLANTED_CONCEPTS[0]}
    assert set(saved["claims"][0]) == {"claim", "verdict", "evidence", "sentence"}


def test_feature_direction_and_chorus(planted, tmp_path: Path) -> None:
    sae = random_sae(32, d_sae=16)
    neurons = tmp_path / "neurons"
    write_analysis(neurons, "neurons", inputs={"site": WORD_SITE}, summary={},
                   files={"neurons.json": [{"neuron": 0, "effective_features": 6.8,
                                            "features": [[3, 0.2], [4, 0.1]]}]})  # fmt: skip
    claims = {"site": WORD_SITE, "claim": [
        {"feature": 2, "sae": "toy", "site": WORD_SITE, "concept": "food"},
        {"direction": "animal", "concept": "animal"},
        {"neuron": 0, "concept": PLANTED_CONCEPTS[0]},
        {"feature": 1, "sae": "absent", "concept": "food"},
    ]}  # fmt: skip
    result = check_claims(claims, model=planted, saes={"toy": sae}, neurons=neurons, **FAST)
    assert result.claims[0].evidence["target"] == "feature:2"
    assert "heldout" in result.claims[0].evidence
    assert result.claims[1].evidence["probe"]["concept"] == "animal"
    # a chorus of ~7 features: the story holds but the neuron is not one feature's
    assert result.claims[2].verdict == "partial"
    assert "chorus of about 7 features" in result.claims[2].sentence
    assert result.claims[3].verdict == "inconclusive"
    assert "no SAE 'absent'" in result.claims[3].sentence


@pytest.mark.parametrize(
    ("claim", "match"),
    [
        ({"neuron": 99, "site": WORD_SITE, "concept": "food"}, r"claim\[0\]\.neuron must be"),
        ({"feature": 16, "sae": "toy", "site": WORD_SITE, "concept": "food"},
         r"claim\[0\]\.feature must be a feature below d_sae=16"),
        ({"neuron": 1, "site": "no.such.site", "concept": "food"}, r"claim\[0\]\.site"),
    ],
)  # fmt: skip
def test_bad_claims_against_the_model_write_nothing(planted, tmp_path, claim, match) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        check_claims({"claim": [claim]}, model=planted, saes={"toy": random_sae(32, d_sae=16)},
                     out=out, **FAST)  # fmt: skip
    assert not out.exists()


def test_direction_from_a_file(planted, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"d": torch.eye(32)[0]}, str(tmp_path / "d.safetensors"))
    save_file({"d": torch.ones(5)}, str(tmp_path / "short.safetensors"))
    (tmp_path / "c.toml").write_text(
        f'site = "{WORD_SITE}"\n[[claim]]\ndirection = "d.safetensors"\nconcept = "animal"\n'
    )
    result = check_claims(tmp_path / "c.toml", model=planted, **FAST)
    assert result.claims[0].verdict == "supported"  # e_0 is planted neuron 0: the animal words
    bad = {"site": WORD_SITE, "claim": [{"direction": str(tmp_path / "short.safetensors"),
                                         "concept": "animal"}]}  # fmt: skip
    with pytest.raises(ValueError, match=r"claim\[0\]\.direction must be a non-zero vector"):
        check_claims(bad, model=planted, **FAST)
    missing = {"site": WORD_SITE, "claim": [{"direction": "nowhere.npy", "concept": "animal"}]}
    with pytest.raises(ValueError, match=r"claim\[0\]\.direction must be"):
        check_claims(missing, model=planted, **FAST)


def test_malformed_twins_line_names_it(planted, tmp_path: Path) -> None:
    twins = tmp_path / "twins.jsonl"
    good = {"text": "the dog ran", "twin": "the cat ran", "concept": "animal"}
    twins.write_text(json.dumps(good) + "\n{not json\n")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="twins line 2"):
        check_claims({"site": WORD_SITE, "twins": str(twins),
                      "claim": [{"neuron": 0, "concept": "animal"}]},
                     model=planted, out=out, **FAST)  # fmt: skip
    assert not out.exists()


def test_config_refusals(planted) -> None:
    claims = {"site": WORD_SITE, "claim": [{"neuron": 0, "concept": "animal"}]}
    with pytest.raises(ParameterError, match=r"auroc must be a number in \[0, 1\]"):
        check_claims(claims, model=planted, auroc=1.2)
    with pytest.raises(ParameterError, match="sentences must be an int >= 40"):
        check_claims(claims, model=planted, sentences=3)
