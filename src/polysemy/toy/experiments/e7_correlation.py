"""Experiment 7: correlated features go orthogonal, anti-correlated features go antipodal."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from polysemy.checks import Check
from polysemy.toy.experiments.common import (
    ARTIFACT,
    REPRESENTED,
    Budget,
    ExperimentResult,
    Trainer,
    f64,
    floats,
    fmt_list,
)
from polysemy.toy.model import FeatureKind
from polysemy.toy.trainer import ToyRun


@dataclass(frozen=True)
class CorrelationResult(ExperimentResult):
    """Experiment 7: independent, correlated and anti-correlated feature pairs."""

    pair_cosines: dict[str, tuple[float | None, ...]]
    """Per feature kind, the cosine within pairs (0,1) and (2,3) (None: not represented)."""
    loss: dict[str, tuple[float, ...]]
    """Final loss per feature kind."""
    sparsity: tuple[float, ...]
    """The sparsity S."""
    steps: int
    """Training steps."""
    best_of: int
    """Seeds per kind."""
    runs: dict[str, ToyRun] = field(metadata=ARTIFACT)
    """One run per feature kind."""

    def named_runs(self) -> list[tuple[str, ToyRun]]:
        return [(f"{self.name}-{kind}", run) for kind, run in self.runs.items()]


def pair_cosines(W: Tensor) -> tuple[float | None, ...]:
    """Cosine between the two features of each pair (0,1), (2,3), ...; None when either is
    not represented."""
    W = f64(W)
    out: list[float | None] = []
    for a in range(0, W.shape[1] - 1, 2):
        u, v = W[:, a], W[:, a + 1]
        if u.norm() < REPRESENTED or v.norm() < REPRESENTED:
            out.append(None)
        else:
            out.append(float(u @ v / (u.norm() * v.norm())))
    return tuple(out)


def correlation(
    *,
    fast: bool = False,
    steps: int | None = None,
    best_of: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> CorrelationResult:
    """relu-output, n=4 (pairs (0,1) and (2,3)), m=2, uniform importance, S=0.9, for
    independent, correlated and anti-correlated pairs: correlated pairs settle orthogonal
    (|cos| < 0.2), anti-correlated pairs antipodal (cos < -0.9)."""
    n, m = 4, 2
    sparsity = (0.9,)
    trainer = Trainer(fast=fast, steps=steps, seed=seed, device=device, progress=progress)
    budget = trainer.budget(Budget(10_000, 1024), Budget(3_000, 512))
    runs: dict[str, ToyRun] = {}
    kinds: tuple[FeatureKind, ...] = ("independent", "correlated", "anticorrelated")
    for kind in kinds:
        runs[kind] = trainer.train(
            "relu-output", n, m, sparsity, [1.0] * n, budget, best_of=best_of, feature_kind=kind
        )
    cos = {kind: pair_cosines(run.W[0]) for kind, run in runs.items()}
    corr = [c for c in cos["correlated"] if c is not None]
    anti = [c for c in cos["anticorrelated"] if c is not None]
    checks = (
        Check(
            "correlated pairs are orthogonal (|cos| < 0.2 for every represented pair)",
            bool(corr) and all(abs(c) < 0.2 for c in corr),
            f"pair cosines = {fmt_list(corr)}",
        ),
        Check(
            "anti-correlated pairs are antipodal (cos < -0.9 for every represented pair)",
            bool(anti) and all(c < -0.9 for c in anti),
            f"pair cosines = {fmt_list(anti)}",
        ),
    )
    return CorrelationResult(
        name="correlation",
        title="Correlated and anti-correlated features (n=4, m=2, S=0.9)",
        checks=checks,
        seconds=sum(r.seconds for r in runs.values()),
        pair_cosines=cos,
        loss={k: floats(run.loss) for k, run in runs.items()},
        sparsity=sparsity,
        steps=budget.steps,
        best_of=best_of,
        runs=runs,
    )
