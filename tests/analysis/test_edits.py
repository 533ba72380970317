"""analyze_edits: exact changes of planted word neurons, sensitivity vs specificity, direction
and feature targets, the twins file, the folder, and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy.analysis.ablation_calibration import PlantedDictionary, tiny_encoder
from polysemy.analysis.edit_calibration import PLANTED_CONCEPTS, WORD_SITE, plant_word_neurons
from polysemy.analysis.edits import EditPair, analyze_edits, concept_pairs, read_twins
from polysemy.analysis.folder import read_analysis
from polysemy.validation import ParameterError


@pytest.fixture(scope="module")
def planted() -> dict[str, object]:
    loaded = tiny_encoder(seed=0)
    values = plant_word_neurons(loaded, seed=0)
    return {"loaded": loaded, "values": values, "pairs": concept_pairs(150, seed=0)}


def test_planted_neuron_changes_exactly_by_the_word_values(planted) -> None:
    pairs = [p for p in planted["pairs"] if p.concept == "animal"]
    result = analyze_edits(planted["loaded"], site=WORD_SITE, targets=("neuron:0",),
                           concept="animal", pairs=planted["pairs"], resamples=200,
                           permutations=200)  # fmt: skip
    from polysemy.corpora.concepts import concept_sentence

    animal = planted["values"]["animal"]
    delta = result.deltas[0][result.pair_concept == result.concepts.index("animal")]
    expected = []
    for p in pairs:
        twin = next(
            t for t in concept_sentence(p.sentence, split="heldout").twins if t.concept == "animal"
        )
        expected.append(animal[twin.new] - animal[twin.old])
    assert torch.allclose(delta, torch.tensor(expected, dtype=delta.dtype), atol=1e-5)
    assert (result.deltas[0][result.pair_concept == -1] == 0).all()  # control never moves it


def test_sensitivity_and_specificity_on_planted_truth(planted) -> None:
    targets = tuple(f"neuron:{j}" for j in range(len(PLANTED_CONCEPTS)))
    for j, concept in enumerate(PLANTED_CONCEPTS[:2]):
        result = analyze_edits(planted["loaded"], site=WORD_SITE, targets=targets,
                               concept=concept, pairs=planted["pairs"], resamples=200,
                               permutations=200, min_pairs=10)  # fmt: skip
        own = result.target(f"neuron:{j}")
        assert own.sensitivity.verdict == "effect" and own.specificity == 1.0
        assert own.sensitivity.effect.low > 0
        # Every edited word of the concept carries a planted value: always active.
        assert own.sensitivity.active == own.sensitivity.pairs
        assert own.sensitivity.mean_abs_silent is None
        other = result.target(f"neuron:{1 - j}")
        assert other.sensitivity.verdict != "effect"
        assert other.leak == PLANTED_CONCEPTS[1 - j]  # its own concept, seen as "other"


def test_direction_equals_neuron_and_feature_target(planted, tmp_path: Path) -> None:
    e = torch.zeros(32)
    e[1] = 3.0  # norm is ignored: x . d / ||d||
    sae = PlantedDictionary(torch.eye(32)[:4])
    result = analyze_edits(planted["loaded"], site=WORD_SITE, targets=("neuron:1", "feature:1"),
                           direction_vector=e, sae=sae, concept="food", pairs=planted["pairs"],
                           resamples=200, permutations=200, out=tmp_path / "e")  # fmt: skip
    names = [r.target for r in result.results]
    assert names == ["neuron:1", "direction", "feature:1"]
    assert torch.allclose(result.deltas[0], result.deltas[1], atol=1e-6)
    assert torch.allclose(result.deltas[0], result.deltas[2], atol=1e-6)  # relu of a >= 0 value
    folder = read_analysis(tmp_path / "e", "edits")
    t = folder.tensors("deltas.safetensors")
    assert t["delta"].shape == (3, len(planted["pairs"])) and folder.summary["concept"] == "food"
    assert folder.summary["results"][0]["control_split"]["verdict"] in ("no effect", "inconclusive")


def test_twins_file(planted, tmp_path: Path) -> None:
    path = tmp_path / "twins.jsonl"
    lines = [{"text": p.text, "twin": p.twin, "concept": p.concept} for p in planted["pairs"]]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    pairs = read_twins(path)
    assert [p.concept for p in pairs] == [p.concept for p in planted["pairs"]]
    result = analyze_edits(
        planted["loaded"], site=WORD_SITE, targets=("neuron:0",), concept="animal",
        twins=str(path), resamples=200, permutations=200,
    )  # fmt: skip
    assert result.target("neuron:0").sensitivity.verdict == "effect"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "twins line 2: not JSON"),
        ("[1, 2]", "twins line 2: expected an object"),
        ('{"text": "a", "concept": "x"}', 'twins line 2: "text" and "twin"'),
        ('{"text": "a", "twin": "b", "concept": 3}', 'twins line 2: "concept"'),
    ],
)
def test_malformed_twins_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "twin": "b", "concept": null}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_twins(path)


def test_refusals(planted, tmp_path: Path) -> None:
    loaded = planted["loaded"]
    kw = dict(site=WORD_SITE, pairs=planted["pairs"], resamples=200, permutations=200)
    with pytest.raises(ParameterError, match=r"^targets"):
        analyze_edits(
            loaded, targets=("feature:9",), sae=PlantedDictionary(torch.eye(32)[:4]), **kw
        )
    with pytest.raises(ParameterError, match=r"^sae"):
        analyze_edits(loaded, targets=("feature:1",), **kw)
    with pytest.raises(ParameterError, match=r"^targets"):
        analyze_edits(loaded, targets=("neuron:32",), **kw)
    with pytest.raises(ParameterError, match=r"^targets"):
        analyze_edits(loaded, targets=("cell:1",), **kw)
    with pytest.raises(ParameterError, match=r"^concept"):
        analyze_edits(loaded, targets=("neuron:1",), concept="flavour", **kw)
    with pytest.raises(ParameterError, match=r"^concept"):
        analyze_edits(loaded, targets=("neuron:1",), concept="flavour", site=WORD_SITE)
    with pytest.raises(ParameterError, match=r"^site"):
        analyze_edits(loaded, targets=("neuron:1",), concept="tense", pairs=planted["pairs"])
    with pytest.raises(ParameterError, match=r"^direction"):
        analyze_edits(loaded, direction_vector=torch.zeros(32), **kw)
    with pytest.raises(ParameterError, match=r"^twins"):
        analyze_edits(loaded, targets=("neuron:1",), site=WORD_SITE, concept="tense",
                      pairs=[EditPair("a b", "a c", "tense", i) for i in range(5)])  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_direction_from_a_probes_folder(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from polysemy.analysis.edits import load_direction

    folder = tmp_path / "probes"
    folder.mkdir()
    save_file({"direction.coef": torch.arange(4.0)}, str(folder / "weights.safetensors"))
    assert torch.equal(load_direction(folder), torch.arange(4.0).double())
    save_file({"neuron.coef": torch.ones(1)}, str(folder / "weights.safetensors"))
    with pytest.raises(ParameterError, match=r"^direction"):
        load_direction(folder)
