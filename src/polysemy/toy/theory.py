"""Analytic results for toy models of superposition: phase diagrams, optimal geometries, and
the closed-form loss of the linear model.

Everything here is exact (float64) or a deterministic quadrature; nothing is trained. The
trained models of `polysemy.toy.trainer` are checked against these numbers by
`polysemy.toy.experiments`.

Data convention (Elhage et al. 2022, "Toy Models of Superposition", section 2): each feature
is 0 with probability `sparsity` S, else uniform on [0, 1]. With density p = 1 - S a feature
has mean p/2, second moment p/3 and variance p/3 - p^2/4. Losses are importance-weighted
squared errors averaged over features (the engine's convention), i.e.
`L = (1/n_features) * sum_i I_i * E[(x_i - x'_i)^2]`.

>>> phase_boundary_2_1(1.0)                     # doctest: +SKIP
array(0.5714...)                                # = 4/7: superposition below this density
>>> ideal_geometry("pentagon").dimensionality   # doctest: +SKIP
0.4
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

__all__ = [
    "GEOMETRIES",
    "PHASES",
    "Geometry",
    "PhaseDiagram",
    "classify_phase",
    "feature_variance",
    "ideal_geometry",
    "linear_expected_loss",
    "linear_optimal_loss",
    "phase_boundary_2_1",
    "phase_diagram",
    "phase_diagram_2_1",
    "phase_diagram_3_2",
    "relu_output_expected_loss",
]

Phase = Literal["not-represented", "dedicated", "superposition"]
PHASES: tuple[Phase, ...] = ("not-represented", "dedicated", "superposition")
"""Phase labels of the *extra* feature, in the order of the integer codes used in grids."""


# ---- feature statistics -------------------------------------------------------------------


def feature_variance(density: float | np.ndarray) -> np.ndarray:
    """Variance of one feature that is U[0, 1] with probability `density`, else 0:
    E[x^2] - E[x]^2 = p/3 - p^2/4."""
    p = np.asarray(density, dtype=np.float64)
    return p / 3.0 - p**2 / 4.0


def _check_density(density: float | np.ndarray, name: str = "density") -> np.ndarray:
    p = np.asarray(density, dtype=np.float64)
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"{name} must be in [0, 1]; got {np.asarray(density).tolist()!r}")
    return p


# ---- the linear model: x' = W^T W x + b --------------------------------------------------


def linear_optimal_loss(importance: Sequence[float], n_hidden: int, density: float) -> float:
    """The lowest expected loss any linear model `x' = W^T W x + b` can reach.

    With the optimal bias b = (1 - W^T W) E[x] the loss is
    `(var/n) * sum_i I_i ||(1 - P) e_i||^2 = (var/n) * ||D^{1/2} (1 - P)||_F^2` with
    P = W^T W (symmetric, rank <= m) and D = diag(I). By Eckart-Young this is at least the sum
    of the n - m smallest eigenvalues of D, reached by P = projection onto the m most
    important features; so the optimum keeps the top-m features exactly, like PCA, and
    `L* = (p/3 - p^2/4) / n * sum(importance sorted descending [m:])`.
    """
    imp = np.asarray(importance, dtype=np.float64)
    if imp.ndim != 1 or imp.size == 0 or np.any(imp < 0):
        raise ValueError(
            f"importance must be a non-empty list of numbers >= 0; got {np.asarray(importance)!r}"
        )
    if n_hidden < 1:
        raise ValueError(f"n_hidden must be >= 1; got {n_hidden}")
    p = _check_density(density)
    rest = np.sort(imp)[::-1][n_hidden:]
    return float(feature_variance(p) * rest.sum() / imp.size)


def linear_expected_loss(
    W: Float[Tensor, "n_hidden n_features"],
    b: Float[Tensor, " n_features"],
    importance: Sequence[float] | Tensor,
    density: float,
) -> float:
    """The exact expected loss of one linear model with weights `W` and bias `b`.

    For independent features with mean mu = p/2 and variance v = p/3 - p^2/4 and
    A = 1 - W^T W, the error e = A x - b has mean A mu - b and covariance v A A^T, so
    `E[I_i e_i^2] = I_i (v ||A_i||^2 + (A mu - b)_i^2)`. No sampling: this measures the
    trained weights, not a noisy batch.
    """
    W64 = W.detach().to("cpu", torch.float64)
    b64 = b.detach().to("cpu", torch.float64)
    n = W64.shape[1]
    imp = torch.as_tensor(importance, dtype=torch.float64)
    if imp.shape != (n,) or b64.shape != (n,):
        raise ValueError(
            f"importance and b must have n_features={n} entries; "
            f"got {tuple(imp.shape)} and {tuple(b64.shape)}"
        )
    p = float(_check_density(density))
    A = torch.eye(n, dtype=torch.float64) - W64.T @ W64  # (n, n)
    var = p / 3.0 - p * p / 4.0
    mean_err = A @ torch.full((n,), p / 2.0, dtype=torch.float64) - b64
    per_feature = var * (A**2).sum(dim=1) + mean_err**2  # E[e_i^2], (n,)
    return float((imp * per_feature).sum() / n)


# ---- ReLU-output model: exact expected loss of a fixed solution --------------------------


def _pattern_errors(
    W: np.ndarray, b: np.ndarray, active: tuple[int, ...], points: int
) -> np.ndarray:
    """Mean squared error of every feature when exactly the features `active` are on
    (uniform on [0, 1]) and the rest are 0: a midpoint rule with `points` nodes per axis."""
    n = W.shape[1]
    gram = W.T @ W  # (n, n)
    if not active:
        out = np.maximum(b, 0.0)
        return out**2
    nodes = (np.arange(points) + 0.5) / points
    grids = np.meshgrid(*([nodes] * len(active)), indexing="ij")
    x = np.zeros((grids[0].size, n))  # (samples, n)
    for axis, feature in enumerate(active):
        x[:, feature] = grids[axis].ravel()
    x_hat = np.maximum(x @ gram + b, 0.0)  # gram is symmetric, (samples, n)
    return ((x - x_hat) ** 2).mean(axis=0)


def _loss_polynomial(W: np.ndarray, b: np.ndarray, points: int) -> list[tuple[int, np.ndarray]]:
    """[(k, c)] where c[i] sums feature i's error over all patterns with k active features:
    the expected error of feature i at density p is sum_k p^k (1-p)^(n-k) c_k[i]."""
    n = W.shape[1]
    by_k: dict[int, np.ndarray] = {}
    for k in range(n + 1):
        total = np.zeros(n)
        for active in itertools.combinations(range(n), k):
            # A feature whose column and bias are zero contributes nothing to the others;
            # skip the quadrature axis for it only when its error is trivially E[x^2].
            total += _pattern_errors(W, b, active, points)
        by_k[k] = total
    return sorted(by_k.items())


def relu_output_expected_loss(
    W: np.ndarray,
    b: np.ndarray,
    importance: Sequence[float] | np.ndarray,
    density: np.ndarray | float,
    *,
    points: int = 96,
) -> np.ndarray:
    """Expected loss of the ReLU-output model `x' = ReLU(W^T W x + b)` with fixed `W`
    [n_hidden, n_features] and `b` [n_features], at each density in `density`.

    Exact enumeration over which features are on and a midpoint rule over their values:
    the loss is a polynomial in p whose coefficients depend only on (W, b), so one
    quadrature serves a whole density axis. Meant for tiny n (n <= 4; cost 2^n points^k).
    """
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    imp = np.asarray(importance, dtype=np.float64)
    n = W.shape[1]
    if n > 4:
        raise ValueError(f"relu_output_expected_loss is for n_features <= 4; got {n}")
    p = _check_density(density)
    loss = np.zeros_like(p)
    for k, c in _loss_polynomial(W, b, points):
        loss = loss + p**k * (1 - p) ** (n - k) * float(imp @ c)
    return loss / n


# ---- phase diagrams ------------------------------------------------------------------------


class PhaseDiagram(NamedTuple):
    """A grid of phase labels over (density, relative importance of the extra feature)."""

    n_features: int
    """Number of features (the last one is the extra feature whose phase is labelled)."""
    n_hidden: int
    """Number of hidden dimensions."""
    relative_importance: np.ndarray
    """[n_r] importance r of the extra feature (the others have importance 1)."""
    density: np.ndarray
    """[n_p] feature density p = 1 - sparsity."""
    labels: np.ndarray
    """[n_p, n_r] int: index into `PHASES` of the lowest-loss candidate's phase."""
    near_boundary: np.ndarray
    """[n_p, n_r] bool: the label changes within half a grid step (log scale) of the cell."""
    candidates: tuple[str, ...]
    """Names of the candidate solutions compared."""
    best: np.ndarray
    """[n_p, n_r] int: index into `candidates` of the lowest-loss candidate."""


