"""Experiment 1: linear and ReLU-output models, n=20, m=5, I_i = 0.7^i, over sparsity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from polysemy.checks import Check
from polysemy.toy import theory
from polysemy.toy.experiments.common import (
    ARTIFACT,
    REPRESENTED,
    Budget,
    ExperimentResult,
    Trainer,
    f64,
    floats,
    fmt_list,
    ints,
    norms,
    represented_sets,
    superposition,
)
from polysemy.toy.trainer import ToyRun

SWEEP_SPARSITY = (0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)
# Lower bounds on the ReLU model's represented count (the paper's figure: about >= 7 at S=0.7,
# 9 at 0.9, 11 at 0.99, 12 at 0.999).
SWEEP_MIN_REPRESENTED = {0.7: 7, 0.9: 9, 0.99: 11, 0.999: 12}


@dataclass(frozen=True)
class SparsitySweepResult(ExperimentResult):
    """Experiment 1: linear and ReLU-output models, n=20, m=5, over sparsity."""

    sparsity: tuple[float, ...]
    """The sparsity S of each instance."""
    linear_frobenius_sq: tuple[float, ...]
    """||W||_F^2 of the linear model per S."""
    linear_represented: tuple[tuple[int, ...], ...]
    """The features the linear model represents per S."""
    linear_loss_exact: tuple[float, ...]
    """The linear model's exact expected loss per S."""
    linear_loss_closed_form: tuple[float, ...]
    """The optimal linear loss (closed form) per S."""
    linear_loss_relative_excess: tuple[float, ...]
    """exact / closed form - 1 per S."""
    relu_represented_count: tuple[int, ...]
    """How many features the ReLU-output model represents per S."""
    relu_loss: tuple[float, ...]
    """The ReLU-output model's final loss per S."""
    relu_max_bias_gap_ignored_S0: float
    """max |b_i - 0.5| over the features the dense ReLU model ignores."""
    relu_superposed_negative_bias_share: tuple[float, ...]
    """Share of superposed features with b < -0.01 per S (NaN where none is superposed)."""
    steps: int
    """Training steps."""
    batch_size: int
    """Batch size of the ReLU-output run."""
    linear_batch_size: int
    """Batch size of the linear run."""
    best_of: int
    """Seeds per level of the ReLU-output run."""
    linear: ToyRun = field(metadata=ARTIFACT)
    """The linear sweep."""
    relu: ToyRun = field(metadata=ARTIFACT)
    """The ReLU-output sweep."""

    def named_runs(self) -> list[tuple[str, ToyRun]]:
        return [(f"{self.name}-linear", self.linear), (f"{self.name}-relu-output", self.relu)]


