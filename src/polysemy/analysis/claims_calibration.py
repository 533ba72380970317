"""Calibrate `check_claims` on claims whose truth is known by construction.

Planted word neurons (`edit_calibration.plant_word_neurons`): in a tiny random BERT, neuron j
of the word-embedding site is a value drawn per word of content concept c_j and 0 on every
other token, so "neuron j means c_j" is true (it fires exactly on c_j's words, and only c_j's
edits move it) and these are false:

- `cross`: neuron j means c_{j+1} (another planted concept: its words never move neuron j);
- `random`: an unplanted neuron (random embedding values, so it correlates with any concept
  a little by chance) means c_j.

And a harder case, reported apart: `mixed`, a neuron planted on the words of two concepts
(c_j and c_{j+2}, a polysemantic unit by construction) claimed to mean c_j. Half true: it
does fire for every c_j word, but not only for them; `supported` is the wrong answer.

Each trial draws a new model, new planted values and new sentences (seed = trial). Counted
over trials, with exact intervals: true claims `supported`, false claims `refuted` or
`inconclusive`, false claims `supported`. The ablation is left out (it does not enter the
verdict, and the word-embedding site of a random model has no concept readout to move).

>>> cal = calibrate_claims(trials=2)                                  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.validation import check_int


@dataclass(frozen=True)
class ClaimsCalibration:
    """Verdict rates of `check_claims` where the truth is known (module docstring)."""

    trials: int
    sentences: int
    true_supported: Interval
    false_rejected: Interval
    """False claims called refuted or inconclusive."""
    false_supported: Interval
    mixed_supported: Interval
    """Mixed (two-concept) neurons' claims called supported."""
    verdicts: dict[str, dict[str, int]]
    """Counts of each verdict for `true`, `cross`, `random` and `mixed` claims."""

    def to_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "sentences": self.sentences,
                "true_supported": self.true_supported.to_dict(),
                "false_rejected": self.false_rejected.to_dict(),
                "false_supported": self.false_supported.to_dict(),
                "mixed_supported": self.mixed_supported.to_dict(),
                "verdicts": self.verdicts}  # fmt: skip


def calibrate_claims(
    *,
    trials: int = 10,
    sentences: int = 2000,
    shifted: int = 1000,
    edit_sentences: int = 300,
    seed: int = 0,
    **options: Any,
) -> ClaimsCalibration:
    """Run the planted trials (module docstring); `options` go to `check_claims`."""
    from polysemy.analysis.ablation_calibration import tiny_encoder
    from polysemy.analysis.claims import check_claims
    from polysemy.analysis.edit_calibration import (
        PLANTED_CONCEPTS,
        WORD_SITE,
        plant_word_neurons,
    )

    check_int("trials", trials, least=1)
    planted = len(PLANTED_CONCEPTS)
    counts: dict[str, dict[str, int]] = {
        group: {v: 0 for v in ("supported", "partial", "refuted", "inconclusive")}
        for group in ("true", "cross", "random", "mixed")
    }
    for t in range(trials):
        s = seed + t
        loaded = tiny_encoder(s)
        values = plant_word_neurons(loaded, seed=s)
        mixed = _plant_mixed(loaded, values, PLANTED_CONCEPTS)
        width = int(getattr(loaded.model, "config").hidden_size)  # noqa: B009 (Module typing)
        g = torch.Generator().manual_seed(s)
        free = 2 * planted  # neurons below this are planted (single, then mixed)
        unplanted = (free + torch.randperm(width - free, generator=g)[:planted]).tolist()
        claims: list[tuple[str, dict[str, Any]]] = []
        for j, concept in enumerate(PLANTED_CONCEPTS):
            claims.append(("true", {"neuron": j, "concept": concept}))
            other = PLANTED_CONCEPTS[(j + 1) % planted]
            claims.append(("cross", {"neuron": j, "concept": other}))
            claims.append(("random", {"neuron": unplanted[j], "concept": concept}))
            claims.append(("mixed", {"neuron": mixed[j], "concept": concept}))
        result = check_claims(
            {"site": WORD_SITE, "claim": [c for _, c in claims]}, model=loaded,
            sentences=sentences, shifted=shifted, edit_sentences=edit_sentences, seed=s,
            ablation_examples=0, **options,
        )  # fmt: skip
        for (group, _), checked in zip(claims, result.claims, strict=True):
            counts[group][checked.verdict] += 1
    true_n = sum(counts["true"].values())
    false = {v: counts["cross"][v] + counts["random"][v] for v in counts["true"]}
    false_n = sum(false.values())
    return ClaimsCalibration(
        trials=trials,
        sentences=sentences,
        true_supported=binomial_ci(counts["true"]["supported"], true_n),
        false_rejected=binomial_ci(false["refuted"] + false["inconclusive"], false_n),
        false_supported=binomial_ci(false["supported"], false_n),
        mixed_supported=binomial_ci(counts["mixed"]["supported"], sum(counts["mixed"].values())),
        verdicts=counts,
    )


def _plant_mixed(
    loaded: Any, values: dict[str, dict[str, float]], concepts: tuple[str, ...]
) -> list[int]:
    """Neurons planted + j (j < len(concepts)): each fires on the words of concepts j and
    j + 2 with their planted values (a neuron of two concepts); returns their indices."""
    from polysemy.corpora import _concept_data as data

    plural = dict(data.ANIMALS + data.PROFESSIONS + data.FOODS + data.VEHICLES)
    weight = loaded.model.get_input_embeddings().weight  # (vocab, d_model)
    n = len(concepts)
    with torch.no_grad():
        weight[:, n : 2 * n] = 0.0
        for j in range(n):
            for concept in (concepts[j], concepts[(j + 2) % n]):
                for word, value in values[concept].items():
                    for form in {word, plural.get(word, word)}:
                        for text in (form, form.capitalize()):
                            ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
                            weight[ids[0], n + j] = value
    return [n + j for j in range(n)]