def phase_boundary_2_1(relative_importance: float | np.ndarray) -> np.ndarray:
    """Density p* below which n=2, m=1 puts both features in superposition (an antipodal
    pair): p* = 4r / (2 + 5r) for r <= 1 and 4 / (5 + 2r) for r >= 1.

    Derivation (per feature-summed loss, features U[0, 1] with density p): keeping one
    feature and replacing the other by its mean costs I_dropped * (p/3 - p^2/4); the
    antipodal pair W = [1, -1], b = 0 is exact unless both features are on (probability
    p^2), when each feature's error is E[min(x1, x2)^2] = 1/6, costing (1 + r) p^2 / 6.
    Superposition wins when (1 + r) p / 6 < min(1, r) (1/3 - p/4), which solves to p*.
    """
    r = np.asarray(relative_importance, dtype=np.float64)
    if np.any(r <= 0):
        raise ValueError(f"relative_importance must be > 0; got {r.tolist()!r}")
    return np.where(r <= 1, 4 * r / (2 + 5 * r), 4 / (5 + 2 * r))


def _label_2_1(r: np.ndarray, p: np.ndarray) -> np.ndarray:
    """[len(p), len(r)] phase codes of the extra feature (importance r) for n=2, m=1.
    Above p*: the extra feature is dropped when r < 1 (`not-represented`), or takes the
    single dimension when r > 1 (`dedicated`); below p*: `superposition`."""
    rr, pp = np.meshgrid(r, p)  # (n_p, n_r)
    above = np.where(rr < 1, PHASES.index("not-represented"), PHASES.index("dedicated"))
    return np.where(pp < phase_boundary_2_1(rr), PHASES.index("superposition"), above)


