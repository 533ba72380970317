"""Calibrate `analyze_edits` where the answer is known.

Planted word neurons: a tiny random BERT (`tiny_encoder`) whose word embeddings are rewritten
so that neuron j of the word-embedding site (`embeddings.word_embeddings.output`, the token's
embedding row, before any context) is a value a_w ~ U(1, 2) drawn per word of content concept
c_j (every form of the word: dog and dogs share a_dog, on their first token) and 0 on every
other token. With max pooling, neuron j of a sentence is a_w of its c_j word: it changes under
every edit of c_j and under no other edit (other concepts, control). Counted over trials and
concepts:

- `missed`: neuron j's sensitivity to c_j not called an effect;
- `false_other`: neuron j called an effect for another concept (truth: its edits never
  touch neuron j);
- `false_control_split`: the control-split check (half the control pairs against the other
  half, exchangeable by construction) called an effect, for random neurons at the tiny BERT's
  last layer output, where every edit moves every neuron a little: the test's size.

>>> cal = calibrate_edits(trials=4)                                  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.analysis.edits import analyze_edits, concept_pairs
from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.models.loading import LoadedModel
from polysemy.validation import check_int

PLANTED_CONCEPTS = ("animal", "food", "vehicle", "sport", "clothing")
"""Content concepts given a planted word neuron (neuron j for concept j)."""
WORD_SITE = "embeddings.word_embeddings.output"


@dataclass(frozen=True)
class EditsCalibration:
    """Error rates of `analyze_edits`' verdicts where the truth is known (module docstring)."""

    trials: int
    sentences: int
    missed: Interval
    false_other: Interval
    false_control_split: Interval

    def to_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "sentences": self.sentences,
                "missed": self.missed.to_dict(), "false_other": self.false_other.to_dict(),
                "false_control_split": self.false_control_split.to_dict()}  # fmt: skip


def plant_word_neurons(loaded: LoadedModel, *, seed: int = 0) -> dict[str, dict[str, float]]:
    """Rewrite `loaded`'s word embeddings in place so neuron j is concept j's word value
    (module docstring); returns concept -> word -> planted value."""
    from polysemy.corpora import _concept_data as data
    from polysemy.corpora.concepts import VOCABULARY

    plural = dict(data.ANIMALS + data.PROFESSIONS + data.FOODS + data.VEHICLES)
    model: Any = loaded.model
    tokenizer: Any = loaded.tokenizer
    weight = model.get_input_embeddings().weight  # (vocab, d_model)
    g = torch.Generator().manual_seed(seed)
    planted: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        weight[:, : len(PLANTED_CONCEPTS)] = 0.0
        for j, concept in enumerate(PLANTED_CONCEPTS):
            planted[concept] = {}
            for word in VOCABULARY[concept]:
                value = 1.0 + float(torch.rand((), generator=g))
                planted[concept][word] = value
                for form in {word, plural.get(word, word)}:
                    for text in (form, form.capitalize()):
                        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                        weight[ids[0], j] = value
    return planted


def calibrate_edits(
    *, trials: int = 10, sentences: int = 300, seed: int = 0, random_neurons: int = 8
) -> EditsCalibration:
    """Run the planted trials (module docstring) on the `concepts` corpus's held-out split."""
    check_int("trials", trials, least=1)
    check_int("sentences", sentences, least=20)
    missed = false_other = other_tests = false_split = 0
    for t in range(trials):
        s = seed + t
        loaded = tiny_encoder(s)
        plant_word_neurons(loaded, seed=s)
        pairs = concept_pairs(sentences, split="heldout", seed=s)
        targets = tuple(f"neuron:{j}" for j in range(len(PLANTED_CONCEPTS)))
        for j, concept in enumerate(PLANTED_CONCEPTS):
            result = analyze_edits(
                loaded, site=WORD_SITE, targets=targets, concept=concept, pairs=pairs, seed=s,
                resamples=500, permutations=500,
            )  # fmt: skip
            own = result.target(f"neuron:{j}")
            missed += own.sensitivity.verdict != "effect"
            false_other += sum(o.verdict == "effect" for o in own.others)
            other_tests += len(own.others)
        last = _layer_outputs(loaded)[-1]
        width = int(getattr(loaded.model, "config").hidden_size)  # noqa: B009 (Module typing)
        g = torch.Generator().manual_seed(s)
        chosen = torch.randperm(width, generator=g)[:random_neurons].tolist()
        result = analyze_edits(loaded, site=last, targets=tuple(f"neuron:{n}" for n in chosen),
                               concept="tense", pairs=pairs, seed=s, resamples=500,
                               permutations=500)  # fmt: skip
        false_split += sum(r.control_split.verdict == "effect" for r in result.results)
    return EditsCalibration(
        trials=trials,
        sentences=sentences,
        missed=binomial_ci(missed, trials * len(PLANTED_CONCEPTS)),
        false_other=binomial_ci(false_other, max(other_tests, 1)),
        false_control_split=binomial_ci(false_split, trials * random_neurons),
    )


def _layer_outputs(loaded: LoadedModel) -> list[str]:
    from polysemy.analysis.ablation_calibration import _layer_outputs as layers

    return layers(loaded)