def sparsity_sweep(
    *,
    fast: bool = False,
    steps: int | None = None,
    best_of: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> SparsitySweepResult:
    """n=20, m=5, I_i = 0.7^i at S in {0, .7, .9, .97, .99, .997, .999}.

    Linear: exactly features 0-4 at every S (||W||_F^2 = 5, no superposition), and its exact
    expected loss (`theory.linear_expected_loss`, no sampling noise) within 2% of the closed
    form `theory.linear_optimal_loss`. ReLU output: the same at S=0 with the ignored
    features' biases at p/2; more features represented, in superposition and with negative
    biases, as S rises.
    """
    n, m = 20, 5
    sparsity = SWEEP_SPARSITY
    importance = [0.7**i for i in range(n)]
    trainer = Trainer(fast=fast, steps=steps, seed=seed, device=device, progress=progress)
    budget = trainer.budget(Budget(10_000, 1024), Budget(5_000, 512))
    # The fast linear run needs the bigger batch: at S = 0.999 a batch of 512 holds each
    # feature about once, and after 5k such steps a sixth feature was still half-represented.
    lin_budget = trainer.budget(Budget(10_000, 1024), Budget(5_000, 2048))
    lin = trainer.train("linear", n, m, sparsity, importance, lin_budget)
    relu = trainer.train("relu-output", n, m, sparsity, importance, budget, best_of=best_of)

    # linear
    frob = (f64(lin.W) ** 2).sum(dim=(1, 2))  # (I,)
    lin_norms = norms(lin.W)
    lin_sets = represented_sets(lin.W)
    # Superposition of the represented features only: a dropped feature's (tiny) direction
    # is arbitrary, so its overlap says nothing.
    lin_sup = (superposition(lin.W) * (lin_norms >= REPRESENTED)).max(dim=1).values
    exact = [
        theory.linear_expected_loss(lin.W[k], lin.b_final[k], importance, 1 - s)
        for k, s in enumerate(sparsity)
    ]
    optimal = [theory.linear_optimal_loss(importance, m, 1 - s) for s in sparsity]
    rel = [e / o - 1 if o > 0 else math.inf for e, o in zip(exact, optimal, strict=True)]

    # ReLU output
    r_norms = norms(relu.W)
    r_sup = superposition(relu.W)
    counts = ints((r_norms >= REPRESENTED).sum(dim=1))
    b = f64(relu.b_final)
    ignored0 = r_norms[0] < REPRESENTED
    bias_gap0 = float((b[0, ignored0] - 0.5).abs().max()) if bool(ignored0.any()) else math.inf
    relu_set0 = represented_sets(relu.W[:1])[0]
    superposed = (r_norms >= REPRESENTED) & (r_sup > 0.1)  # (I, n)
    # A bias counts as negative below -0.01 (a trained "zero" bias is +-0.005 noise).
    neg_share = [
        float((b[k, superposed[k]] < -0.01).double().mean())
        if bool(superposed[k].any())
        else math.nan
        for k in range(len(sparsity))
    ]
    tol_frob, tol_loss = (0.05, 0.02) if not fast else (0.15, 0.10)
    first5 = (0, 1, 2, 3, 4)
    checks = [
        Check(
            f"linear: ||W||_F^2 = 5 +- {tol_frob} at every S",
            bool(((frob - 5).abs() <= tol_frob).all()),
            f"||W||_F^2 = {fmt_list(frob, 4)}",
        ),
        Check(
            "linear: represents exactly features 0-4 at every S",
            all(s == first5 for s in lin_sets),
            f"represented = {[list(s) for s in lin_sets]}",
        ),
        Check(
            "linear: no superposition (represented i: sum_j (W_i_hat . W_j)^2 < 0.05)",
            bool((lin_sup < 0.05).all()),
            f"max superposition = {fmt_list(lin_sup)}",
        ),
        Check(
            f"linear: exact expected loss within {tol_loss:.0%} of the closed form",
            all(abs(x) <= tol_loss for x in rel),
            f"relative excess = {fmt_list(rel)}",
        ),
        Check(
            "ReLU, S=0: represents exactly features 0-4",
            relu_set0 == first5,
            f"represented = {list(relu_set0)}",
        ),
        Check(
            "ReLU, S=0: ignored features' biases at p/2 = 0.5 (+- 0.05)",
            bias_gap0 <= 0.05,
            f"max |b - 0.5| = {bias_gap0:.4f}",
        ),
    ]
    for s, need in SWEEP_MIN_REPRESENTED.items():
        if fast and s > 0.99:
            continue  # too few active samples in a short run to settle the sparsest levels
        k = sparsity.index(s)
        checks.append(
            Check(
                f"ReLU, S={s}: >= {need} features represented",
                counts[k] >= need,
                f"{counts[k]} represented",
            )
        )
    # Up to 2m features fit as antipodal pairs, whose interference is negative and filtered
    # by the ReLU for free, so their biases stay ~0 (S = 0.9-0.97 here); the negative biases
    # that filter positive interference show at S >= 0.99, where the geometry goes beyond
    # pairs. The share at every S is in the numbers.
    sparse_levels = [k for k, s in enumerate(sparsity) if s >= 0.99]
    checks.append(
        Check(
            "ReLU, S >= 0.99: >= 80% of superposed features have negative biases (b < -0.01)",
            all(neg_share[k] >= 0.8 for k in sparse_levels if not math.isnan(neg_share[k])),
            "share with b < -0.01 = " + fmt_list([neg_share[k] for k in sparse_levels]),
        )
    )
    return SparsitySweepResult(
        name="sparsity-sweep",
        title="Superposition as a function of sparsity (n=20, m=5, I_i = 0.7^i)",
        checks=tuple(checks),
        seconds=lin.seconds + relu.seconds,
        sparsity=sparsity,
        linear_frobenius_sq=floats(frob),
        linear_represented=lin_sets,
        linear_loss_exact=floats(exact),
        linear_loss_closed_form=floats(optimal),
        linear_loss_relative_excess=floats(rel),
        relu_represented_count=counts,
        relu_loss=floats(relu.loss),
        relu_max_bias_gap_ignored_S0=bias_gap0,
        relu_superposed_negative_bias_share=floats(neg_share),
        steps=budget.steps,
        batch_size=budget.batch_size,
        linear_batch_size=lin_budget.batch_size,
        best_of=best_of,
        linear=lin,
        relu=relu,
    )
