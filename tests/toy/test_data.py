import pytest
import torch

from polysemy.toy.data import FeatureSampler, sample_features


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shared", [False, True])
def test_independent_features_density_and_values(shared):
    S = [0.0, 0.5, 0.9, 0.99, 1.0]
    x = sample_features(S, 40, 4000, shared=shared, generator=_gen())
    assert x.shape == (5, 4000, 40) and x.dtype == torch.float32
    present = x != 0
    density = present.float().mean(dim=(1, 2))
    expected = torch.tensor([1.0 - s for s in S])
    # 160k draws per instance: binomial standard error <= 0.0013
    assert torch.allclose(density, expected, atol=0.006)
    assert float(x.min()) >= 0.0 and float(x.max()) < 1.0
    # Present values are uniform on [0, 1): mean 1/2, variance 1/12.
    vals = x[1][present[1]]
    assert abs(float(vals.mean()) - 0.5) < 0.01
    assert abs(float(vals.var()) - 1 / 12) < 0.005
    assert int(present[4].sum()) == 0  # S = 1: never present, and no NaN
    assert not x.isnan().any()


def test_shared_draws_couple_instances_only():
    x = sample_features([0.5, 0.5, 0.8], 6, 200, shared=True, generator=_gen())
    assert torch.equal(x[0], x[1])  # same sparsity -> same data (common random numbers)
    # the sparser instance's support is nested inside the denser one's
    assert bool(((x[2] != 0) <= (x[0] != 0)).all())
    y = sample_features([0.5, 0.5], 6, 200, shared=False, generator=_gen())
    assert not torch.equal(y[0], y[1])


def test_signed_values_for_abs():
    x = sample_features([0.0, 0.7], 10, 5000, signed=True, generator=_gen(1))
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert (x[0] < 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert (x[1] != 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert float(x[0].abs().mean()) == pytest.approx(0.5, abs=0.01)


def test_correlated_pairs_are_both_present_or_both_absent():
    x = sample_features([0.6], 5, 20000, kind="correlated", generator=_gen(2))[0]
    present = x != 0
    assert torch.equal(present[:, 0], present[:, 1])
    assert torch.equal(present[:, 2], present[:, 3])
    assert present.float().mean(0).tolist() == pytest.approx([0.4] * 5, abs=0.015)
    # the odd last feature is independent of the pairs
    both = (present[:, 0] & present[:, 4]).float().mean().item()
    assert both == pytest.approx(0.16, abs=0.015)
    assert float(x.min()) >= 0 and float(x.max()) < 1


@pytest.mark.parametrize("shared", [False, True])
def test_anticorrelated_pairs_are_never_both_present(shared):
    x = sample_features(
        [0.8, 0.3], 4, 20000, kind="anticorrelated", shared=shared, generator=_gen()
    )
    present = x != 0
    assert not bool((present[..., 0] & present[..., 1]).any())
    assert not bool((present[..., 2] & present[..., 3]).any())
    # marginal density p when p <= 1/2 ...
    assert present[0].float().mean(0).tolist() == pytest.approx([0.2] * 4, abs=0.015)
    # ... and min(2p, 1) / 2 otherwise
    assert present[1].float().mean(0).tolist() == pytest.approx([0.5] * 4, abs=0.015)


@pytest.mark.parametrize("kind", ["independent", "correlated"])
@pytest.mark.parametrize("shared", [False, True])
def test_layouts_hold_the_same_distribution(kind, shared):
    shapes = {"ibf": (2, 3000, 6), "ifb": (2, 6, 3000), "fib": (6, 2, 3000)}
    density = {}
    for layout, shape in shapes.items():
        sampler = FeatureSampler([0.3, 0.9], 6, kind=kind, shared=shared, generator=_gen(3))
        t = sampler.sample_neg_(torch.empty(shape), layout=layout)
        assert float(t.max()) <= 0.0 and float(t.min()) > -1.0  # the sampler writes -x
        inst_dim = layout.index("i")
        other = tuple(d for d in range(3) if d != inst_dim)
        density[layout] = (t != 0).float().mean(dim=other)
        again = FeatureSampler([0.3, 0.9], 6, kind=kind, shared=shared, generator=_gen(3))
        assert torch.equal(again.sample_neg_(torch.empty(shape), layout=layout), t)
    for d in density.values():
        assert torch.allclose(d, torch.tensor([0.7, 0.1]), atol=0.01)
    with pytest.raises(ValueError, match="layout must be one of"):
        FeatureSampler([0.5], 6).sample_neg_(torch.empty(1, 2, 6), layout="bif")  # type: ignore[arg-type]


def test_same_seed_same_batch():
    x1 = sample_features([0.9], 8, 32, generator=_gen(7))
    x2 = sample_features([0.9], 8, 32, generator=_gen(7))
    x3 = sample_features([0.9], 8, 32, generator=_gen(8))
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sparsity": [1.5]}, r"sparsity must be values in \[0, 1\]"),
        ({"sparsity": [-0.2]}, "sparsity"),
        ({"sparsity": []}, "sparsity"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"n_features": 0}, "n_features must be an int >= 1"),
        ({"kind": "sideways"}, "feature kind must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"sparsity": [0.5], "n_features": 3, "batch_size": 4}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sample_features(
            args.pop("sparsity"), args.pop("n_features"), args.pop("batch_size"), **args
        )


def test_shared_draws_are_the_same_numbers_in_both_instance_major_layouts():
    a = FeatureSampler([0.2, 0.7], 5, shared=True, generator=_gen(4))
    b = FeatureSampler([0.2, 0.7], 5, shared=True, generator=_gen(4))
    t1 = a.sample_neg_(torch.empty(2, 33, 5), layout="ibf")
    t2 = b.sample_neg_(torch.empty(2, 5, 33), layout="ifb")
    assert torch.equal(t1, t2.transpose(1, 2))
