"""The battery of tests a claim goes through: detection held out and under shift, edits,
ablation, and a neuron's chorus.

Every text (the fitting sentences, the held-out ones, the shifted ones and the edit twins)
runs through the model once per site (`read_pooled`); each target's value on a text is
pooled over the text tokens: `max` for a neuron or a feature (does it fire anywhere in the
sentence?), `mean` for a direction (x · d̂ averaged, the way its probe was fitted).

- **detection** (`detection`): on sentences labelled by the `concepts` corpus (the concept
  present, or its "on" value), the AUROC of the target's value (tie-aware, with a bootstrap
  interval over sentences), precision and recall at a firing threshold picked on the fitting
  sentences (the best F1; exact binomial intervals), and the share of the target's `top`
  strongest sentences that carry the concept. Run on i.i.d. held-out sentences (the train
  split's template families) and on shifted ones (the held-out families).
- **edits**: `polysemy.analysis.edits` judges the target's change under the concept's
  counterfactual twins against control twins (sensitivity) and under every other concept's
  twins (specificity), with a permutation null.
- **ablation**: `polysemy.analysis.ablation.ablate` of the neuron or feature against random
  directions of the same norm, its effect read on a probe direction of the concept at the
  model's last layer (mean-pooled): does removing the target move the concept's readout more
  than removing a random direction does?
- **chorus**: for a neuron, its effective number of SAE features and its top feature's share,
  read from a neurons analysis folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from polysemy.analysis.edits import EditsConfig, TargetEdits, _judge
from polysemy.analysis.replay import encode_examples, pad_examples, pad_id
from polysemy.analysis.stats import Interval, binomial_ci


@dataclass(frozen=True)
class Detection:
    """How well a target's value detects the concept on one set of sentences."""

    auroc: Interval
    precision: Interval
    """At the threshold picked on the fitting sentences."""
    recall: Interval
    top_precision: Interval
    """Share of the target's `top` strongest sentences that carry the concept."""
    threshold: float
    sentences: int
    positives: int

    def to_dict(self) -> dict[str, Any]:
        return {"auroc": self.auroc.to_dict(), "precision": self.precision.to_dict(),
                "recall": self.recall.to_dict(), "top_precision": self.top_precision.to_dict(),
                "threshold": self.threshold, "sentences": self.sentences,
                "positives": self.positives}  # fmt: skip


def auroc_interval(
    scores: Float[Tensor, " n"],
    y: Bool[Tensor, " n"],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> Interval:
    """AUROC (ties count one half) with a percentile bootstrap interval over the items.

    Each resample is a vector of multinomial counts over the items, so all resamples are
    scored at once from one sort: for each distinct score, the resample's weight of negatives
    below it and at it."""
    s = scores.double().flatten()
    pos = y.bool().flatten()
    n = s.numel()
    values, group = torch.unique(s, return_inverse=True)  # sorted distinct scores
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (resamples, n), generator=g)
    counts = torch.zeros(resamples + 1, n, dtype=torch.float64)
    counts[0] = 1.0  # row 0: the sample itself
    counts[1:].scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    w_pos, w_neg = counts * pos, counts * ~pos  # (R+1, n)
    neg_at = torch.zeros(resamples + 1, values.numel(), dtype=torch.float64)
    neg_at.scatter_add_(1, group.expand(resamples + 1, n), w_neg)  # (R+1, distinct)
    neg_below = neg_at.cumsum(1) - neg_at
    beaten = neg_below[:, group] + 0.5 * neg_at[:, group]  # (R+1, n)
    total = w_pos.sum(1) * w_neg.sum(1)
    auc = (w_pos * beaten).sum(1) / total.clamp_min(1e-12)
    if float(total[0]) == 0:  # one class only: the data cannot say anything
        return Interval(0.5, 0.0, 1.0, 0.95, n, "bootstrap")
    # Resamples that drew one class only have no AUROC: left out (rare unless positives are).
    kept = auc[1:][total[1:] > 0]
    low, high = torch.quantile(kept, torch.tensor([0.025, 0.975], dtype=auc.dtype))
    return Interval(float(auc[0]), float(low), float(high), 0.95, n, "bootstrap")


def pick_threshold(scores: Tensor, y: Tensor) -> float:
    """The firing threshold (fires when value >= it) with the best F1 on these items."""
    s, pos = scores.double().flatten(), y.bool().flatten()
    values = torch.unique(s)  # ascending
    if values.numel() > 512:  # candidate cuts at quantiles: enough to find the F1 peak
        values = torch.quantile(s, torch.linspace(0, 1, 512, dtype=torch.float64))
    fires = s[None, :] >= values[:, None]  # (cuts, n)
    tp = (fires & pos).sum(1).double()
    f1 = 2 * tp / (fires.sum(1) + pos.sum()).double().clamp_min(1)
    return float(values[int(f1.argmax())])


def _rate(successes: int, trials: int) -> Interval:
    if trials == 0:  # nothing to count: an interval that decides nothing
        return Interval(0.0, 0.0, 1.0, 0.95, 0, "clopper-pearson")
    return binomial_ci(successes, trials)


