"""Tests for polysemy.toy.theory: exact geometry values, closed forms, phase diagrams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polysemy.toy import theory


def _dimensionality(W: torch.Tensor) -> torch.Tensor:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2, written out independently of metrics.py."""
    norms = W.norm(dim=0)
    unit = W / norms.clamp_min(1e-300)
    denom = ((unit.T @ W) ** 2).sum(dim=1)
    return torch.where(norms > 0, norms**2 / denom.clamp_min(1e-300), torch.zeros_like(norms))


@pytest.mark.parametrize("name", sorted(theory.GEOMETRIES))
def test_ideal_geometry_unit_vectors_and_exact_dimensionality(name: str) -> None:
    geom = theory.ideal_geometry(name)
    assert geom.W.dtype == torch.float64
    torch.testing.assert_close(geom.W.norm(dim=0), torch.ones(geom.W.shape[1], dtype=torch.float64))
    D = _dimensionality(geom.W)
    assert torch.allclose(D, torch.full_like(D, geom.dimensionality), atol=1e-9, rtol=0)


def test_ideal_geometry_values_are_the_papers() -> None:
    assert (
        pytest.approx(
            {
                "antipodal": 0.5,
                "triangle": 2 / 3,
                "tetrahedron": 0.75,
                "pentagon": 0.4,
                "square-antiprism": 0.375,
            },
            abs=1e-15,
        )
        == theory.GEOMETRIES
    )
    # tight frames: sum_j v_j v_j^T = (k/d) I
    for name in ("triangle", "tetrahedron", "pentagon", "square-antiprism"):
        W = theory.ideal_geometry(name).W
        d, k = W.shape
        torch.testing.assert_close(W @ W.T, torch.eye(d, dtype=torch.float64) * k / d)


def test_ideal_geometry_unknown_name() -> None:
    with pytest.raises(ValueError, match="geometry must be one of"):
        theory.ideal_geometry("hexagon")


@pytest.mark.parametrize("r", [0.1, 0.5, 1.0, 2.0, 10.0])
def test_boundary_2_1_is_where_losses_cross(r: float) -> None:
    p_star = float(theory.phase_boundary_2_1(r))
    # loss of keeping only the more important feature vs the antipodal pair, at p*
    single = min(1.0, r) * theory.feature_variance(p_star)
    pair = (1 + r) * p_star**2 / 6
    assert single == pytest.approx(pair, rel=1e-12)
    assert float(theory.phase_boundary_2_1(1.0)) == pytest.approx(4 / 7)


def test_boundary_2_1_rejects_nonpositive_r() -> None:
    with pytest.raises(ValueError, match="relative_importance must be > 0"):
        theory.phase_boundary_2_1(0.0)


def test_quadrature_reproduces_closed_forms_2_1() -> None:
    p = np.array([0.05, 0.3, 1.0])
    pair = theory.relu_output_expected_loss(
        np.array([[1.0, -1.0]]), np.zeros(2), [1.0, 0.5], p, points=400
    )
    np.testing.assert_allclose(pair, 1.5 * p**2 / 6 / 2, rtol=1e-4)
    # a dedicated dimension is exact: zero loss
    eye = theory.relu_output_expected_loss(np.eye(2), np.zeros(2), [1.0, 1.0], p, points=16)
    np.testing.assert_allclose(eye, 0.0, atol=1e-15)


def test_numeric_candidates_agree_with_closed_form_2_1() -> None:
    r = np.geomspace(0.1, 10, 9)
    p = np.geomspace(0.01, 1, 9)
    closed = theory.phase_diagram_2_1(r, p)
    numeric, _ = theory._numeric_labels(theory._candidates_2_1(), 2, r, p, 200)
    away = ~closed.near_boundary
    assert away.sum() > 40
    assert (numeric[away] == closed.labels[away]).all()


def test_phase_diagram_2_1_regions() -> None:
    d = theory.phase_diagram_2_1([0.2, 5.0], [0.01, 1.0])
    names = [[theory.PHASES[c] for c in row] for row in d.labels]
    assert names == [["superposition", "superposition"], ["not-represented", "dedicated"]]
    assert d.labels.shape == (2, 2) and d.near_boundary.shape == (2, 2)