@dataclass(frozen=True)
class _Candidate:
    name: str
    phase: Phase
    W: np.ndarray  # (m, n) directions of the represented features (zero columns: dropped)

    def loss(self, importance: np.ndarray, density: np.ndarray, points: int) -> np.ndarray:
        """Expected loss with b = 0 for represented features and the optimal constant
        b = p/2 (cost I * variance) for dropped ones."""
        dropped = np.linalg.norm(self.W, axis=0) == 0
        kept = np.flatnonzero(~dropped)
        n = self.W.shape[1]
        if kept.size:
            sub = self.W[:, kept]
            # Dropped features do not interact with kept ones, so integrate the kept ones
            # alone; relu_output_expected_loss averages over its own n, rescale to ours.
            part = relu_output_expected_loss(
                sub, np.zeros(kept.size), importance[kept], density, points=points
            )
            part = part * kept.size / n
        else:
            part = np.zeros_like(density)
        return part + feature_variance(density) * importance[dropped].sum() / n


def _candidates_3_2() -> list[_Candidate]:
    """Candidate solutions for n=3, m=2 (features 0 and 1 importance 1, feature 2 extra)."""
    e1, e2, z = [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]
    angles = np.deg2rad([90.0, 210.0, 330.0])
    tri = np.stack([np.cos(angles), np.sin(angles)])  # (2, 3) regular triangle
    cols = {
        "drop extra, 0 and 1 orthogonal": ("not-represented", [e1, e2, z]),
        "extra dedicated, drop 1": ("dedicated", [e1, z, e2]),
        "extra dedicated, 0 and 1 antipodal": ("dedicated", [e1, [-1.0, 0.0], e2]),
        "0 dedicated, 1 and extra antipodal": ("superposition", [e1, e2, [0.0, -1.0]]),
        "triangle": ("superposition", tri.T.tolist()),
    }
    return [
        _Candidate(name, phase, np.asarray(c, dtype=np.float64).T)  # type: ignore[arg-type]
        for name, (phase, c) in cols.items()
    ]


