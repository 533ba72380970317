"""Experiment 3: feature geometry, dimensions per feature (n=200, m=20, uniform importance)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from polysemy.checks import Check
from polysemy.toy.experiments.common import (
    ARTIFACT,
    REPRESENTED,
    Budget,
    ExperimentResult,
    Trainer,
    dimensionality,
    f64,
    floats,
    fmt_list,
    ints,
    norms,
)
from polysemy.toy.trainer import ToyRun


@dataclass(frozen=True)
class GeometryResult(ExperimentResult):
    """Experiment 3: n=200, m=20, uniform importance; dimensions per feature."""

    inv_density: tuple[float, ...]
    """1 / (1 - S) per level."""
    dims_per_feature_star: tuple[float, ...]
    """D* = m / ||W||_F^2 per level."""
    levels_at_half: int
    """Levels with D* within 0.03 of 1/2."""
    levels_at_half_exact_antipodal: int
    """Of those, the levels whose features form exact, mutually orthogonal antipodal pairs."""
    antipodal_worst_pair_cos_plus_1: tuple[float, ...]
    """Per level, the worst pair cosine + 1 (inf where D* is not at 1/2)."""
    share_near_2_5_or_3_8_in_window: tuple[float, ...]
    """For 1/(1-S) in [4, 6]: share of represented features with D_i near 2/5 or 3/8."""
    represented_count: tuple[int, ...]
    """Represented features per level."""
    loss: tuple[float, ...]
    """Final loss per level."""
    steps: int
    """Training steps."""
    batch_size: int
    """Batch size."""
    run: ToyRun = field(metadata=ARTIFACT)
    """The sweep over density."""

    def named_runs(self) -> list[tuple[str, ToyRun]]:
        return [(self.name, self.run)]


def antipodal_half(W: Tensor, tol: float = 0.05) -> tuple[bool, float, float]:
    """Whether the represented features form exact antipodal pairs that are mutually
    orthogonal: (ok, worst pair cosine + 1, worst |cosine| across pairs)."""
    W = f64(W)
    keep = torch.nonzero(W.norm(dim=0) >= REPRESENTED).ravel()
    if keep.numel() < 2 or keep.numel() % 2:
        return False, math.inf, math.inf
    U = W[:, keep] / W[:, keep].norm(dim=0, keepdim=True)
    cos = U.T @ U  # (k, k)
    partner = cos.argmin(dim=1)
    paired = bool((partner[partner] == torch.arange(keep.numel())).all())
    worst_pair = float((cos.gather(1, partner.view(-1, 1)).ravel() + 1).abs().max())
    mask = torch.ones_like(cos, dtype=torch.bool)
    mask.fill_diagonal_(False)
    mask[torch.arange(keep.numel()), partner] = False
    worst_cross = float(cos[mask].abs().max()) if bool(mask.any()) else 0.0
    return paired and worst_pair <= tol and worst_cross <= tol, worst_pair, worst_cross


def feature_geometry(
    *,
    fast: bool = False,
    steps: int | None = None,
    best_of: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> GeometryResult:
    """n=200, m=20, uniform importance, 20 levels with 1/(1-S) log-spaced 1..20.

    D* = m / ||W||_F^2 is 1 at the dense end, sticks at 1/2 (exact antipodal pairs, mutually
    orthogonal) over >= 3 levels, then falls below 0.2; individual D_i cluster at 2/5 and 3/8
    for 1/(1-S) in [4, 6]. `fast` keeps n=200, m=20 but trains 8 levels briefly and checks
    only the ends of the curve.
    """
    n, m = 200, 20
    levels = 8 if fast else 20
    inv = tuple(float(x) for x in np.geomspace(1.0, 20.0, levels))
    sparsity = tuple(1 - 1 / x for x in inv)
    trainer = Trainer(fast=fast, steps=steps, seed=seed, device=device, progress=progress)
    budget = trainer.budget(Budget(10_000, 1024), Budget(1_500, 256))
    run = trainer.train("relu-output", n, m, sparsity, [1.0] * n, budget, best_of=best_of)
    frob = (f64(run.W) ** 2).sum(dim=(1, 2))
    dstar = (m / frob.clamp_min(1e-12)).tolist()
    D = dimensionality(run.W)
    feature_norms = norms(run.W)
    half = [abs(d - 0.5) <= 0.03 for d in dstar]
    antipodal = [
        antipodal_half(run.W[k]) if half[k] else (False, math.inf, math.inf) for k in range(levels)
    ]
    n_half_exact = sum(a[0] for a in antipodal)
    window = [k for k, x in enumerate(inv) if 4 <= x <= 6]
    near_refs = []
    for k in window:
        d = D[k][feature_norms[k] >= REPRESENTED]
        near = ((d - 0.4).abs() <= 0.03) | ((d - 0.375).abs() <= 0.03)
        near_refs.append(float(near.double().mean()) if d.numel() else 0.0)
    cluster = float(np.mean(near_refs)) if near_refs else 0.0
    checks = [
        Check("dense end: D* = 1 (+- 0.05)", abs(dstar[0] - 1) <= 0.05, f"D* = {dstar[0]:.4f}"),
        Check(
            "sparse end (1/(1-S) = 20): D* < 0.2" if not fast else "sparse end: D* < 0.5",
            dstar[-1] < (0.2 if not fast else 0.5),
            f"D* = {dstar[-1]:.4f}",
        ),
    ]
    if not fast:
        checks += [
            Check(
                "D* sticks at 1/2 (+- 0.03) over >= 3 levels, as exact antipodal pairs "
                "(pair cos = -1 +- 0.05, other pairs orthogonal within 0.05)",
                n_half_exact >= 3,
                f"{sum(half)} levels at 1/2, {n_half_exact} of them exact orthogonal pairs",
            ),
            Check(
                "1/(1-S) in [4, 6]: >= 30% of represented features have D_i within 0.03 of "
                "2/5 or 3/8",
                cluster >= 0.3,
                f"share = {fmt_list(near_refs)} (mean {cluster:.3f})",
            ),
        ]
    return GeometryResult(
        name="geometry",
        title="Feature geometry: dimensions per feature (n=200, m=20, uniform importance)",
        checks=tuple(checks),
        seconds=run.seconds,
        inv_density=inv,
        dims_per_feature_star=floats(dstar),
        levels_at_half=sum(half),
        levels_at_half_exact_antipodal=n_half_exact,
        antipodal_worst_pair_cos_plus_1=floats([a[1] for a in antipodal]),
        share_near_2_5_or_3_8_in_window=floats(near_refs),
        represented_count=ints((feature_norms >= REPRESENTED).sum(dim=1)),
        loss=floats(run.loss),
        steps=budget.steps,
        batch_size=budget.batch_size,
        run=run,
    )
