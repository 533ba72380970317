"""Tests for polysemy.toy.experiments: the measurement helpers exactly, and each
reproduction in its fast variant (fixed seed) against honest fast-size bars; the full-size
acceptance bars run under `make test-slow`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from polysemy.checks import Check
from polysemy.toy import experiments as ex
from polysemy.toy import theory
from polysemy.toy.experiments.common import monosemantic
from polysemy.toy.experiments.e2_pentagon import angle_gaps
from polysemy.toy.experiments.e3_geometry import antipodal_half
from polysemy.toy.experiments.e7_correlation import pair_cosines
from polysemy.toy.model import ToyConfig, toy_forward
from polysemy.toy.trainer import ToyRun


@pytest.fixture(autouse=True)
def _one_thread():
    """Train single-threaded (as `polysemy toy reproduce` does): the toy models are too small
    to gain from intra-op threads, and on a busy 2-core machine two spinning threads per
    process made these tests 10-20x slower. Restored afterwards for other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check(result: ex.ExperimentResult, prefix: str) -> Check:
    matches = [c for c in result.checks if c.name.startswith(prefix)]
    assert len(matches) == 1, [c.name for c in result.checks]
    return matches[0]


# ---- helpers, exactly ----------------------------------------------------------------------


def test_angle_gaps_of_a_pentagon() -> None:
    W = theory.ideal_geometry("pentagon").W
    perm = [3, 0, 4, 1, 2]
    gaps = angle_gaps(W[:, perm], range(5))
    assert gaps == pytest.approx([72.0] * 5, abs=1e-9)


def test_antipodal_half_detects_orthogonal_pairs() -> None:
    W = torch.zeros(2, 5, dtype=torch.float64)
    W[0, 0], W[0, 3], W[1, 1], W[1, 4] = 1.0, -1.0, 1.0, -1.0  # two pairs, feature 2 dropped
    ok, worst_pair, worst_cross = antipodal_half(W)
    assert ok and worst_pair == pytest.approx(0.0) and worst_cross == pytest.approx(0.0)
    tri = torch.cat(
        [theory.ideal_geometry("triangle").W, torch.zeros(2, 1, dtype=torch.float64)], 1
    )
    assert not antipodal_half(tri)[0]


def test_pair_cosines() -> None:
    W = torch.tensor([[1.0, -1.0, 0.0, 0.1], [0.0, 0.0, 1.0, 0.0]])
    cos = pair_cosines(W)
    assert cos[0] == pytest.approx(-1.0)
    assert cos[1] is None  # feature 3 is not represented


def test_monosemantic_neurons() -> None:
    W = torch.tensor([[1.0, 0.1, 0.0], [0.6, 0.6, 0.0], [0.0, 0.0, 0.0]])
    assert monosemantic(W).tolist() == [True, False, False]


def _abs_run(W: torch.Tensor, W_out: torch.Tensor, b: torch.Tensor) -> ToyRun:
    n_inst, m, n = W.shape
    cfg = ToyConfig(
        model="abs",
        n_features=n,
        n_hidden=m,
        sparsity=(0.5,) * n_inst,
        importance=((1.0,) * n,) * n_inst,
    )
    return ToyRun(config=cfg, W=W, b_final=b, loss=torch.zeros(n_inst), W_out=W_out)


def test_computed_features_of_an_exact_abs_model() -> None:
    # Features 0 and 1 each get two neurons (ReLU(x) + ReLU(-x) = |x|); feature 2 gets one
    # neuron, ReLU(x): only its positive half is computed; feature 3 gets none.
    n, m = 4, 5
    W = torch.zeros(1, m, n)
    W_out = torch.zeros(1, n, m)
    for i in range(2):
        W[0, 2 * i, i], W[0, 2 * i + 1, i] = 1.0, -1.0
        W_out[0, i, 2 * i] = W_out[0, i, 2 * i + 1] = 1.0
    W[0, 4, 2] = W_out[0, 2, 4] = 1.0
    ev = ex.computed_features(_abs_run(W, W_out, torch.zeros(1, n)))
    assert ev.shape == (1, n, 2)
    assert ev[0, :2].flatten().tolist() == pytest.approx([1.0] * 4, abs=1e-12)
    # An output of 0 on a half explains about -3 of the variance of |t| there
    # (E t^2 / Var |t| = 4 for uniform t; the grid gives -2.94).
    assert ev[0, 2].tolist() == pytest.approx([-3.0, 1.0], abs=0.1)
    assert ev[0, 3].tolist() == pytest.approx([-3.0, -3.0], abs=0.1)
    # The best constant (0.5 = mean |t|) explains nothing.
    b = torch.zeros(1, n)
    b[0, 3] = 0.5
    assert ex.computed_features(_abs_run(W, W_out, b))[0, 3].tolist() == pytest.approx(
        [0.0, 0.0], abs=0.05
    )


