"""Experiment 5: the privileged basis of the ReLU-hidden model (n=10, m=5, I_i = 0.75^i)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from polysemy.checks import Check
from polysemy.toy.experiments.common import (
    ARTIFACT,
    Budget,
    ExperimentResult,
    Trainer,
    features_per_neuron,
    floats,
    ints,
    monosemantic,
    top_feature,
)
from polysemy.toy.trainer import ToyRun

PRIVILEGED_DENSITY = (0.75, 0.4, 0.2, 0.1, 0.06, 0.03)
"""Feature densities of the sweep, dense first."""


@dataclass(frozen=True)
class PrivilegedBasisResult(ExperimentResult):
    """Experiment 5: relu-hidden neurons, monosemantic when dense only."""

    density: tuple[float, ...]
    """Feature density of each instance."""
    monosemantic_neurons: tuple[int, ...]
    """Monosemantic neurons per density."""
    top_feature_per_neuron: tuple[tuple[int, ...], ...]
    """Each neuron's largest-loading feature, per density."""
    features_per_neuron: tuple[tuple[int, ...], ...]
    """How many features load on each neuron, per density."""
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


def privileged_basis(
    *,
    fast: bool = False,
    steps: int | None = None,
    best_of: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> PrivilegedBasisResult:
    """relu-hidden, n=10, m=5, I_i = 0.75^i: at density 0.75 every neuron is monosemantic and
    carries one of features 0-4; at density <= 0.06 none is (monosemantic: exactly one
    feature loads on the neuron, see `MONOSEMANTIC_THRESHOLD`)."""
    n, m = 10, 5
    density = PRIVILEGED_DENSITY
    sparsity = tuple(1 - p for p in density)
    importance = [0.75**i for i in range(n)]
    trainer = Trainer(fast=fast, steps=steps, seed=seed, device=device, progress=progress)
    budget = trainer.budget(Budget(10_000, 1024), Budget(6_000, 512))
    run = trainer.train("relu-hidden", n, m, sparsity, importance, budget, best_of=best_of)
    n_mono = ints(monosemantic(run.W).sum(dim=1))
    top = top_feature(run.W)
    dense_top = sorted(top[0].tolist())
    sparse_levels = [k for k, p in enumerate(density) if p <= 0.06]
    checks = (
        Check(
            "density 0.75: every neuron monosemantic, carrying one of features 0-4",
            n_mono[0] == m and dense_top == [0, 1, 2, 3, 4],
            f"{n_mono[0]} of {m} monosemantic; top features {dense_top}",
        ),
        Check(
            "density <= 0.06: no neuron monosemantic",
            all(n_mono[k] == 0 for k in sparse_levels),
            f"monosemantic neurons = {[n_mono[k] for k in sparse_levels]}",
        ),
    )
    return PrivilegedBasisResult(
        name="privileged-basis",
        title="Privileged basis: neurons of the ReLU-hidden model (n=10, m=5, I_i = 0.75^i)",
        checks=checks,
        seconds=run.seconds,
        density=density,
        monosemantic_neurons=n_mono,
        top_feature_per_neuron=tuple(ints(t) for t in top),
        features_per_neuron=tuple(ints(f) for f in features_per_neuron(run.W)),
        loss=floats(run.loss),
        steps=budget.steps,
        best_of=best_of,
        run=run,
    )
