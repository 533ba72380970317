"""One contract suite run over every SAE architecture (a new one is covered on arrival)."""

from __future__ import annotations

import copy

import pytest
import torch

from polysemy.sae import ARCHITECTURES, SAEConfig, build_sae, load_sae, sae_from_weights, save_sae
from polysemy.sae.config import TOPK_FAMILY, TRANSCODERS

# Transcoders read pairs of rows [x | y] and predict y, not x: their own contract suite is
# tests/sae/test_transcoder.py.
ARCHS = sorted(set(ARCHITECTURES) - set(TRANSCODERS))
D_IN, D_SAE, K = 12, 40, 4


def make(arch: str, *, seed: int = 0, sparse: bool = True) -> torch.nn.Module:
    k = K if arch in TOPK_FAMILY else None
    cfg = SAEConfig(arch=arch, d_in=D_IN, d_sae=D_SAE, k=k, sparse_decode=sparse)
    sae = build_sae(cfg, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-trivial biases and thresholds so every term is exercised
        g = torch.Generator().manual_seed(seed + 1)
        sae.b_dec.copy_(0.1 * torch.randn(D_IN, generator=g))
        sae.b_enc.copy_(0.05 * torch.randn(D_SAE, generator=g))
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(0.2 + 0.1 * torch.rand(D_SAE, generator=g))
    return sae


def data(rows: int = 64, seed: int = 3) -> torch.Tensor:
    return torch.randn(rows, D_IN, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_named_output(arch: str) -> None:
    sae = make(arch)
    x = data()
    assert sae.W_enc.shape == (D_IN, D_SAE) and sae.W_dec.shape == (D_SAE, D_IN)
    assert sae.b_enc.shape == (D_SAE,) and sae.b_dec.shape == (D_IN,)
    z = sae.encode(x)
    assert z.shape == (64, D_SAE) and (z >= 0).all()
    assert sae.decode(z).shape == (64, D_IN)
    out = sae(x)
    assert out.x_hat.shape == x.shape
    assert out.fire_counts.shape == (D_SAE,)
    assert all(torch.isfinite(v) for v in out.losses.values())
    if arch == "topk":
        assert out.latent_indices is not None and out.latent_indices.shape == (64, K)
        assert out.latent_values is not None and (out.latent_values >= 0).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_encode_follows_the_documented_formula(arch: str) -> None:
    sae = make(arch).eval()
    x = data()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    if arch == "relu":
        expected = pre.clamp_min(0)
    elif arch == "topk":
        vals, idx = pre.topk(K, dim=1)
        expected = torch.zeros_like(pre).scatter(1, idx, vals.clamp_min(0))
    else:  # jumprelu, batchtopk at inference
        expected = pre * (pre > sae.threshold)
    torch.testing.assert_close(sae.encode(x), expected)
    torch.testing.assert_close(sae.decode(expected), expected @ sae.W_dec + sae.b_dec)
    if arch != "batchtopk":  # batchtopk's eval forward is the threshold path, checked above
        torch.testing.assert_close(sae(x).x_hat, sae.decode(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_training_forward_backward_reaches_every_parameter(arch: str) -> None:
    sae = make(arch).train()
    x = data()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[::3] = True
    out = sae(x, dead_mask=dead)
    loss = sum(out.losses.values())
    loss.backward()
    for name, p in sae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Every weight the reconstruction runs through moves; b_dec is reached through both the
    # encoder input and the decoder output (the sparse TopK path attaches both by hand).
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert getattr(sae, name).grad.abs().sum() > 0, name
    if arch in TOPK_FAMILY:
        assert "aux" in out.losses
        active_pairs = int(out.fire_counts.sum())
        assert active_pairs <= K * x.shape[0]


@pytest.mark.parametrize("arch", sorted(set(TOPK_FAMILY) - set(TRANSCODERS)))
def test_sparse_path_equals_dense_path_forward_and_gradients(arch: str) -> None:
    x = data(48)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[1::4] = True
    results = []
    for sparse in (True, False):
        sae = make(arch, sparse=sparse).train()
        out = sae(x, dead_mask=dead)
        sum(out.losses.values()).backward()
        results.append((out, {n: p.grad.clone() for n, p in sae.named_parameters()}))
    (o1, g1), (o2, g2) = results
    torch.testing.assert_close(o1.x_hat, o2.x_hat, rtol=1e-5, atol=1e-6)
    for key in o1.losses:
        torch.testing.assert_close(o1.losses[key], o2.losses[key], rtol=1e-5, atol=1e-6)
    assert set(o1.losses) == set(o2.losses) == {"fvu", "aux"}
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_fold_input_scale_makes_raw_inputs_match_scaled_training(arch: str) -> None:
    sae = make(arch).eval()
    x = data() * 7.0
    scale = 0.25
    trained = sae(x * scale).x_hat / scale
    z_scaled = sae.encode(x * scale)
    folded = copy.deepcopy(sae)
    folded.fold_input_scale_(scale)
    torch.testing.assert_close(folded(x).x_hat, trained, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(folded.encode(x), z_scaled / scale, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_unit_norm_decoder_and_parallel_gradient_removed(arch: str) -> None:
    sae = make(arch).train()
    sum(sae(data()).losses.values()).backward()
    sae.remove_parallel_decoder_grad_()
    if sae.unit_norm_decoder:
        along = (sae.W_dec.grad * sae.W_dec).sum(1)
        assert along.abs().max() < 1e-5
        with torch.no_grad():
            sae.W_dec.mul_(3.0)
        sae.post_step_()
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
    else:  # relu: norms are free, the L1 penalty is weighted by them
        assert arch == "relu"
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((D_SAE,), 0.1))


@pytest.mark.parametrize("arch", ARCHS)
def test_init_is_deterministic_and_encoder_is_decoder_transpose(arch: str) -> None:
    a, b, c = make(arch, seed=0), make(arch, seed=0), make(arch, seed=1)
    torch.testing.assert_close(a.W_dec, b.W_dec)
    assert not torch.equal(a.W_dec, c.W_dec)
    fresh = build_sae(a.config, generator=torch.Generator().manual_seed(0))
    scale = fresh.config.effective_encoder_init_scale
    assert scale == (3**-0.5 if arch in TOPK_FAMILY else 1.0)
    torch.testing.assert_close(fresh.W_enc, scale * fresh.W_dec.t())
    assert fresh.W_enc.is_contiguous()  # the encoder matmul wants [d_in, d_sae] row-major


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_and_from_weights_round_trip(arch: str, tmp_path) -> None:
    sae = make(arch).eval()
    x = data()
    save_sae(sae, tmp_path / "ckpt", source={"acts": "unit"}, training={"input_scale": 2.0})
    loaded = load_sae(tmp_path / "ckpt")
    for name, t in sae.inference_tensors().items():
        assert torch.equal(loaded.inference_tensors()[name], t), name
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))
    assert loaded.metadata["input_scale"] == 2.0 and loaded.metadata["arch"] == arch
    tensors = sae.inference_tensors()
    rebuilt = sae_from_weights(arch, k=sae.config.k, **tensors)
    torch.testing.assert_close(rebuilt.encode(x), sae.encode(x))


def test_batchtopk_trains_k_on_average_and_learns_a_threshold() -> None:
    sae = make("batchtopk").train()
    x = data(32)
    out = sae(x)
    assert int(out.fire_counts.sum()) <= K * 32
    assert float(out.stats["min_positive"]) > 0
    sae.update_threshold_(out.stats["min_positive"])
    torch.testing.assert_close(
        sae.threshold, torch.full((D_SAE,), float(out.stats["min_positive"]))
    )
    sae.update_threshold_(torch.tensor(0.0))
    expected = 0.99 * float(out.stats["min_positive"])
    torch.testing.assert_close(sae.threshold, torch.full((D_SAE,), expected))


def test_jumprelu_threshold_gets_the_straight_through_gradient() -> None:
    sae = make("jumprelu").train()
    x = data(256)
    with torch.no_grad():  # put many pre-activations inside the kernel window
        sae.threshold.copy_(((x - sae.b_dec) @ sae.W_enc + sae.b_enc).median(0).values)
    out = sae(x, sparsity_scale=1.0)
    assert "l0" in out.losses
    out.losses["l0"].backward()
    # The L0 term can only push thresholds up (fewer active latents): gradient <= 0.
    assert (sae.threshold.grad <= 0).all() and sae.threshold.grad.sum() < 0
    assert sae.W_enc.grad is None or sae.W_enc.grad.abs().sum() == 0


def test_jumprelu_fused_gradients_match_the_straight_through_formulas() -> None:
    from polysemy.sae.jumprelu import _JumpReLUWithL0

    g = torch.Generator().manual_seed(3)
    batch, d_sae, eps = 64, 12, 0.05
    threshold = (torch.rand(d_sae, generator=g, dtype=torch.float64) * 0.2).requires_grad_()
    # Half the pre-activations sit inside the kernel window around their threshold.
    near = (
        threshold.detach()
        + (torch.rand(batch, d_sae, generator=g, dtype=torch.float64) - 0.5) * eps
    )
    far = torch.randn(batch, d_sae, generator=g, dtype=torch.float64)
    pre = torch.where(torch.rand(batch, d_sae, generator=g) < 0.5, near, far).requires_grad_()
    z, l0 = _JumpReLUWithL0.apply(pre, threshold, eps)
    active = pre.detach() > threshold.detach()
    torch.testing.assert_close(z, pre.detach() * active)
    torch.testing.assert_close(l0, active.sum(-1).double().mean())
    grad_z = torch.randn(batch, d_sae, generator=g, dtype=torch.float64)
    grad_l0 = torch.tensor(0.7, dtype=torch.float64)
    torch.autograd.backward((z, l0), (grad_z, grad_l0))
    window = ((pre.detach() - threshold.detach()) / eps).abs() < 0.5
    assert window.any() and (~window).any()
    expected_threshold = -(threshold.detach() / eps) * (window * grad_z).sum(0) - (
        0.7 / batch / eps
    ) * window.sum(0)
    torch.testing.assert_close(pre.grad, grad_z * active)
    torch.testing.assert_close(threshold.grad, expected_threshold)


def test_relu_l1_is_weighted_by_decoder_norms() -> None:
    sae = make("relu").train()
    x = data()
    out = sae(x)
    z = sae.encode(x)
    expected = sae.config.effective_sparsity_coefficient * (z * sae.W_dec.norm(dim=1)).sum(1).mean()
    torch.testing.assert_close(out.losses["l1"], expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "nope", "d_in": 4, "d_sae": 8}, "arch must be one of relu, topk"),
        ({"arch": "topk", "d_in": 4, "d_sae": 8, "k": 9}, r"k must be in \[1, d_sae=8\]; got 9"),
        ({"arch": "topk", "d_in": 4, "d_sae": 8, "k": 0}, r"k must be in \[1, d_sae=8\]; got 0"),
        (
            {"arch": "relu", "d_in": 4, "d_sae": 8, "k": 2},
            "k must be left out for arch 'relu' \\(it applies to topk, batchtopk, transcoder, "
            "skip-transcoder\\); got 2",
        ),
        ({"arch": "relu", "d_in": 0, "d_sae": 8}, "d_in must be an int >= 1; got 0"),
        (
            {"arch": "topk", "d_in": 4, "d_sae": 8, "k": 2, "target_l0": 3},
            "target_l0 must be left out for arch 'topk'",
        ),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SAEConfig(**kwargs)


def test_bad_input_width_is_refused() -> None:
    sae = make("topk")
    with pytest.raises(ValueError, match=r"x must have shape \[batch, d_in=12\]; got \(3, 5\)"):
        sae.encode(torch.zeros(3, 5))


def test_bad_arguments_of_the_base_class_are_refused() -> None:
    from polysemy.sae.base import geometric_median
    from polysemy.sae.topk import TopKSAE

    with pytest.raises(ValueError, match=r"config.arch must be 'topk' for TopKSAE; got 'relu'"):
        TopKSAE(SAEConfig(arch="relu", d_in=D_IN, d_sae=D_SAE))
    with pytest.raises(ValueError, match=r"scale must be > 0; got 0.0"):
        make("topk").fold_input_scale_(0.0)
    with pytest.raises(ValueError, match=r"non-empty 2-D tensor; got shape \(0, 3\)"):
        geometric_median(torch.zeros(0, 3))


def test_auxk_loss_matches_its_definition() -> None:
    sae = make("topk").train()
    x = data()
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[5:30] = True  # 25 dead latents, k_aux = d_in // 2 = 6
    out = sae(x, dead_mask=dead)
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        e = x - out.x_hat
        masked = pre.masked_fill(~dead, float("-inf"))
        vals, idx = masked.topk(6, dim=1)
        z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
        e_hat = z @ sae.W_dec
        expected = (1 / 32) * (e_hat - e).pow(2).sum(1).mean() / e.pow(2).sum(1).mean()
    torch.testing.assert_close(out.losses["aux"], expected)
    assert set(idx.flatten().tolist()) <= set(range(5, 30))


def test_topk_k_defaults_in_the_library() -> None:
    # One default for the CLI and notebooks: 32, or d_sae when the dictionary is smaller.
    assert SAEConfig(arch="topk", d_in=4, d_sae=64).k == 32
    assert SAEConfig(arch="batchtopk", d_in=4, d_sae=8).k == 8
    assert SAEConfig(arch="relu", d_in=4, d_sae=8).k is None
