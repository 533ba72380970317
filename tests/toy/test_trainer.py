import dataclasses
import math

import pytest
import torch

from polysemy.toy import theory
from polysemy.toy.data import FeatureSampler, sample_features
from polysemy.toy.model import MODEL_KINDS, ToyConfig, ToyParams, init_params, toy_loss
from polysemy.toy.trainer import (
    _Engine,
    _loss_and_grads,
    evaluate_loss,
    lr_at,
    snapshot_steps,
    train_toy,
)


def _random_params(model, n_inst, n_feat, n_hid, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = init_params(model, n_inst, n_feat, n_hid, generator=g, dtype=torch.float64)
    b = torch.randn(n_inst, n_feat, generator=g, dtype=torch.float64) * 0.2
    return ToyParams(W=p.W, b_final=b, W_out=p.W_out)


@pytest.mark.parametrize(
    ("n_feat", "n_hid", "planes", "layout"),
    [(6, 3, False, "ifb"), (10, 5, False, "ibf"), (3, 1, True, "fib")],
    ids=["bmm-batch-last", "bmm-batch-middle", "planes"],
)
@pytest.mark.parametrize("model", MODEL_KINDS)
def test_hand_derived_gradients_match_autograd(model, n_feat, n_hid, planes, layout):
    cfg = ToyConfig.sweep(model, n_feat, n_hid, (0.0, 0.5, 0.9), decay=0.8)
    p = _random_params(model, 3, n_feat, n_hid)
    sampler = FeatureSampler(cfg.sparsity, n_feat)
    engine = _Engine(cfg, p, torch.tensor(cfg.importance, dtype=torch.float64), sampler)
    assert engine.layout == layout  # each code path is covered
    x = sample_features(
        cfg.sparsity,
        n_feat,
        32,
        signed=model == "abs",
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    loss, grads = _loss_and_grads(cfg, p, x, planes=planes)
    W = p.W.clone().requires_grad_()
    b = p.b_final.clone().requires_grad_()
    W_out = None if p.W_out is None else p.W_out.clone().requires_grad_()
    importance = torch.tensor(cfg.importance, dtype=torch.float64)
    ref = toy_loss(model, ToyParams(W=W, b_final=b, W_out=W_out), x, importance)
    ref.sum().backward()
    assert torch.allclose(loss, ref.detach(), atol=1e-12)
    assert W.grad is not None and float(W.grad.abs().max()) > 1e-4  # a real signal
    assert torch.allclose(grads.W, W.grad, atol=1e-12, rtol=1e-9)
    assert torch.allclose(grads.b_final, b.grad, atol=1e-12, rtol=1e-9)
    if W_out is not None:
        assert grads.W_out is not None
        assert torch.allclose(grads.W_out, W_out.grad, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize(
    ("optimizer", "weight_decay"), [("adam", 0.0), ("adam", 0.1), ("adamw", 0.1)]
)
def test_fused_adam_matches_torch_adam(optimizer, weight_decay):
    cfg = ToyConfig.sweep(
        "relu-output", 5, 2, (0.3, 0.8), optimizer=optimizer, weight_decay=weight_decay
    )
    p = _random_params("relu-output", 2, 5, 2)
    sampler = FeatureSampler(cfg.sparsity, 5, generator=torch.Generator().manual_seed(0))
    e = _Engine(cfg, p, torch.tensor(cfg.importance, dtype=torch.float64), sampler)
    W = p.W.clone().requires_grad_()
    b = p.b_final.clone().requires_grad_()
    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    opt = cls(
        [{"params": [W], "weight_decay": weight_decay}, {"params": [b], "weight_decay": 0.0}],
        lr=0.01,
        weight_decay=weight_decay,
    )
    g = torch.Generator().manual_seed(5)
    for _ in range(4):
        gW = torch.randn(W.shape, generator=g, dtype=torch.float64)
        gb = torch.randn(b.shape, generator=g, dtype=torch.float64)
        e.gW.copy_(gW)
        e.gP_aug[:, 2, :].copy_(gb)
        e.adam_step(0.01)
        W.grad, b.grad = gW.clone(), gb.clone()
        opt.step()
    assert torch.allclose(e.W, W.detach(), atol=1e-12)
    assert torch.allclose(e.b, b.detach(), atol=1e-12)


def test_lr_schedules():
    cfg = ToyConfig.sweep("linear", 2, 1, (0.0,), steps=100, lr=1.0)
    assert lr_at(cfg, 0) == 1.0 and lr_at(cfg, 99) == 1.0
    lin = dataclasses.replace(cfg, lr_schedule="linear")
    assert lr_at(lin, 0) == 1.0 and lr_at(lin, 50) == pytest.approx(0.5)
    cos = dataclasses.replace(cfg, lr_schedule="cosine")
    assert lr_at(cos, 50) == pytest.approx(0.5) and lr_at(cos, 99) < 0.01
    warm = dataclasses.replace(cfg, warmup_steps=10, lr_schedule="linear")
    assert lr_at(warm, 0) == pytest.approx(0.1) and lr_at(warm, 9) == pytest.approx(1.0)
    assert lr_at(warm, 10) == pytest.approx(1.0) and lr_at(warm, 55) == pytest.approx(0.5)


def test_linear_model_reaches_the_closed_form_loss():
    cfg = ToyConfig.sweep(
        "linear",
        8,
        3,
        (0.0, 0.5, 0.9),
        decay=0.6,
        steps=1500,
        batch_size=256,
        lr=3e-3,
        lr_schedule="cosine",
        eval_samples=16384,
    )
    run = train_toy(cfg)
    expected = torch.tensor(
        [
            theory.linear_optimal_loss(imp, cfg.n_hidden, 1 - s)
            for s, imp in zip(cfg.sparsity, cfg.importance, strict=True)
        ]
    )
    assert torch.allclose(run.loss, expected, rtol=0.05), (run.loss, expected)
    fro = (run.W.double() ** 2).sum(dim=(1, 2))
    assert torch.allclose(fro, torch.full((3,), 3.0, dtype=torch.float64), atol=0.1)
    # It keeps the three most important features.
    norms = run.W.norm(dim=1)
    assert bool((norms[:, :3] > 0.9).all()) and bool((norms[:, 3:] < 0.35).all())


def test_relu_output_dense_ignores_features_with_bias_p_over_2():
    cfg = ToyConfig.sweep(
        "relu-output", 5, 2, (0.0,), decay=0.5, steps=1500, batch_size=256, lr=3e-3
    )
    run = train_toy(cfg)
    norms = run.W[0].norm(dim=0)
    assert bool((norms[:2] > 0.9).all()) and bool((norms[2:] < 0.2).all())
    assert torch.allclose(run.b_final[0, 2:], torch.full((3,), 0.5), atol=0.03)


def test_training_is_deterministic_and_seed_dependent():
    cfg = ToyConfig.sweep("relu-output", 6, 2, (0.5, 0.9), steps=50, batch_size=64)
    a, b = train_toy(cfg), train_toy(cfg)
    assert torch.equal(a.W, b.W) and torch.equal(a.loss, b.loss)
    c = train_toy(dataclasses.replace(cfg, seed=1))
    assert not torch.equal(a.W, c.W)


def test_best_of_keeps_the_lowest_loss_seed():
    cfg = ToyConfig.sweep(
        "relu-output", 3, 1, (0.0, 0.9, 0.99), steps=150, batch_size=128, best_of=4
    )
    run = train_toy(cfg)
    assert run.seed_loss is not None and run.chosen_seed is not None
    assert run.seed_loss.shape == (3, 4)
    assert torch.equal(run.chosen_seed, run.seed_loss.argmin(dim=1))
    assert torch.allclose(run.loss, run.seed_loss.min(dim=1).values)
    # The kept weights really are the winners: re-evaluating them gives the stored loss.
    assert torch.allclose(evaluate_loss(cfg, run.params), run.loss, rtol=1e-5)
    assert run.W.shape == (3, 1, 3) and run.b_final.shape == (3, 3)


@pytest.mark.parametrize("model", ["relu-hidden", "abs"])
def test_hidden_relu_models_learn(model):
    cfg = ToyConfig.sweep(model, 6, 4, (0.0, 0.8), decay=0.9, steps=300, batch_size=128, lr=1e-2)
    init = init_params(model, 2, 6, 4, generator=torch.Generator().manual_seed(0))
    run = train_toy(cfg)
    before = evaluate_loss(cfg, init)
    assert bool((run.loss < 0.7 * before).all()), (run.loss, before)
    assert (run.W_out is not None) == (model == "abs")


def test_correlated_features_train():
    cfg = ToyConfig.sweep(
        "relu-output", 4, 2, (0.9,), feature_kind="anticorrelated", steps=100, batch_size=64
    )
    run = train_toy(cfg)
    assert math.isfinite(float(run.loss[0]))


def test_snapshots_every_n_steps():
    cfg = ToyConfig.sweep(
        "relu-output", 4, 2, (0.5, 0.9), steps=25, batch_size=32, snapshot_every=10, best_of=2
    )
    run = train_toy(cfg)
    assert [s for s, _ in run.snapshots] == [0, 10, 20, 25]
    assert all(w.shape == (2, 2, 4) for _, w in run.snapshots)
    assert torch.equal(run.snapshots[-1][1], run.W)
    assert train_toy(dataclasses.replace(cfg, snapshot_every=None)).snapshots == []


@pytest.mark.parametrize(
    ("n", "steps", "expected"),
    [(2, 50, [0, 50]), (5, 1000, [0, 1, 10, 100, 1000]), (8, 5, [0, 1, 2, 3, 4, 5])],
)
def test_snapshot_steps_are_log_spaced(n, steps, expected):
    cfg = ToyConfig.sweep("relu-hidden", 4, 2, (0.5,), steps=steps, snapshots=n)
    assert snapshot_steps(cfg) == expected  # short runs merge rounded steps


def test_snapshots_keep_w_and_b_final_at_log_spaced_steps():
    cfg = ToyConfig.sweep(
        "relu-hidden", 4, 2, (0.5, 0.9), steps=100, batch_size=32, snapshots=4, best_of=2
    )
    run = train_toy(cfg)
    assert [s for s, _ in run.snapshots] == [0, 1, 10, 100]
    assert len(run.snapshot_b_final) == 4
    assert torch.equal(run.snapshots[-1][1], run.W)
    assert torch.equal(run.snapshot_b_final[-1], run.b_final)
    assert torch.equal(run.snapshot_b_final[0], torch.zeros(2, 4))  # the bias starts at 0
    both = train_toy(dataclasses.replace(cfg, snapshot_every=30))
    assert [s for s, _ in both.snapshots] == [0, 1, 10, 30, 60, 90, 100]


def test_adamw_weight_decay_shrinks_weights():
    cfg = ToyConfig.sweep("relu-output", 6, 2, (0.99,), steps=200, batch_size=64, lr=1e-2)
    plain = train_toy(cfg)
    decayed = train_toy(dataclasses.replace(cfg, optimizer="adamw", weight_decay=1.0))
    assert float(decayed.W.norm()) < 0.8 * float(plain.W.norm())


def test_one_and_two_threads_give_identical_weights():
    cfg = ToyConfig.sweep("relu-output", 200, 20, (0.5, 0.9, 0.99), steps=10, eval_samples=1024)
    one = train_toy(cfg, num_threads=1)
    two = train_toy(cfg, num_threads=2)
    assert torch.equal(one.W, two.W) and torch.equal(one.b_final, two.b_final)


def test_num_threads_is_restored_and_validated():
    before = torch.get_num_threads()
    cfg = ToyConfig.sweep("linear", 3, 1, (0.5,), steps=5, batch_size=8)
    train_toy(cfg, num_threads=1)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads"):
        train_toy(cfg, num_threads=0)


def test_init_is_the_starting_point_and_is_checked():
    # With lr tiny, training from `init` stays at `init`; every seed starts there.
    cfg = ToyConfig.sweep("abs", 4, 3, [0.5, 0.9], steps=2, batch_size=8, lr=1e-9, best_of=2)
    start = init_params("abs", 2, 4, 3, generator=torch.Generator().manual_seed(7))
    run = train_toy(cfg, init=start)
    assert torch.allclose(run.W, start.W, atol=1e-6)
    assert torch.allclose(run.W_out, start.W_out, atol=1e-6)
    assert not torch.allclose(train_toy(cfg).W, start.W, atol=1e-3)
    bad = ToyParams(W=start.W[:1], b_final=start.b_final, W_out=start.W_out)
    with pytest.raises(ValueError, match=r"init.W must have shape \(2, 3, 4\); got \(1, 3, 4\)"):
        train_toy(cfg, init=bad)
    with pytest.raises(ValueError, match=r"init\.W_out must have shape"):
        train_toy(cfg, init=ToyParams(W=start.W, b_final=start.b_final))