def test_computed_features_matches_the_reference_forward() -> None:
    # The vectorized single-feature evaluation against toy_forward on x = t e_i.
    g = torch.Generator().manual_seed(0)
    n, m, T = 6, 4, 11
    W, W_out = torch.randn(2, m, n, generator=g), torch.randn(2, n, m, generator=g)
    b = torch.randn(2, n, generator=g) * 0.1
    ev = ex.computed_features(_abs_run(W, W_out, b), n_points=T)
    t = torch.linspace(-1, 1, T, dtype=torch.float64)
    x = torch.zeros(2, n * T, n, dtype=torch.float64)
    for i in range(n):
        x[:, i * T : (i + 1) * T, i] = t
    y = toy_forward("abs", W.double(), b.double(), x, W_out.double())
    y_own = torch.stack([y[:, i * T : (i + 1) * T, i] for i in range(n)], dim=1)  # (2, n, T)
    for k, half in enumerate((t < 0, t > 0)):
        tg = t[half].abs()
        want = 1 - ((y_own[..., half] - tg) ** 2).mean(-1) / tg.var(unbiased=False)
        assert torch.allclose(ev[..., k], want, atol=1e-12)
    with pytest.raises(ValueError, match="n_points"):
        ex.computed_features(_abs_run(W, W_out, b), n_points=2)


def test_experiment_registry() -> None:
    assert list(ex.EXPERIMENTS) == [
        "sparsity-sweep", "pentagon", "geometry", "phase-2-1", "phase-3-2",
        "privileged-basis", "computation", "correlation",
    ]  # fmt: skip
    for fn in ex.EXPERIMENTS.values():
        assert fn.__doc__


# ---- fast reproductions ----------------------------------------------------------------------


def test_sparsity_sweep_fast() -> None:
    r = ex.sparsity_sweep(fast=True)
    assert r.linear.W.shape == (7, 5, 20)
    # Every linear check passes, S = 0.999 included (the fast linear run uses batch 2048).
    for name in (
        "linear: ||W||_F^2",
        "linear: exact expected loss",
        "linear: represents",
        "linear: no superposition",
    ):
        assert _check(r, name).passed, name
    assert all(s == (0, 1, 2, 3, 4) for s in r.linear_represented)
    assert _check(r, "ReLU, S=0: represents exactly").passed
    assert _check(r, "ReLU, S=0: ignored features' biases").passed
    for s in (0.7, 0.9, 0.99):
        assert _check(r, f"ReLU, S={s}:").passed
    counts = r.relu_represented_count
    assert counts[0] == 5 and counts[0] < counts[1] < counts[2] <= counts[4]  # more as S rises
    # superposed features get negative biases once features are sparse
    assert min(r.relu_superposed_negative_bias_share[4:]) >= 0.8  # S >= 0.99
    summary = r.summary()
    assert summary["checks"][0]["name"].startswith("linear")
    # The summary's numbers are the typed fields, JSON-ready; the runs are not numbers.
    assert summary["numbers"]["relu_represented_count"] == list(counts)
    assert summary["numbers"]["linear_represented"][0] == [0, 1, 2, 3, 4]
    assert "linear" not in summary["numbers"] and "relu" not in summary["numbers"]
    json.dumps(summary, allow_nan=False)
    assert [tag for tag, _ in r.named_runs()] == [
        "sparsity-sweep-linear",
        "sparsity-sweep-relu-output",
    ]


