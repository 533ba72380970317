import dataclasses

import pytest
import torch

from polysemy.toy.model import (
    MODEL_KINDS,
    ToyConfig,
    ToyParams,
    importance_decay,
    init_params,
    toy_forward,
    toy_loss,
    toy_target,
)


def _cfg(**overrides):
    base = dict(
        model="relu-output",
        n_features=3,
        n_hidden=2,
        sparsity=(0.0, 0.5),
        importance=((1.0, 0.5, 0.25), (1.0, 1.0, 1.0)),
    )
    base.update(overrides)
    return ToyConfig(**base)


def test_config_defaults_follow_the_paper():
    cfg = _cfg()
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.optimizer) == (10_000, 1024, 1e-3, "adam")
    assert cfg.n_instances == 2 and cfg.density == (1.0, 0.5)
    assert cfg.feature_kind == "independent" and cfg.best_of == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"model": "tanh"}, "model must be one of"),
        ({"n_hidden": 0}, "n_hidden must be an int >= 1; got 0"),
        ({"n_features": 2.5}, "n_features must be an int"),
        ({"sparsity": (0.0, 1.5)}, r"sparsity must be in \[0, 1\]; got 1.5"),
        ({"sparsity": (-0.1, 0.5)}, r"sparsity must be in \[0, 1\]; got -0.1"),
        ({"sparsity": ("a", 0.5)}, "sparsity must be in"),
        ({"importance": ((1.0, 1.0, 1.0),)}, "importance must be a tuple of 2 rows"),
        ({"importance": ((1.0, 1.0), (1.0, 1.0))}, "n_features=3 values; got 2"),
        ({"importance": ((1.0, -1.0, 1.0), (1.0, 1.0, 1.0))}, "importance values"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"batch_size": -4}, "batch_size must be"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"lr": float("nan")}, "lr must be"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"best_of": 0}, "best_of"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"snapshot_every": 0}, "snapshot_every"),
        ({"snapshots": 1}, "snapshots must be None or an int >= 2; got 1"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"feature_kind": "weird"}, "feature_kind must be one of"),
        ({"init_std": 0.0}, "init_std must be None or a finite number > 0; got 0.0"),
        ({"init_std": float("inf")}, "init_std"),
    ],
)
def test_config_validation_names_the_parameter(overrides, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _cfg(**overrides)


def test_sparsity_must_be_a_non_empty_tuple():
    with pytest.raises(TypeError, match="sparsity must be a non-empty tuple"):
        _cfg(sparsity=[0.0, 0.5])
    with pytest.raises(TypeError, match="sparsity"):
        _cfg(sparsity=(), importance=())


def test_importance_decay_and_sweep():
    assert importance_decay(0.5, 4) == (1.0, 0.5, 0.25, 0.125)
    assert importance_decay(1, 2) == (1.0, 1.0)
    with pytest.raises(ValueError, match="decay r"):
        importance_decay(0.0, 3)
    with pytest.raises(ValueError, match="n_features"):
        importance_decay(0.5, 0)
    cfg = ToyConfig.sweep("linear", 4, 2, [0.0, 0.9], decay=0.5, steps=7)
    assert cfg.sparsity == (0.0, 0.9) and cfg.steps == 7
    assert cfg.importance == ((1.0, 0.5, 0.25, 0.125),) * 2


def test_init_params_shapes_and_scale_independent_of_instances():
    g = torch.Generator().manual_seed(0)
    p = init_params("abs", 3, 10, 4, generator=g)
    assert p.W.shape == (3, 4, 10) and p.W_out is not None and p.W_out.shape == (3, 10, 4)
    assert torch.equal(p.b_final, torch.zeros(3, 10))
    big = init_params("relu-output", 400, 10, 4, generator=torch.Generator().manual_seed(0))
    assert big.W_out is None
    assert abs(float(big.W.std()) - (2 / 14) ** 0.5) < 0.02
    small = init_params("abs", 400, 10, 4, generator=torch.Generator().manual_seed(0), std=0.01)
    assert small.W_out is not None
    assert abs(float(small.W.std()) - 0.01) < 0.001
    assert abs(float(small.W_out.std()) - 0.01) < 0.001


def test_forward_matches_the_formulas():
    W = torch.tensor([[[1.0, 2.0, 0.0]], [[0.5, -1.0, 1.0]]])  # (2, 1, 3)
    b = torch.tensor([[0.0, -10.0, 1.0], [0.1, 0.2, 0.3]])
    x = torch.tensor([[[1.0, 1.0, 1.0]], [[1.0, 0.5, -2.0]]])  # (2, 1, 3)
    h = torch.einsum("ihf,ibf->ibh", W, x)
    lin = torch.einsum("ibh,ihf->ibf", h, W) + b[:, None]
    assert torch.allclose(toy_forward("linear", W, b, x), lin)
    assert torch.allclose(toy_forward("relu-output", W, b, x), lin.relu())
    hid = torch.einsum("ibh,ihf->ibf", h.relu(), W) + b[:, None]
    assert torch.allclose(toy_forward("relu-hidden", W, b, x), hid.relu())
    W_out = torch.randn(2, 3, 1)
    y = (torch.einsum("ibh,ifh->ibf", h.relu(), W_out) + b[:, None]).relu()
    assert torch.allclose(toy_forward("abs", W, b, x, W_out), y)
    with pytest.raises(ValueError, match="W_out"):
        toy_forward("abs", W, b, x)
    assert torch.equal(toy_target("abs", x), x.abs())
    assert toy_target("linear", x) is x


@pytest.mark.parametrize("model", MODEL_KINDS)
def test_loss_is_importance_weighted_mean_per_instance(model):
    torch.manual_seed(0)
    p = init_params(model, 2, 3, 2)
    x = torch.rand(2, 5, 3)
    imp = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    loss = toy_loss(model, p, x, imp)
    y = toy_forward(model, p.W, p.b_final, x, p.W_out)
    err = (y - toy_target(model, x)) ** 2
    assert loss.shape == (2,)
    assert torch.allclose(loss[0], err[0, :, 0].sum() / 15)
    assert torch.allclose(loss[1], err[1].mean())
    zero = ToyParams(W=torch.zeros(2, 2, 3), b_final=torch.zeros(2, 3), W_out=p.W_out)
    if model != "abs":
        # The zero model outputs 0, so the loss is the weighted mean of x^2.
        assert torch.allclose(toy_loss(model, zero, x, imp)[1], (x[1] ** 2).mean())