def detection(
    scores: Tensor,
    y: Tensor,
    threshold: float,
    *,
    top: int = 50,
    resamples: int = 1000,
    seed: int = 0,
) -> Detection:
    """Detection figures of `scores` for labels `y` at `threshold` (module docstring)."""
    pos = y.bool()
    fires = scores >= threshold
    tp = int((fires & pos).sum())
    k = max(1, min(top, int(pos.sum()), scores.numel()))
    strongest = torch.argsort(scores, descending=True, stable=True)[:k]
    return Detection(
        auroc=auroc_interval(scores, pos, resamples=resamples, seed=seed),
        precision=_rate(tp, int(fires.sum())),
        recall=_rate(tp, int(pos.sum())),
        top_precision=_rate(int(pos[strongest].sum()), k),
        threshold=threshold,
        sentences=int(scores.numel()),
        positives=int(pos.sum()),
    )


def edit_effects(
    target: str,
    delta: Tensor,
    active: Tensor,
    labels: list[str | None],
    concept: str,
    *,
    resamples: int,
    permutations: int,
    min_pairs: int = 20,
    seed: int = 0,
) -> TargetEdits:
    """The edits analysis's judgement of one target's `delta [pairs]` (see
    `polysemy.analysis.edits`), reused as is."""
    config = EditsConfig(concept=concept, resamples=resamples, permutations=permutations,
                         min_pairs=min_pairs, seed=seed)  # fmt: skip
    return _judge(target, delta, active, labels, config)


def neuron_chorus(folder: str | os.PathLike[str], neuron: int) -> dict[str, Any] | None:
    """A neuron's `effective_features`, `top_share` and top features from a neurons analysis
    folder's neurons.json (None when the folder did not analyse that neuron)."""
    from polysemy.analysis.folder import read_analysis

    analysis = read_analysis(folder, "neurons")
    for record in analysis.json("neurons.json"):
        if record["neuron"] == neuron:
            features = record.get("features", [])
            return {
                "effective_features": record["effective_features"],
                "top_share": features[0][1] if features else 0.0,
                "top_features": [int(f) for f, _ in features[:5]],
                "site": analysis.inputs.get("site"),
                "sae": analysis.inputs.get("sae"),
            }
    return None


@dataclass
class Pooled:
    """One site's pooled values over a list of texts."""

    max: Float[Tensor, "texts width"]
    mean: Float[Tensor, "texts width"]
    features: dict[int, Float[Tensor, "texts n_features"]]
    """Per SAE (keyed by `id`), max-pooled values of the requested features."""


@torch.inference_mode()
def read_pooled(
    loaded: Any,
    sites: dict[str, list[tuple[Any, list[int]]]],
    texts: list[str],
    *,
    seq_len: int = 64,
    batch_size: int = 64,
) -> dict[str, Pooled]:
    """For each site name: max- and mean-pooled activations `[texts, width]` over each text's
    tokens, and for each `(sae, features)` listed at the site, those features' max-pooled
    values `[texts, features]`. One forward pass per batch for all sites."""
    from polysemy.models.sites import read_sites

    model = loaded.model
    device = next(iter(model.parameters())).device
    examples = encode_examples(loaded.tokenizer, texts, seq_len=seq_len, min_tokens=0)
    pad = pad_id(loaded.tokenizer)
    parts: dict[str, dict[str, list[Tensor]]] = {s: {"max": [], "mean": []} for s in sites}
    feats: dict[str, dict[int, list[Tensor]]] = {s: {} for s in sites}
    with read_sites(loaded, list(sites), early_exit=True) as reader:
        for start in range(0, len(examples), batch_size):
            batch = pad_examples(examples[start : start + batch_size], pad, device)
            got = reader.run(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            mask = batch.text[..., None]  # (B, seq, 1)
            some = mask.any(1)  # (B, 1)
            for name, saes in sites.items():
                x = got[name].float()  # (B, seq, width)
                top = x.masked_fill(~mask, float("-inf")).amax(1)
                parts[name]["max"].append(torch.where(some, top, torch.zeros_like(top)).cpu())
                mean = (x * mask).sum(1) / mask.sum(1).clamp_min(1)  # (B, width)
                parts[name]["mean"].append(mean.cpu())
                for sae, features in saes:
                    w = sae.W_dec
                    z = sae.encode(x.reshape(-1, x.shape[-1]).to(w.dtype))[:, features]
                    z = z.reshape(*x.shape[:2], -1).float()  # (B, seq, features)
                    zt = z.masked_fill(~mask, float("-inf")).amax(1)
                    zt = torch.where(some, zt, torch.zeros_like(zt))
                    feats[name].setdefault(id(sae), []).append(zt.cpu())
    return {
        name: Pooled(torch.cat(p["max"]), torch.cat(p["mean"]),
                     {k: torch.cat(v) for k, v in feats[name].items()})
        for name, p in parts.items()
    }  # fmt: skip


def finite(value: float) -> float | None:
    """JSON has no NaN: None instead."""
    return None if value is None or math.isnan(value) or math.isinf(value) else value