def _candidates_2_1() -> list[_Candidate]:
    return [
        _Candidate("drop extra", "not-represented", np.array([[1.0, 0.0]])),
        _Candidate("extra dedicated, drop 0", "dedicated", np.array([[0.0, 1.0]])),
        _Candidate("antipodal pair", "superposition", np.array([[1.0, -1.0]])),
    ]


def _numeric_labels(
    candidates: list[_Candidate], n: int, r: np.ndarray, p: np.ndarray, points: int
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, best) [len(p), len(r)]: phase code and index of the lowest-loss candidate."""
    losses = np.empty((len(candidates), p.size, r.size))
    for j, ri in enumerate(r):
        importance = np.ones(n)
        importance[-1] = ri
        for c, cand in enumerate(candidates):
            losses[c, :, j] = cand.loss(importance, p, points)
    best = losses.argmin(axis=0)
    codes = np.array([PHASES.index(c.phase) for c in candidates])
    return codes[best], best


def _near_boundary(label_fn, r: np.ndarray, p: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Cells whose label differs anywhere within half a (log-spaced) grid step."""

    def half_step(v: np.ndarray) -> float:
        if v.size < 2:
            return 1.0
        return float(np.exp(np.median(np.diff(np.log(v)))) ** 0.5)

    fr, fp = half_step(r), half_step(p)
    base = label_fn(r, p)
    near = np.zeros(base.shape, dtype=bool)
    for sr, sp in itertools.product((1 / fr, 1.0, fr), (1 / fp, 1.0, fp)):
        near |= label_fn(r * sr, np.clip(p * sp, 0.0, 1.0)) != base
    return near


def _check_axes(relative_importance: Sequence[float], density: Sequence[float]):  # type: ignore[no-untyped-def]
    r = np.asarray(relative_importance, dtype=np.float64)
    p = np.asarray(density, dtype=np.float64)
    if r.ndim != 1 or r.size == 0 or np.any(~np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"relative_importance must be a list of numbers > 0; got {r.tolist()!r}")
    if p.ndim != 1 or p.size == 0 or np.any(~np.isfinite(p)) or np.any(p <= 0) or np.any(p > 1):
        raise ValueError(f"density must be a list of numbers in (0, 1]; got {p.tolist()!r}")
    return r, p


def phase_diagram_2_1(
    relative_importance: Sequence[float], density: Sequence[float]
) -> PhaseDiagram:
    """The analytic phase diagram of n=2 features in m=1 dimension (closed form,
    `phase_boundary_2_1`). Feature 0 has importance 1, feature 1 (the extra one) has r."""
    r, p = _check_axes(relative_importance, density)
    labels = _label_2_1(r, p)
    cands = _candidates_2_1()
    # Which candidate wins, for the record (same rule as the labels).
    best = labels.copy()
    return PhaseDiagram(
        2, 1, r, p, labels, _near_boundary(_label_2_1, r, p), tuple(c.name for c in cands), best
    )


def phase_diagram_3_2(
    relative_importance: Sequence[float], density: Sequence[float], *, points: int = 48
) -> PhaseDiagram:
    """The phase diagram of n=3 features in m=2 dimensions, derived numerically.

    Features 0 and 1 have importance 1, feature 2 (the extra one) has r. No closed form is
    known, so we compare the exact expected losses (`relu_output_expected_loss`) of the
    candidate solutions: extra feature dropped with 0 and 1 orthogonal (`not-represented`);
    extra feature in a dimension of its own, the other dimension holding feature 0 alone or
    0 and 1 as an antipodal pair (`dedicated`); extra feature in an antipodal pair with
    feature 1, or all three in a regular triangle (`superposition`). As in the n=2 analysis,
    superposed solutions use unit norms and zero bias, so real models (which also learn
    negative biases) enter superposition at slightly higher density than this boundary.
    """
    r, p = _check_axes(relative_importance, density)
    cands = _candidates_3_2()

    def label_fn(rr: np.ndarray, pp: np.ndarray) -> np.ndarray:
        return _numeric_labels(cands, 3, rr, pp, points)[0]

    labels, best = _numeric_labels(cands, 3, r, p, points)
    return PhaseDiagram(
        3, 2, r, p, labels, _near_boundary(label_fn, r, p), tuple(c.name for c in cands), best
    )