def test_pentagon_fast() -> None:
    r = ex.pentagon(fast=True)
    assert r.passed, r.checks
    assert r.represented[0] == (0, 1)


def test_privileged_basis_fast() -> None:
    r = ex.privileged_basis(fast=True)
    assert r.passed, r.checks
    assert r.monosemantic_neurons[0] == 5


def test_correlation_fast() -> None:
    r = ex.correlation(fast=True)
    assert r.passed, r.checks
    assert set(r.runs) == {"independent", "correlated", "anticorrelated"}


def test_phase_2_1_fast() -> None:
    r = ex.phase(2, 1, fast=True)
    assert r.empirical.shape == (6, 6)
    assert r.agreement_away_from_boundary >= 0.9
    numbers = r.numbers()
    assert numbers["theory"] == r.diagram.labels.tolist() and len(numbers["empirical"]) == 6
    assert r.passed


def test_phase_3_2_fast() -> None:
    r = ex.phase(3, 2, fast=True)
    # 2000 steps at batch 512 leave some cells unsettled; the full grid must reach 90%
    assert r.agreement_away_from_boundary >= 0.75
    assert r.empirical.shape == (6, 6)


def test_geometry_fast() -> None:
    r = ex.feature_geometry(fast=True)
    assert r.passed, r.checks
    dstar = r.dims_per_feature_star
    assert dstar[0] == pytest.approx(1.0, abs=0.05) and dstar[-1] < dstar[0]


def test_superposed_start_computes_its_features_exactly() -> None:
    # Design 8 + 36: 8 features on monosemantic pairs and 36 on blocks of 4 neurons; with one
    # feature active, each of the 44 outputs is exactly |x_i| and the rest sit at p/2.
    start = ex.superposed_start(100, 40, (0.01, 0.001))
    ev = ex.computed_features(start)
    assert ev.shape == (2, 100, 2)
    assert ev[:, :44].min() == pytest.approx(1.0, abs=1e-12)
    assert (ev[:, 44:] < ex.COMPUTED_THRESHOLD).all()
    assert start.b_final[1, 44:].tolist() == pytest.approx([0.0005] * 56)
    assert monosemantic(start.W[0]).sum() == 16  # the 8 pairs; block neurons are shared
    with pytest.raises(ValueError, match="n_monosemantic must be <= n_hidden / 2"):
        ex.superposed_start(10, 4, (0.1,), n_monosemantic=3)


def test_computation_fast() -> None:
    r = ex.computation(fast=True)
    assert r.monosemantic_neurons[0] >= 0.75 * r.live_neurons[0]
    assert not math.isnan(r.loss[0])
    # Dense, |x_i| needs two monosemantic neurons (ReLU(x_i) + ReLU(-x_i)): at most m/2 = 20
    # features, and the model gets at least a few of them.
    assert 5 <= r.computed_features[0] <= 20
    sparse = [k for k, p in enumerate(r.density) if p <= 0.01]
    assert r.superposed_density == tuple(r.density[k] for k in sparse)
    # At the sparse end the superposed start reaches the lower loss on shared samples, keeps
    # computing more features than dense, and keeps most neurons polysemantic.
    assert [r.start[k] for k in sparse] == ["superposed"] * len(sparse)
    for j, k in enumerate(sparse):
        assert r.compared_loss_superposed[j] < r.compared_loss_scratch[j]
        assert r.computed_features[k] > 20
        assert 2 * r.monosemantic_neurons[k] < r.live_neurons[k]
    assert r.start_computed_features == 44
    assert r.kept_W().shape == (len(r.density), 40, 100)
    assert [tag for tag, _ in r.named_runs()] == ["computation", "computation-superposed"]


# ---- full size (make test-slow) -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ex.EXPERIMENTS))
def test_full_reproduction(name: str) -> None:
    r = ex.EXPERIMENTS[name](fast=False)
    failed = [f"{c.name}: {c.detail}" for c in r.checks if not c.passed]
    assert not failed, failed
