"""Named reproductions of "Toy Models of Superposition" (Elhage et al. 2022).

Each experiment (one module each, `e1_...` to `e7_...` in the paper's order, so that no
module shares its name with the function it defines) is a function that trains what it needs
(every level and seed of a sweep in ONE `train_toy` call, so the engine batches them in one
tensor), measures the numbers its acceptance bars check, and returns a frozen result dataclass
holding the numbers as typed fields, a tuple of `Check`s (measured value vs the bar) and the
runs. `fast=True` gives a small variant for the test suite (fewer steps, smaller batch, fewer
levels) with honest, looser bars where the short training cannot reach the full ones; the
full variant uses the paper's settings.

>>> result = pentagon(fast=True)                  # doctest: +SKIP
>>> result.represented[0], result.passed          # doctest: +SKIP
((0, 1), True)

Experiments (keys of `EXPERIMENTS`):
1. `sparsity-sweep`  n=20, m=5, I_i = 0.7^i: linear vs ReLU output over sparsity.
2. `pentagon`        n=5, m=2, I_i = 0.9^i: two orthogonal features -> a regular pentagon.
3. `geometry`        n=200, m=20, uniform importance: dimensions per feature sticks at 1/2.
4. `phase-2-1`, `phase-3-2`  empirical phase diagrams vs `polysemy.toy.theory`.
5. `privileged-basis` relu-hidden n=10, m=5: monosemantic neurons when dense only.
6. `computation`     abs n=100, m=40: computation in superposition when sparse.
7. `correlation`     correlated features go orthogonal, anti-correlated go antipodal.
"""

from __future__ import annotations

from collections.abc import Callable

from polysemy.toy.experiments.common import (
    MONOSEMANTIC_THRESHOLD,
    REPRESENTED,
    ExperimentResult,
)
from polysemy.toy.experiments.e1_sparsity_sweep import SparsitySweepResult, sparsity_sweep
from polysemy.toy.experiments.e2_pentagon import PentagonResult, pentagon
from polysemy.toy.experiments.e3_geometry import GeometryResult, feature_geometry
from polysemy.toy.experiments.e4_phase import PhaseResult, phase, phase_2_1, phase_3_2
from polysemy.toy.experiments.e5_privileged_basis import PrivilegedBasisResult, privileged_basis
from polysemy.toy.experiments.e6_computation import (
    COMPUTED_THRESHOLD,
    ComputationResult,
    abs_init_std,
    computation,
    computed_features,
    superposed_start,
)
from polysemy.toy.experiments.e7_correlation import CorrelationResult, correlation

__all__ = [
    "COMPUTED_THRESHOLD",
    "EXPERIMENTS",
    "MONOSEMANTIC_THRESHOLD",
    "REPRESENTED",
    "ComputationResult",
    "CorrelationResult",
    "ExperimentResult",
    "GeometryResult",
    "PentagonResult",
    "PhaseResult",
    "PrivilegedBasisResult",
    "SparsitySweepResult",
    "abs_init_std",
    "computation",
    "computed_features",
    "correlation",
    "feature_geometry",
    "pentagon",
    "phase",
    "privileged_basis",
    "sparsity_sweep",
    "superposed_start",
]

EXPERIMENTS: dict[str, Callable[..., ExperimentResult]] = {
    "sparsity-sweep": sparsity_sweep,
    "pentagon": pentagon,
    "geometry": feature_geometry,
    "phase-2-1": phase_2_1,
    "phase-3-2": phase_3_2,
    "privileged-basis": privileged_basis,
    "computation": computation,
    "correlation": correlation,
}
"""Every reproduction by name; each takes keyword arguments fast, steps, seed, device,
progress (and best_of) and returns an `ExperimentResult` subclass."""