def test_phase_diagram_3_2_regions() -> None:
    d = theory.phase_diagram_3_2([0.2, 1.0, 8.0], [0.01, 1.0], points=24)
    names = [[theory.PHASES[c] for c in row] for row in d.labels]
    # sparse and not too important -> superposition; dense -> extra dropped (r<1) or dedicated
    assert names[0][0] == "superposition"
    assert names[1][0] == "not-represented"
    assert names[1][2] == "dedicated"
    assert names[0][2] == "dedicated"  # very important extra feature keeps its own dimension


def test_phase_diagram_dispatch_and_validation() -> None:
    assert theory.phase_diagram(2, 1, [1.0], [0.5]).n_features == 2
    with pytest.raises(ValueError, match=r"\(n_features, n_hidden\)"):
        theory.phase_diagram(4, 2, [1.0], [0.5])
    with pytest.raises(ValueError, match="density must be"):
        theory.phase_diagram_2_1([1.0], [0.0])
    with pytest.raises(ValueError, match="relative_importance must be"):
        theory.phase_diagram_2_1([-1.0], [0.5])


def test_classify_phase() -> None:
    W = torch.tensor(
        [
            [[1.0, 0.0]],  # extra dropped
            [[0.0, 1.0]],  # extra has the dimension
            [[1.0, -1.0]],  # antipodal
        ]
    )
    assert theory.classify_phase(W).tolist() == [0, 1, 2]
    tri = theory.ideal_geometry("triangle").W
    assert theory.PHASES[int(theory.classify_phase(tri))] == "superposition"
    ded = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert theory.PHASES[int(theory.classify_phase(ded))] == "dedicated"


def test_linear_optimal_loss_and_exact_loss_of_the_optimum() -> None:
    importance = [0.7**i for i in range(6)]
    p = 0.3
    expected = (p / 3 - p * p / 4) * sum(importance[2:]) / 6
    assert theory.linear_optimal_loss(importance, 2, p) == pytest.approx(expected, rel=1e-12)
    # the optimum: project onto features 0 and 1, bias = (1 - P) mu
    W = torch.zeros(2, 6, dtype=torch.float64)
    W[0, 0] = W[1, 1] = 1.0
    b = torch.full((6,), p / 2, dtype=torch.float64)
    b[:2] = 0.0
    assert theory.linear_expected_loss(W, b, importance, p) == pytest.approx(expected, rel=1e-12)
    # any other rank-2 W does worse
    g = torch.Generator().manual_seed(0)
    W_rand = torch.randn(2, 6, generator=g, dtype=torch.float64)
    assert theory.linear_expected_loss(W_rand, b, importance, p) > expected


def test_linear_expected_loss_matches_sampling() -> None:
    g = torch.Generator().manual_seed(1)
    W = 0.5 * torch.randn(2, 4, generator=g, dtype=torch.float64)
    b = 0.1 * torch.randn(4, generator=g, dtype=torch.float64)
    importance = torch.tensor([1.0, 0.8, 0.5, 0.2], dtype=torch.float64)
    p = 0.4
    x = torch.rand(400_000, 4, generator=g, dtype=torch.float64)
    x = x * (torch.rand(400_000, 4, generator=g, dtype=torch.float64) < p)
    sampled = (importance * (x - (x @ W.T @ W + b)) ** 2).mean()
    exact = theory.linear_expected_loss(W, b, importance, p)
    assert exact == pytest.approx(float(sampled), rel=0.02)


def test_linear_loss_validation() -> None:
    with pytest.raises(ValueError, match="n_hidden must be >= 1"):
        theory.linear_optimal_loss([1.0], 0, 0.5)
    with pytest.raises(ValueError, match="density must be in"):
        theory.linear_optimal_loss([1.0, 1.0], 1, 1.5)
    with pytest.raises(ValueError, match="n_features=3"):
        theory.linear_expected_loss(torch.zeros(1, 3), torch.zeros(2), [1, 1, 1], 0.5)


def test_feature_variance() -> None:
    assert float(theory.feature_variance(1.0)) == pytest.approx(1 / 12)
    assert math.isclose(float(theory.feature_variance(0.0)), 0.0)
