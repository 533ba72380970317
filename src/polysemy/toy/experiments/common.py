"""What every reproduction shares: the result base class, training budgets, the trainer that
carries the caller's options, and small float64 measurements of trained weights."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.checks import Check
from polysemy.toy import metrics
from polysemy.toy.model import FeatureKind, ModelKind, ToyConfig, ToyParams
from polysemy.toy.trainer import ToyRun, train_toy

__all__ = [
    "ARTIFACT",
    "MONOSEMANTIC_THRESHOLD",
    "REPRESENTED",
    "Budget",
    "Check",
    "ExperimentResult",
    "Trainer",
]

REPRESENTED = metrics.REPRESENTED_NORM
"""A feature counts as represented when ||W_i|| >= this (`metrics.represented_count`)."""

MONOSEMANTIC_THRESHOLD = 0.3
"""A feature loads on a neuron when |W[k, i]| >= this * max_j |W[k, j]|
(`metrics.neuron_polysemanticity`); a neuron with exactly one such feature is monosemantic."""

ARTIFACT = {"artifact": True}
"""Field metadata of what a result holds besides its numbers (trained runs, theory grids):
`field(metadata=ARTIFACT)` keeps the field out of `ExperimentResult.numbers`."""


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentResult:
    """What every reproduction returns: its name, the checks, and (in each subclass) the
    measured numbers as typed fields plus the trained runs."""

    name: str
    """Key in `EXPERIMENTS`."""
    title: str
    """One-line description."""
    checks: tuple[Check, ...]
    """The acceptance checks, measured against their bars."""
    seconds: float
    """Training wall time summed over the runs."""

    _BASE: ClassVar[tuple[str, ...]] = ("name", "title", "checks", "seconds")

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def numbers(self) -> dict[str, Any]:
        """The measured numbers, JSON-ready: every field but the base ones and the artifacts,
        in field order (tuples and arrays as lists, non-finite floats as None)."""
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in self._BASE and not f.metadata.get("artifact")
        }

    def named_runs(self) -> list[tuple[str, ToyRun]]:
        """Every trained sweep with the folder name it is saved under (`runs/<name>`)."""
        return []

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict: name, title, passed, seconds, numbers, checks."""
        return {
            "name": self.name,
            "title": self.title,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
            "numbers": self.numbers(),
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks
            ],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor | np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


# ---- training ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Optimizer steps and batch size of one training run."""

    steps: int
    """Optimizer steps."""
    batch_size: int
    """Samples per step."""


@dataclass(frozen=True)
class Trainer:
    """The caller's options that every experiment passes to `train_toy` unchanged, so that
    each call site shows only what the experiment chooses: model, sizes, levels, importance,
    budget and seeds."""

    fast: bool
    """Short training (the test-suite variant)."""
    steps: int | None
    """Replaces every budget's steps when given."""
    seed: int
    """Seed of initialization and data."""
    device: torch.device | str
    """Where to train."""
    progress: bool
    """Show a progress bar."""

    def budget(self, full: Budget, quick: Budget) -> Budget:
        """`quick` when fast, else `full`; the caller's `steps`, when given, replaces either's."""
        b = quick if self.fast else full
        return Budget(self.steps if self.steps is not None else b.steps, b.batch_size)

    def train(
        self,
        model: ModelKind,
        n_features: int,
        n_hidden: int,
        sparsity: Sequence[float],
        importance: Sequence[Sequence[float]] | Sequence[float],
        budget: Budget,
        *,
        best_of: int = 1,
        feature_kind: FeatureKind = "independent",
        init_std: float | None = None,
        init: ToyParams | None = None,
    ) -> ToyRun:
        """Train one batched sweep, an instance per sparsity level; `importance` is one row
        for every level or a row per level; `init` optionally gives the starting weights."""
        rows: tuple[tuple[float, ...], ...]
        if importance and isinstance(importance[0], int | float):
            rows = tuple(tuple(float(v) for v in importance) for _ in sparsity)  # type: ignore[union-attr,arg-type]
        else:
            rows = tuple(tuple(float(v) for v in row) for row in importance)  # type: ignore[union-attr,arg-type]
        config = ToyConfig(
            model=model,
            n_features=n_features,
            n_hidden=n_hidden,
            sparsity=tuple(float(s) for s in sparsity),
            importance=rows,
            feature_kind=feature_kind,
            steps=budget.steps,
            batch_size=budget.batch_size,
            best_of=best_of,
            seed=self.seed,
            init_std=init_std,
        )
        return train_toy(config, device=self.device, progress=self.progress, init=init)


# ---- small measurements (float64) ----------------------------------------------------------


def f64(W: Tensor) -> Tensor:
    """`W` detached, on the CPU, in float64."""
    return W.detach().to("cpu", torch.float64)


def norms(W: Float[Tensor, "*b n_hidden n_features"]) -> Tensor:
    """||W_i|| per feature (float64): [*b, n_features]."""
    return metrics.feature_norms(f64(W))


def superposition(W: Float[Tensor, "*b n_hidden n_features"]) -> Tensor:
    """sum_{j != i} (W_i_hat . W_j)^2 per feature (float64): [*b, n_features]."""
    return metrics.superposition(f64(W))


def dimensionality(W: Float[Tensor, "*b n_hidden n_features"]) -> Tensor:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 per feature (float64): [*b, n_features]."""
    return metrics.feature_dimensionality(f64(W))


def monosemantic(W: Float[Tensor, "*b n_hidden n_features"]) -> Tensor:
    """Whether each neuron (row of W) is monosemantic: [*b, n_hidden] bool."""
    return metrics.neuron_polysemanticity(f64(W), MONOSEMANTIC_THRESHOLD) == 1


def features_per_neuron(W: Float[Tensor, "*b n_hidden n_features"]) -> Tensor:
    """How many features load on each neuron: [*b, n_hidden] int."""
    return metrics.neuron_polysemanticity(f64(W), MONOSEMANTIC_THRESHOLD)


def top_feature(W: Tensor) -> Tensor:
    """Index of each neuron's largest |loading|: [*b, n_hidden]."""
    return f64(W).abs().argmax(-1)


def represented_sets(W: Tensor) -> tuple[tuple[int, ...], ...]:
    """The represented features of each instance, in index order."""
    return tuple(tuple(torch.nonzero(r >= REPRESENTED).ravel().tolist()) for r in norms(W))


def floats(values: Sequence[float] | Tensor | np.ndarray) -> tuple[float, ...]:
    """A flat tuple of Python floats."""
    vals = values.tolist() if isinstance(values, Tensor | np.ndarray) else list(values)
    return tuple(float(v) for v in vals)


def ints(values: Sequence[int] | Tensor) -> tuple[int, ...]:
    """A flat tuple of Python ints."""
    vals = values.tolist() if isinstance(values, Tensor) else list(values)
    return tuple(int(v) for v in vals)


def fmt_list(values: Sequence[float] | Tensor, digits: int = 3) -> str:
    """`[0.1, 0.25]`: numbers to `digits` significant digits, for a check's detail."""
    vals = values.tolist() if isinstance(values, Tensor) else list(values)
    return "[" + ", ".join(f"{v:.{digits}g}" for v in vals) + "]"
