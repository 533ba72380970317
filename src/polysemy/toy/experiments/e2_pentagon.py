"""Experiment 2: five features in two dimensions (n=5, m=2, I_i = 0.9^i), dense to sparse."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from polysemy.checks import Check
from polysemy.toy.experiments.common import (
    ARTIFACT,
    Budget,
    ExperimentResult,
    Trainer,
    f64,
    floats,
    fmt_list,
    norms,
    represented_sets,
)
from polysemy.toy.trainer import ToyRun


@dataclass(frozen=True)
class PentagonResult(ExperimentResult):
    """Experiment 2: n=5, m=2 from dense to sparse."""

    density: tuple[float, ...]
    """Feature density 1 - S of each instance, dense first."""
    represented: tuple[tuple[int, ...], ...]
    """The represented features per density."""
    feature_norms: tuple[tuple[float, ...], ...]
    """||W_i|| per density and feature."""
    dense_angle_deg: float
    """Angle between features 0 and 1 at density 1, in degrees."""
    sparsest_gaps_deg: tuple[float, ...]
    """Sorted angular gaps between the five directions at the sparsest level (empty unless
    all five are represented)."""
    loss: tuple[float, ...]
    """Final loss per density."""
    steps: int
    """Training steps."""
    best_of: int
    """Seeds per level."""
    run: ToyRun = field(metadata=ARTIFACT)
    """The sweep over density."""

    def named_runs(self) -> list[tuple[str, ToyRun]]:
        return [(self.name, self.run)]


def angle_gaps(W2: Tensor, features: Sequence[int]) -> list[float]:
    """Sorted angular gaps (degrees) between the 2-D directions of `features`."""
    W = f64(W2)
    ang = torch.rad2deg(torch.atan2(W[1, list(features)], W[0, list(features)])) % 360
    a = torch.sort(ang).values
    gaps = torch.diff(torch.cat([a, a[:1] + 360]))
    return gaps.tolist()


def pentagon(
    *,
    fast: bool = False,
    steps: int | None = None,
    best_of: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> PentagonResult:
    """n=5, m=2, I_i = 0.9^i, density from 1 down to 0.02: the dense model keeps features 0
    and 1, orthogonal; the sparsest puts all five on a regular pentagon (gaps 72 +- 4 deg)."""
    n, m = 5, 2
    density = tuple(float(x) for x in np.geomspace(1.0, 0.02, 8))
    sparsity = tuple(1 - p for p in density)
    importance = [0.9**i for i in range(n)]
    trainer = Trainer(fast=fast, steps=steps, seed=seed, device=device, progress=progress)
    budget = trainer.budget(Budget(10_000, 1024), Budget(6_000, 512))
    run = trainer.train("relu-output", n, m, sparsity, importance, budget, best_of=best_of)
    sets = represented_sets(run.W)
    W0 = f64(run.W[0])
    cos01 = float(W0[:, 0] @ W0[:, 1] / (W0[:, 0].norm() * W0[:, 1].norm()).clamp_min(1e-12))
    angle01 = math.degrees(math.acos(max(-1.0, min(1.0, cos01))))
    gaps = angle_gaps(run.W[-1], range(n)) if len(sets[-1]) == n else []
    max_dev = max((abs(g - 72) for g in gaps), default=math.inf)
    checks = (
        Check(
            "dense (p=1): represents exactly features 0 and 1",
            sets[0] == (0, 1),
            f"represented = {list(sets[0])}",
        ),
        Check(
            "dense (p=1): features 0 and 1 orthogonal (90 +- 4 deg)",
            abs(angle01 - 90) <= 4,
            f"angle = {angle01:.2f} deg",
        ),
        Check(
            f"sparsest (p={density[-1]:.2g}): all 5 features represented",
            len(sets[-1]) == n,
            f"represented = {list(sets[-1])}",
        ),
        Check(
            "sparsest: regular pentagon (every gap 72 +- 4 deg)",
            max_dev <= 4,
            f"gaps = {fmt_list(gaps, 4)} deg",
        ),
    )
    return PentagonResult(
        name="pentagon",
        title="Five features in two dimensions (n=5, m=2, I_i = 0.9^i)",
        checks=checks,
        seconds=run.seconds,
        density=density,
        represented=sets,
        feature_norms=tuple(floats(r) for r in norms(run.W)),
        dense_angle_deg=angle01,
        sparsest_gaps_deg=floats(gaps),
        loss=floats(run.loss),
        steps=budget.steps,
        best_of=best_of,
        run=run,
    )