def phase_diagram(
    n_features: int,
    n_hidden: int,
    relative_importance: Sequence[float],
    density: Sequence[float],
) -> PhaseDiagram:
    """The theory phase diagram for (n_features, n_hidden) in {(2, 1), (3, 2)}."""
    if (n_features, n_hidden) == (2, 1):
        return phase_diagram_2_1(relative_importance, density)
    if (n_features, n_hidden) == (3, 2):
        return phase_diagram_3_2(relative_importance, density)
    raise ValueError(
        "phase diagrams exist for (n_features, n_hidden) in {(2, 1), (3, 2)}; "
        f"got ({n_features}, {n_hidden})"
    )


def classify_phase(
    W: Float[Tensor, "*batch n_hidden n_features"],
    *,
    norm_threshold: float = 0.5,
    overlap_threshold: float = 0.25,
) -> Tensor:
    """Phase code (index into `PHASES`) of the last ("extra") feature of trained models.

    `not-represented`: ||W_extra|| < norm_threshold. `superposition`: the extra feature is
    represented and its superposition sum_{j != extra} (W_extra_hat . W_j)^2 over the other
    represented features exceeds `overlap_threshold` (antipodal pair: 1, triangle: 1/2).
    `dedicated`: represented and (nearly) orthogonal to every other represented feature.
    Returns an int64 tensor of shape `batch`.
    """
    W64 = W.detach().to("cpu", torch.float64)
    norms = W64.norm(dim=-2)  # (*batch, n_features)
    extra = W64[..., :, -1]  # (*batch, n_hidden)
    unit = extra / norms[..., -1:].clamp_min(1e-12)
    others = W64[..., :, :-1] * (norms[..., :-1] >= norm_threshold).unsqueeze(-2)
    overlap = (torch.einsum("...h,...hf->...f", unit, others) ** 2).sum(-1)  # (*batch,)
    code = torch.full(norms.shape[:-1], PHASES.index("dedicated"), dtype=torch.int64)
    code[overlap > overlap_threshold] = PHASES.index("superposition")
    code[norms[..., -1] < norm_threshold] = PHASES.index("not-represented")
    return code


# ---- ideal geometries ----------------------------------------------------------------------


class Geometry(NamedTuple):
    """A uniform polytope of unit feature directions and its feature dimensionality."""

    name: str
    """Name, e.g. `pentagon`."""
    W: Tensor
    """[n_hidden, n_features] float64: column i is feature i's unit direction."""
    dimensionality: float
    """Every feature's D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 (exact value)."""


GEOMETRIES: dict[str, float] = {
    "antipodal": 1 / 2,
    "triangle": 2 / 3,
    "tetrahedron": 3 / 4,
    "pentagon": 2 / 5,
    "square-antiprism": 3 / 8,
}
"""The geometries the paper finds (section "Feature Geometry") and their D_i."""


def _polygon(k: int) -> np.ndarray:
    angles = 2 * np.pi * np.arange(k) / k
    return np.stack([np.cos(angles), np.sin(angles)])  # (2, k)


def ideal_geometry(name: str) -> Geometry:
    """Exact float64 feature directions of a named geometry (see `GEOMETRIES`).

    The square antiprism is two unit squares at heights +-1/sqrt(3), rotated 45 degrees
    against each other: at that height the 8 vectors form a tight frame of R^3, so every
    D_i = 3/8 exactly (for a unit-norm tight frame of k vectors in d dims, D_i = d/k).
    """
    if name == "antipodal":
        W = np.array([[1.0, -1.0]])
    elif name == "triangle":
        W = _polygon(3)
    elif name == "pentagon":
        W = _polygon(5)
    elif name == "tetrahedron":
        W = np.array([[1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]], dtype=np.float64)
        W = W / math.sqrt(3)
    elif name == "square-antiprism":
        h = 1 / math.sqrt(3)
        rho = math.sqrt(1 - h * h)
        angles = np.pi / 4 * np.arange(8)  # even: top square, odd: bottom square (45 deg off)
        z = np.where(np.arange(8) % 2 == 0, h, -h)
        W = np.stack([rho * np.cos(angles), rho * np.sin(angles), z])
    else:
        raise ValueError(f"geometry must be one of {sorted(GEOMETRIES)}; got {name!r}")
    return Geometry(name, torch.tensor(W, dtype=torch.float64), GEOMETRIES[name])
