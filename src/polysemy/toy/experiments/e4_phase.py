"""Experiment 4: empirical phase diagrams (n=2, m=1 and n=3, m=2) against the theory."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from polysemy.checks import Check
from polysemy.toy import theory
from polysemy.toy.experiments.common import (
    ARTIFACT,
    Budget,
    ExperimentResult,
    Trainer,
    f64,
    floats,
)
from polysemy.toy.trainer import ToyRun

PHASE_CELLS = 11
"""Cells per axis of the full grid."""
PHASE_CELLS_FAST = 6
"""Cells per axis of the fast grid."""
PHASE_SHAPES = ((2, 1), (3, 2))
"""The (n_features, n_hidden) pairs with a phase theory (`theory.phase_diagram`)."""


def default_relative_importance(cells: int) -> tuple[float, ...]:
    """`cells` relative importances r log-spaced over [0.1, 10]."""
    return floats(np.geomspace(0.1, 10, cells))


def default_density(cells: int) -> tuple[float, ...]:
    """`cells` densities p log-spaced over [0.01, 1]."""
    return floats(np.geomspace(0.01, 1, cells))


@dataclass(frozen=True)
class PhaseResult(ExperimentResult):
    """Experiment 4: an empirical phase grid against the theory."""

    relative_importance: tuple[float, ...]
    """The r axis: importance of the extra (last) feature; the others have 1."""
    density: tuple[float, ...]
    """The p axis: feature density."""
    empirical: np.ndarray
    """[n_p, n_r] phase codes (into `theory.PHASES`) of the trained models."""
    agreement_away_from_boundary: float
    """Share of the cells away from the theory boundary where the trained phase agrees."""
    agreement_all: float
    """Share of all cells where the trained phase agrees."""
    cells_away_from_boundary: int
    """Cells whose theory label does not change within half a grid step."""
    steps: int
    """Training steps."""
    best_of: int
    """Seeds per cell (the lowest exact expected loss is kept)."""
    run: ToyRun = field(metadata=ARTIFACT)
    """The trained grid, instance index = i_p * n_r + i_r."""
    diagram: theory.PhaseDiagram = field(metadata=ARTIFACT)
    """The theory grid."""

    def numbers(self) -> dict[str, Any]:
        """The fields' numbers plus the theory grid they are compared with."""
        out = super().numbers()
        out["theory"] = self.diagram.labels.tolist()
        out["near_boundary"] = self.diagram.near_boundary.tolist()
        out["phases"] = list(theory.PHASES)
        return out

    def named_runs(self) -> list[tuple[str, ToyRun]]:
        return [(self.name, self.run)]


def phase(
    n_features: int = 2,
    n_hidden: int = 1,
    *,
    relative_importance: Sequence[float] | None = None,
    density: Sequence[float] | None = None,
    fast: bool = False,
    steps: int | None = None,
    best_of: int = 5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    min_agreement: float = 0.9,
) -> PhaseResult:
    """Empirical phase diagram (one relu-output model per cell, best of `best_of` seeds by
    exact expected loss, all cells and seeds in one batched run) against
    `theory.phase_diagram`. The extra (last) feature has importance r, the others 1; the
    cell's phase is `theory.classify_phase` of the trained W. Agreement is counted on the
    cells away from the theory boundary.
    """
    cells = PHASE_CELLS_FAST if fast else PHASE_CELLS
    r = np.asarray(
        relative_importance
        if relative_importance is not None
        else default_relative_importance(cells),
        dtype=np.float64,
    )
    p = np.asarray(density if density is not None else default_density(cells), dtype=np.float64)
    diagram = theory.phase_diagram(n_features, n_hidden, r.tolist(), p.tolist())
    sparsity = [1 - float(pi) for pi in p for _ in r]  # instance = i_p * n_r + i_r
    importance = [[1.0] * (n_features - 1) + [float(ri)] for _ in p for ri in r]
    trainer = Trainer(fast=fast, steps=steps, seed=seed, device=device, progress=progress)
    budget = trainer.budget(Budget(5_000, 512), Budget(2_000, 512))
    # Seeds are separate instances (seed-major) so that we pick the best one per cell by its
    # EXACT expected loss: at p = 0.01 two features are co-active in ~1e-4 of the samples, so
    # a sampled evaluation loss cannot tell the candidate solutions apart.
    n_cells = len(sparsity)
    trained = trainer.train(
        "relu-output", n_features, n_hidden, sparsity * best_of, importance * best_of, budget
    )
    exact = torch.tensor(
        [
            float(
                theory.relu_output_expected_loss(
                    f64(trained.W[k]).numpy(),
                    f64(trained.b_final[k]).numpy(),
                    importance[k % n_cells],
                    1 - sparsity[k % n_cells],
                    points=24,
                )
            )
            for k in range(n_cells * best_of)
        ],
        dtype=torch.float64,
    ).view(best_of, n_cells)  # (seed, cell)
    chosen = exact.argmin(dim=0)  # (cell,)
    pick = chosen * n_cells + torch.arange(n_cells)
    run = ToyRun(
        config=dataclasses.replace(
            trained.config,
            sparsity=tuple(sparsity),
            importance=tuple(tuple(row) for row in importance),
            best_of=best_of,
        ),
        W=trained.W[pick],
        b_final=trained.b_final[pick],
        loss=exact.gather(0, chosen.view(1, -1)).view(-1).float(),
        seed_loss=exact.t().contiguous().float(),
        chosen_seed=chosen,
        seconds=trained.seconds,
    )
    empirical = theory.classify_phase(run.W).view(p.size, r.size).numpy()
    away = ~diagram.near_boundary
    agree_away = float((empirical[away] == diagram.labels[away]).mean()) if away.any() else 0.0
    agree_all = float((empirical == diagram.labels).mean())
    checks = (
        Check(
            f"n={n_features}, m={n_hidden}: trained phases agree with theory on >= "
            f"{min_agreement:.0%} of the cells away from the boundary",
            agree_away >= min_agreement,
            f"{agree_away:.3f} of {int(away.sum())} cells away from the boundary "
            f"({agree_all:.3f} of all {empirical.size})",
        ),
    )
    return PhaseResult(
        name=f"phase-{n_features}-{n_hidden}",
        title=f"Phase diagram, n={n_features} features in m={n_hidden} dimension(s)",
        checks=checks,
        seconds=run.seconds,
        relative_importance=floats(r),
        density=floats(p),
        empirical=empirical,
        agreement_away_from_boundary=agree_away,
        agreement_all=agree_all,
        cells_away_from_boundary=int(away.sum()),
        steps=budget.steps,
        best_of=best_of,
        run=run,
        diagram=diagram,
    )


def phase_2_1(**kw: Any) -> PhaseResult:
    """Phase diagram n=2, m=1 (r x p grid, best of 5) against the closed-form boundary."""
    return phase(2, 1, **kw)


def phase_3_2(**kw: Any) -> PhaseResult:
    """Phase diagram n=3, m=2 (r x p grid, best of 5) against the candidate-loss theory."""
    return phase(3, 2, **kw)
