"""Geometry of a toy model's weights: norms, interference, feature dimensionality, drift.

Every function takes `W` of shape `[..., n_hidden, n_features]` (any leading batch
dimensions, e.g. `n_instances`): column i, `W_i`, is feature i's direction. Computations run in
float64 (the input dtype is restored on output where the result is a float), and a zero
feature vector never produces NaN: its unit vector is defined as 0.

Definitions follow Elhage et al. 2022, "Toy Models of Superposition" (sections "Feature
Dimensionality" and "Superposition as a Phase Change").
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

# Norms below this count as exactly zero (their unit vector is 0).
_TINY = 1e-12


def _as64(W: Tensor) -> Tensor:
    if W.dim() < 2:
        raise ValueError(f"W must have shape [..., n_hidden, n_features]; got {tuple(W.shape)}")
    return W.detach().to(torch.float64)


def _out_dtype(W: Tensor) -> torch.dtype:
    return W.dtype if W.is_floating_point() else torch.float64


def _unit_columns(W64: Tensor) -> tuple[Tensor, Tensor]:
    norms = W64.norm(dim=-2)  # (..., n_features)
    safe = torch.where(norms > _TINY, norms, torch.ones_like(norms))
    unit = torch.where((norms > _TINY).unsqueeze(-2), W64 / safe.unsqueeze(-2), 0.0)
    return unit, norms


def feature_norms(
    W: Float[Tensor, "... n_hidden n_features"],
) -> Float[Tensor, "... n_features"]:
    """||W_i||: how strongly feature i is represented (the paper's "feature norm")."""
    return _as64(W).norm(dim=-2).to(_out_dtype(W))


def _overlaps_sq(W64: Tensor) -> tuple[Tensor, Tensor]:
    """(sum_j (W_i_hat . W_j)^2 over all j, ||W_i||) per feature i."""
    unit, norms = _unit_columns(W64)
    gram = unit.transpose(-1, -2) @ W64  # (..., n_features, n_features): W_i_hat . W_j
    return (gram**2).sum(dim=-1), norms


def superposition(
    W: Float[Tensor, "... n_hidden n_features"],
) -> Float[Tensor, "... n_features"]:
    """Interference of feature i with the others: sum_{j != i} (W_i_hat . W_j)^2.

    W_i_hat = W_i / ||W_i|| (0 for a zero column, giving 0). It is 0 exactly when W_i is
    orthogonal to every other feature.
    """
    W64 = _as64(W)
    total, norms = _overlaps_sq(W64)
    own = torch.where(norms > _TINY, norms**2, torch.zeros_like(norms))  # (W_i_hat . W_i)^2
    return (total - own).clamp(min=0.0).to(_out_dtype(W))


def feature_dimensionality(
    W: Float[Tensor, "... n_hidden n_features"],
) -> Float[Tensor, "... n_features"]:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 (the j = i term included); 0 for W_i = 0.

    The fraction of a hidden dimension feature i gets: 1 for a dedicated dimension, 1/2 for
    an antipodal pair, 2/3 triangle, 3/4 tetrahedron, 2/5 pentagon, 3/8 square antiprism, and
    d/k for any unit-norm tight frame of k vectors in d dimensions.
    """
    W64 = _as64(W)
    total, norms = _overlaps_sq(W64)
    nonzero = (norms > _TINY) & (total > 0)
    safe = torch.where(nonzero, total, torch.ones_like(total))
    return torch.where(nonzero, norms**2 / safe, 0.0).to(_out_dtype(W))


def dimensions_per_feature(
    W: Float[Tensor, "... n_hidden n_features"],
) -> Float[Tensor, ...]:
    """D* = n_hidden / ||W||_F^2: hidden dimensions per (fully) represented feature.

    ||W||_F^2 = sum_i ||W_i||^2 counts represented features (each with norm near 1), so D* is
    1 with one dedicated dimension per feature, 1/2 for antipodal pairs, and so on. It is
    `inf` for W = 0.
    """
    W64 = _as64(W)
    frob = (W64**2).sum(dim=(-2, -1))
    safe = torch.where(frob > 0, frob, torch.ones_like(frob))
    return torch.where(frob > 0, W64.shape[-2] / safe, torch.inf).to(_out_dtype(W))


REPRESENTED_NORM = 0.5
"""A feature counts as represented when ||W_i|| >= this (the paper's figures use ~0.5)."""


def represented_count(
    W: Float[Tensor, "... n_hidden n_features"], threshold: float = REPRESENTED_NORM
) -> Int[Tensor, ...]:
    """Number of represented features: #{i : ||W_i|| >= threshold}."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be a number >= 0; got {threshold!r}")
    return (_as64(W).norm(dim=-2) >= threshold).sum(dim=-1)


def neuron_polysemanticity(
    W: Float[Tensor, "... n_hidden n_features"],
    threshold: float = 0.3,
    *,
    min_loading: float = 1e-2,
) -> Int[Tensor, "... n_hidden"]:
    """How many features load on each neuron (relu-hidden / abs models).

    Neuron k's loadings are the row W[k, :]. Feature i counts for neuron k when
    |W[k, i]| >= threshold * max_j |W[k, j]| and |W[k, i]| > min_loading. So 0 means a dead
    neuron, 1 a monosemantic one, and >= 2 a polysemantic one. The relative threshold makes
    the count independent of the neuron's scale; `min_loading` keeps numerically-zero rows
    from counting as monosemantic.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}")
    if not min_loading >= 0:
        raise ValueError(f"min_loading must be >= 0; got {min_loading!r}")
    a = _as64(W).abs()
    peak = a.amax(dim=-1, keepdim=True)  # (..., n_hidden, 1)
    loads = (a >= threshold * peak) & (a > min_loading)
    return loads.sum(dim=-1)


class Drift(NamedTuple):
    """How loading patterns move between consecutive snapshots ("moving targets")."""

    steps: list[int]
    """Step of each later snapshot of a consecutive pair (length n_snapshots - 1)."""
    neuron: Float[Tensor, "pairs ... n_hidden"]
    """1 - cos(W_t[k, :], W_t+1[k, :]) per neuron k (its loadings over features)."""
    feature: Float[Tensor, "pairs ... n_features"]
    """1 - cos(W_t[:, i], W_t+1[:, i]) per feature i (its direction in hidden space)."""


def _cos_drift(a: Tensor, b: Tensor, dim: int) -> Tensor:
    na, nb = a.norm(dim=dim), b.norm(dim=dim)
    dot = (a * b).sum(dim=dim)
    both = (na > _TINY) & (nb > _TINY)
    cos = torch.where(both, dot / torch.where(both, na * nb, torch.ones_like(na)), 0.0)
    neither = (na <= _TINY) & (nb <= _TINY)
    # Two zero vectors have not moved; one zero and one non-zero moved by a right angle.
    return torch.where(neither, 0.0, 1.0 - cos)


def loading_drift(snapshots: list[tuple[int, Tensor]] | Tensor) -> Drift:
    """Drift of each neuron's and each feature's loading pattern across snapshots.

    drift = 1 - cosine similarity between consecutive snapshots (0 = unchanged direction,
    1 = orthogonal, 2 = reversed); two zero vectors give 0, a vector appearing from or
    vanishing to zero gives 1. Accepts `ToyRun.snapshots` ((step, W) pairs) or a tensor
    `[n_snapshots, ..., n_hidden, n_features]` (steps are then 1, 2, ...).
    """
    if isinstance(snapshots, Tensor):
        stack = _as64(snapshots)
        steps = list(range(stack.shape[0]))
    else:
        if len(snapshots) == 0:
            raise ValueError("snapshots must hold at least 2 snapshots; got 0")
        steps = [int(s) for s, _ in snapshots]
        stack = torch.stack([_as64(w) for _, w in snapshots])
    if stack.dim() < 3 or stack.shape[0] < 2:
        raise ValueError(
            f"snapshots must hold at least 2 snapshots of W; got shape {tuple(stack.shape)}"
        )
    before, after = stack[:-1], stack[1:]
    return Drift(
        steps=steps[1:],
        neuron=_cos_drift(before, after, dim=-1),
        feature=_cos_drift(before, after, dim=-2),
    )
