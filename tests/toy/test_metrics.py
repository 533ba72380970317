import math

import pytest
import torch

from polysemy.toy import metrics

TOL = 1e-9


def _cols(*vectors):
    return torch.tensor(vectors, dtype=torch.float64).T  # (d, k): columns are features


def _polygon(k):
    a = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    return torch.stack([a.cos(), a.sin()])  # (2, k)


def _tetrahedron():
    v = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    return (v / math.sqrt(3)).T


def _square_antiprism():
    h = 1 / math.sqrt(3)
    r = math.sqrt(1 - h * h)
    cols = []
    for j in range(4):
        a = j * math.pi / 2
        cols.append([r * math.cos(a), r * math.sin(a), h])
        b = a + math.pi / 4
        cols.append([r * math.cos(b), r * math.sin(b), -h])
    return torch.tensor(cols, dtype=torch.float64).T


def _harmonic_frame(k, d):
    """A real unit-norm tight frame of k vectors in d (even) dimensions."""
    j = torch.arange(k, dtype=torch.float64)
    rows = []
    for ell in range(1, d // 2 + 1):
        rows += [torch.cos(2 * math.pi * j * ell / k), torch.sin(2 * math.pi * j * ell / k)]
    return torch.stack(rows) * math.sqrt(2 / d)


GEOMETRIES = [
    ("antipodal pair", _cols([1.0], [-1.0]), 1 / 2),
    ("triangle", _polygon(3), 2 / 3),
    ("tetrahedron", _tetrahedron(), 3 / 4),
    ("pentagon", _polygon(5), 2 / 5),
    ("square antiprism", _square_antiprism(), 3 / 8),
    ("tight frame 7 in 4", _harmonic_frame(7, 4), 4 / 7),
    ("tight frame 9 in 6", _harmonic_frame(9, 6), 6 / 9),
]


@pytest.mark.parametrize(("name", "W", "expected"), GEOMETRIES, ids=[g[0] for g in GEOMETRIES])
def test_feature_dimensionality_of_ideal_geometries(name, W, expected):
    assert torch.allclose(W.norm(dim=0), torch.ones(W.shape[1], dtype=torch.float64))
    D = metrics.feature_dimensionality(W)
    assert D.dtype == torch.float64
    assert torch.allclose(D, torch.full_like(D, expected), atol=TOL, rtol=0), name


def test_polytopes_in_orthogonal_subspaces_keep_their_values_and_zero_is_zero():
    tri, tet, pent = _polygon(3), _tetrahedron(), _polygon(5)
    W = torch.zeros(2 + 3 + 2 + 1, 3 + 4 + 5 + 1, dtype=torch.float64)
    W[0:2, 0:3] = tri
    W[2:5, 3:7] = tet
    W[5:7, 7:12] = pent  # column 12 stays zero
    D = metrics.feature_dimensionality(W)
    expected = torch.tensor([2 / 3] * 3 + [3 / 4] * 4 + [2 / 5] * 5 + [0.0], dtype=torch.float64)
    assert not D.isnan().any()
    assert torch.allclose(D, expected, atol=TOL, rtol=0)
    assert metrics.superposition(W)[12] == 0
    assert metrics.feature_norms(W)[12] == 0


def test_zero_matrix_gives_zero_dimensionality_and_infinite_dims_per_feature():
    W = torch.zeros(3, 4, dtype=torch.float64)
    assert torch.equal(metrics.feature_dimensionality(W), torch.zeros(4, dtype=torch.float64))
    assert torch.equal(metrics.superposition(W), torch.zeros(4, dtype=torch.float64))
    assert math.isinf(float(metrics.dimensions_per_feature(W)))
    assert int(metrics.represented_count(W)) == 0


def test_superposition_and_dims_per_feature():
    # Orthogonal dedicated features: no interference, one dimension per feature.
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(metrics.superposition(eye), torch.zeros(3, dtype=torch.float64))
    assert float(metrics.dimensions_per_feature(eye)) == pytest.approx(1.0, abs=TOL)
    # Antipodal pair: each sees the other fully; pentagon: D* = 2/5.
    pair = _cols([1.0], [-1.0])
    assert torch.allclose(metrics.superposition(pair), torch.ones(2, dtype=torch.float64))
    assert float(metrics.dimensions_per_feature(_polygon(5))) == pytest.approx(0.4, abs=TOL)
    # Scaled features: superposition is measured with the unit vector of i only.
    W = _cols([2.0, 0.0], [1.0, 1.0])  # W_0 = (2, 0), W_1 = (1, 1)
    assert torch.allclose(
        metrics.superposition(W), torch.tensor([1.0, 2.0], dtype=torch.float64), atol=TOL
    )


def test_batched_leading_dims_and_dtype():
    W = torch.stack([_polygon(5), 2 * _polygon(5)]).float()  # (2, 2, 5)
    norms = metrics.feature_norms(W)
    assert norms.shape == (2, 5) and norms.dtype == torch.float32
    assert torch.allclose(norms[1], torch.full((5,), 2.0))
    assert metrics.feature_dimensionality(W).shape == (2, 5)
    assert metrics.dimensions_per_feature(W).shape == (2,)
    assert metrics.represented_count(W, threshold=1.5).tolist() == [0, 5]


def test_represented_count_threshold():
    W = _cols([0.4, 0.0], [0.0, 0.6], [0.9, 0.0])
    assert int(metrics.represented_count(W)) == 2
    assert int(metrics.represented_count(W, threshold=0.1)) == 3
    # A norm exactly at the threshold counts, as the experiments' checks count it.
    assert int(metrics.represented_count(_cols([0.5, 0.0]))) == 1
    with pytest.raises(ValueError, match="threshold"):
        metrics.represented_count(W, threshold=-1)


def test_neuron_polysemanticity():
    # rows = neurons: monosemantic, polysemantic (2 features), dead, one large + tiny noise
    W = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.8, -0.7, 0.1, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.5, 0.001, 0.0, 0.06],
        ],
        dtype=torch.float64,
    )
    assert metrics.neuron_polysemanticity(W).tolist() == [1, 2, 0, 1]
    assert metrics.neuron_polysemanticity(W, threshold=0.1).tolist() == [1, 3, 0, 2]
    with pytest.raises(ValueError, match="threshold"):
        metrics.neuron_polysemanticity(W, threshold=0.0)


def test_loading_drift():
    W0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    W1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # neuron 1 turns 90 deg
    W2 = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # neuron 0 reverses
    drift = metrics.loading_drift([(0, W0), (10, W1), (20, W2)])
    assert drift.steps == [10, 20]
    assert torch.allclose(drift.neuron, torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=torch.float64))
    # feature 1's column goes from (0, 1) to (0, 0): it vanished -> 1; then stays zero -> 0
    assert torch.allclose(drift.feature[:, 1], torch.tensor([1.0, 0.0], dtype=torch.float64))
    # Tensor input gives the same numbers.
    again = metrics.loading_drift(torch.stack([W0, W1, W2]))
    assert torch.allclose(again.neuron, drift.neuron)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.loading_drift([(0, W0)])


def test_metrics_reject_vectors():
    with pytest.raises(ValueError, match="n_hidden, n_features"):
        metrics.feature_norms(torch.ones(3))
