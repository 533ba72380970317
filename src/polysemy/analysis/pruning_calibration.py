"""Calibrate pruning where the prunable fraction is known by construction.

Trial j plants a ReLU-output toy model with n = 40 features and m = 32 hidden dimensions that
stores a ∈ [4, 32] features on orthonormal columns (W = [Q_a, 0]: x̂ = ReLU(W^T W x) is exact
for those features) and none of the others. Exactly q = 1 - a/40 of its weights are zero, so
magnitude pruning loses nothing up to q and loses from q on (every other weight carries a
stored feature). On fresh sparse samples (sparsity 0.9) with a fine grid (steps of 0.05) and
a small tolerance (1e-4):

- `recovered`: trials whose prunable fraction lies in [q, q + 0.05] (the grid step);
- `false_negative`: trials where magnitude pruning is not called better than random pruning
  (`verdict` not "effect"), though it is by construction;
- `false_positive`: one more random mask put in the place of magnitude pruning and judged
  against the `random_draws` random masks exactly as magnitude pruning is: called "effect".

Every rate comes with its exact (Clopper-Pearson) interval.

>>> cal = calibrate_pruning(trials=20)                       # doctest: +SKIP
>>> cal.recovered.estimate, cal.false_positive.high          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from polysemy.analysis.pruning import PruningConfig, prune_toy
from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.validation import check_int

N_FEATURES, N_HIDDEN, STEP = 40, 32, 0.05


@dataclass(frozen=True)
class PruningCalibration:
    """Error rates of the prunable fraction and of the verdict against random pruning."""

    trials: int
    samples: int
    recovered: Interval
    """Prunable fraction within one grid step above the planted zero fraction."""
    false_negative: Interval
    """Magnitude pruning not called better than random, though it is."""
    false_positive: Interval
    """Random pruning called better than (another draw of) random pruning."""
    error: dict[str, float]
    """Quantiles of (prunable - planted fraction) over trials."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "samples": self.samples,
            "recovered": self.recovered.to_dict(),
            "false_negative": self.false_negative.to_dict(),
            "false_positive": self.false_positive.to_dict(),
            "error": self.error,
        }


def calibrate_pruning(
    *,
    trials: int = 50,
    samples: int = 2000,
    random_draws: int = 19,
    resamples: int = 200,
    seed: int = 0,
) -> PruningCalibration:
    """Run the planted zero-fraction trials (module docstring)."""
    from polysemy.analysis.stats import quantiles

    check_int("trials", trials, least=1)
    check_int("samples", samples, least=10)
    g = torch.Generator().manual_seed(seed)
    fractions = tuple(round(STEP * i, 2) for i in range(1, 20))
    recovered = missed = flagged = 0
    errors = []
    for t in range(trials):
        a = int(torch.randint(4, N_HIDDEN + 1, (1,), generator=g))
        W = torch.zeros(N_HIDDEN, N_FEATURES)
        W[:, :a] = torch.linalg.qr(torch.randn(N_HIDDEN, a, generator=g))[0]  # orthonormal
        W = W[:, torch.randperm(N_FEATURES, generator=g)]  # stored features anywhere
        present = torch.rand(samples, N_FEATURES, generator=g) < 0.1
        x = torch.rand(samples, N_FEATURES, generator=g) * present
        q = 1.0 - a / N_FEATURES
        config = PruningConfig(fractions=fractions, tolerance=1e-4, random_draws=random_draws,
                               resamples=resamples, seed=seed + t)  # fmt: skip
        b, importance = torch.zeros(N_FEATURES), torch.ones(N_FEATURES)
        toy, _ = prune_toy(W, b, importance, x, config)
        curves = {c.scheme: c for c in toy.curves}
        estimate = curves["global"].prunable.estimate
        errors.append(estimate - q)
        recovered += q - 1e-9 <= estimate <= q + STEP + 1e-9
        missed += curves["global"].verdict != "effect"
        # One more random mask in the place of magnitude pruning, judged the same way.
        blind = torch.rand(W.shape, generator=g)
        other, _ = prune_toy(W, b, importance, x, config, scores=blind)
        flagged += {c.scheme: c for c in other.curves}["global"].verdict == "effect"
    return PruningCalibration(
        trials=trials,
        samples=samples,
        recovered=binomial_ci(recovered, trials),
        false_negative=binomial_ci(missed, trials),
        false_positive=binomial_ci(flagged, trials),
        error=quantiles(torch.tensor(errors)),
    )
