"""Known truth for edge ablation: the planted circuit of `circuits_calibration`.

Every (a, b) pair of `planted_circuit` is drawn and ablated through `analyze_circuits` (`top =
ablate = n * n`): the planted edges (T's support) must come out `causal`, the others not.
Between the two sites the planted block has attention whose pattern depends on the input and a
LayerNorm, no MLP, so the linear edge and the ablation nearly agree on the planted edges; a
non-edge still moves b a little through the pattern and the norm scale, which is what the
random-direction null has to absorb.

>>> cal = calibrate_edge_ablation(seed=0)   # doctest: +SKIP
>>> cal.true_positive.estimate, cal.false_positive.estimate   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from polysemy.analysis.circuits import CircuitsResult, analyze_circuits
from polysemy.analysis.circuits_calibration import planted_circuit
from polysemy.analysis.stats import Interval, binomial_ci, spearman


@dataclass(frozen=True)
class EdgeAblationCalibration:
    """How the ablation verdict separates planted edges from non-edges."""

    true_positive: Interval
    """Planted edges called causal (Clopper-Pearson over planted edges)."""
    false_positive: Interval
    """Non-edges (a and b both on in some context) called causal."""
    true_positive_edges: Interval
    """Planted edges called causal against the random-edge null (`verdict_edges`)."""
    false_positive_edges: Interval
    """Non-edges called causal against it."""
    inconclusive: int
    """Planted edges whose interval overlapped the null band."""
    spearman_planted: float
    """Rank correlation of linear weight and ablation effect over the planted edges."""
    relative_gap_planted: float
    """sum |effect - weight| / sum |weight| over the planted edges."""
    result: CircuitsResult

    def summary(self) -> dict[str, Any]:
        return {
            "true_positive": self.true_positive.to_dict(),
            "false_positive": self.false_positive.to_dict(),
            "true_positive_edges": self.true_positive_edges.to_dict(),
            "false_positive_edges": self.false_positive_edges.to_dict(),
            "inconclusive": self.inconclusive,
            "spearman_planted": self.spearman_planted,
            "relative_gap_planted": self.relative_gap_planted,
        }


def calibrate_edge_ablation(
    *, seed: int = 0, contexts: int = 64, seq: int = 8, random: int = 20, d: int = 16
) -> EdgeAblationCalibration:
    """Ablate every pair of `planted_circuit(seed=seed, d=d)` over `contexts` random token
    sequences and score the verdicts against the planted support."""
    model, sae_up, sae_down = planted_circuit(seed=seed, d=d)
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, model.embed.num_embeddings, (contexts, seq), generator=g)
    n = int(model.truth.shape[0])
    result = analyze_circuits(
        model, sae_up, sae_down, ids, examples=contexts, site_up="up.output",
        site_down="block.output", top_k=n, top=n * n, chunk=64, resamples=200, shuffles=1,
        seed=seed, ablate=n * n, ablate_random=random,
    )  # fmt: skip
    assert result.ablation is not None
    support = model.truth != 0
    tp = fp = tp_edges = fp_edges = n_true = n_false = inconclusive = 0
    weights, effects = [], []
    for e in result.ablation["edges"]:
        causal = e["verdict"] == "causal"
        causal_edges = e["verdict_edges"] == "causal"
        if support[e["up"], e["down"]]:
            n_true += 1
            tp += causal
            tp_edges += causal_edges
            inconclusive += e["verdict"] == "inconclusive"
            weights.append(e["weight"])
            effects.append(e["effect"])
        elif e["contexts"] > 0:  # a pair never on together is trivially silent
            n_false += 1
            fp += causal
            fp_edges += causal_edges
    w, f = torch.tensor(weights), torch.tensor(effects)
    return EdgeAblationCalibration(
        binomial_ci(tp, n_true),
        binomial_ci(fp, n_false),
        binomial_ci(tp_edges, n_true),
        binomial_ci(fp_edges, n_false),
        inconclusive,
        spearman(w, f),
        float((f - w).abs().sum() / w.abs().sum()),
        result,
    )
