"""Calibrate attributions where the top token is known by construction.

Trial j takes sentence j of the `concepts` corpus, picks a text position t* (a token that
occurs once in the sentence) and plants a direction target d = h_t* / ||h_t*||, where h_t is
the site's value at token t. The target is f = Σ_t d · h_t over the text tokens.

- `exact` (site `embeddings.output`): each h_t depends on token t's embedding alone (word +
  position + type embeddings, then a per-token LayerNorm), so f is a sum of one-token terms
  and each token's true attribution from the zero baseline is exact: g_t = d·h_t(e_t) -
  d·h_t(0). The truth is argmax_t g_t (t* itself in most trials: `truth_is_planted`).
- `deep` (the last layer's output): attention mixes tokens, so there is no exact attribution;
  the truth is taken to be t*, whose own residual stream carries d. A method that misses it
  may be right, so these rates bound recovery from below.

Recovery of each method = trials whose top-scoring text token is the truth, with its exact
interval; `chance` is a random token's hit rate on the same trials (the null).

The stability test is calibrated too: two independent random rankings per sentence, judged
against the random-ranking null exactly as a method's rankings are, must be called "effect"
at most about 5% of the time (`stability_false_positive`); identical rankings must always be
(`stability_false_negative`).

>>> cal = calibrate_attributions(trials=20)                             # doctest: +SKIP
>>> cal.recovery["exact"]["integrated_gradients"].estimate              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from polysemy.analysis.attributions import (
    METHODS,
    AttributionsConfig,
    TargetFunction,
    _embedding_table,
    _summarise,
    make_baseline,
    random_ranking_null,
    target_reading,
    token_scores,
)
from polysemy.analysis.replay import encode_examples
from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.models.loading import LoadedModel
from polysemy.models.sites import read_sites
from polysemy.validation import check_int

SETTINGS = ("exact", "deep")


@dataclass(frozen=True)
class AttributionCalibration:
    """How often each method finds a planted top token, beside chance."""

    trials: int
    recovery: dict[str, dict[str, Interval]]
    """Setting (`exact`, `deep`) -> method -> rate of trials whose top token is the truth."""
    chance: dict[str, Interval]
    """Setting -> the hit rate of a uniformly random token (the null)."""
    truth_is_planted: Interval
    """`exact` trials whose exact top token is the planted t*."""
    stability_false_positive: Interval
    """Random-vs-random rankings called "effect" by the stability verdict."""
    stability_false_negative: Interval
    """Identical rankings not called "effect"."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "recovery": {
                s: {m: v.to_dict() for m, v in rates.items()} for s, rates in self.recovery.items()
            },
            "chance": {s: v.to_dict() for s, v in self.chance.items()},
            "truth_is_planted": self.truth_is_planted.to_dict(),
            "stability_false_positive": self.stability_false_positive.to_dict(),
            "stability_false_negative": self.stability_false_negative.to_dict(),
        }


def calibrate_attributions(
    loaded: LoadedModel | None = None,
    *,
    trials: int = 100,
    steps: int = 32,
    stability_trials: int = 200,
    seed: int = 0,
) -> AttributionCalibration:
    """Run the planted-top-token trials (module docstring) on `loaded` (default: a tiny random
    BERT) and the stability verdict's null checks."""
    from polysemy.analysis.ablation_calibration import _layer_outputs, tiny_encoder
    from polysemy.corpora import generate_concepts
    from polysemy.models.sites import get_site

    check_int("trials", trials, least=1)
    check_int("stability_trials", stability_trials, least=1)
    if loaded is None:
        loaded = tiny_encoder(seed)
    sites = {"exact": get_site(loaded, "embeddings.output"),
             "deep": get_site(loaded, _layer_outputs(loaded)[-1])}  # fmt: skip
    table = _embedding_table(loaded.model)
    emb_std = float(table.float().std())
    g = torch.Generator().manual_seed(seed)
    hits = {s: dict.fromkeys(METHODS, 0) for s in SETTINGS}
    chance_hits = dict.fromkeys(SETTINGS, 0)
    planted = 0
    done = 0
    for sentence in generate_concepts(trials * 3, seed=seed, split="heldout"):
        if done == trials:
            break
        ex = encode_examples(loaded.tokenizer, [sentence.text], seq_len=64)[0]
        pos = [i for i, t in enumerate(ex.text) if t]
        unique = [i for i in pos if ex.ids.count(ex.ids[i]) == 1]
        if len(unique) < 2:
            continue
        done += 1
        star = unique[int(torch.randint(0, len(unique), (1,), generator=g))]
        ids = torch.tensor([ex.ids])
        mask = torch.ones_like(ids)
        text = torch.tensor(ex.text)
        embeds = table[ids]
        zero = make_baseline("zero", embeds, text, table, loaded.tokenizer, 0)
        guess = pos[int(torch.randint(0, len(pos), (1,), generator=g))]
        for setting, site in sites.items():
            with torch.no_grad(), read_sites(loaded, [site], early_exit=True) as r:
                h = r.run(inputs_embeds=embeds, attention_mask=mask)[site.name][0]  # (seq, width)
                h0 = r.run(inputs_embeds=zero, attention_mask=mask)[site.name][0]
            d = h[star] / h[star].norm()
            truth = star
            if setting == "exact":
                gain = (h - h0) @ d  # (seq,) exact per-token attribution from the zero baseline
                truth = pos[int(gain[pos].argmax())]
                planted += truth == star
            chance_hits[setting] += guess == truth
            f = TargetFunction(loaded, site, target_reading("direction", -1, None, d), mask, text)
            for method in METHODS:
                scores, _ = token_scores(
                    f, embeds, method, baseline=zero, steps=steps, stdev=0.5 * emb_std,
                    seed=seed + done,
                )  # fmt: skip
                hits[setting][method] += pos[int(scores[pos].argmax())] == truth
    if done < trials:
        raise ValueError(f"trials must be at most {done} (sentences with two unique tokens)")

    # The stability verdict on rankings whose truth is known: random vs random, and identical.
    config = AttributionsConfig(resamples=200, seed=seed)
    false_pos = false_neg = 0
    for t in range(stability_trials):
        sizes = torch.randint(6, 16, (50,), generator=g).tolist()
        rho_random, rho_same = [], []
        for n in sizes:
            a, b = torch.randn(n, generator=g), torch.randn(n, generator=g)
            from polysemy.analysis.stats import spearman

            rho_random.append(spearman(a, b))
            rho_same.append(spearman(a, a))
        null = random_ranking_null(sizes, 3, 200, seed + t)["spearman"]
        rand = _summarise("random", "spearman", torch.tensor(rho_random), null, config)
        same = _summarise("same", "spearman", torch.tensor(rho_same), null, config)
        false_pos += rand.verdict == "effect"
        false_neg += same.verdict != "effect"
    return AttributionCalibration(
        trials=trials,
        recovery={s: {m: binomial_ci(v, trials) for m, v in hits[s].items()} for s in SETTINGS},
        chance={s: binomial_ci(chance_hits[s], trials) for s in SETTINGS},
        truth_is_planted=binomial_ci(planted, trials),
        stability_false_positive=binomial_ci(false_pos, stability_trials),
        stability_false_negative=binomial_ci(false_neg, stability_trials),
    )
