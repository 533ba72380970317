"""Interop with SAELens, sparsify and dictionary_learning checkpoints.

Equivalence is checked against the real peer libraries where they are installed (the `test`
extra installs sae-lens and eai-sparsify): a folder we write loads in the peer and computes
the same latents and reconstructions, and a folder the peer writes imports to the same
function. dictionary_learning cannot be installed beside our torch (see PEERS.md), so its
`ae.pt` files are written here in its documented state-dict layout.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor

from polysemy.sae.interop import (
    SAEWeights,
    check_weights,
    read_dictionary_learning,
    read_foreign,
    read_saelens,
    read_sparsify,
    write_foreign,
    write_saelens,
    write_sparsify,
)

D_IN, D_SAE, K = 8, 24, 3


def reference_encode(w: SAEWeights, x: Tensor) -> Tensor:
    """DESIGN.md section 4: act((x - b_dec) @ W_enc + b_enc), written out plainly."""
    pre = (x.double() - w.b_dec.double()) @ w.W_enc.double() + w.b_enc.double()
    if w.arch == "relu":
        return torch.relu(pre)
    if w.arch == "topk":
        assert w.k is not None
        top = pre.topk(w.k, dim=1)
        return torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
    assert w.threshold is not None
    return torch.relu(pre) * (pre > w.threshold.double())


def reference_decode(w: SAEWeights, z: Tensor) -> Tensor:
    return z.double() @ w.W_dec.double() + w.b_dec.double()


def make_weights(arch: str, seed: int = 0) -> SAEWeights:
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(D_SAE, D_IN, generator=g)
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * (0.5 + torch.rand(D_SAE, 1, generator=g))
    threshold = torch.rand(D_SAE, generator=g) * 0.3 if arch in ("jumprelu", "batchtopk") else None
    return SAEWeights(
        arch=arch,
        W_enc=torch.randn(D_IN, D_SAE, generator=g) * 0.5,
        b_enc=torch.randn(D_SAE, generator=g) * 0.1,
        W_dec=W_dec,
        b_dec=torch.randn(D_IN, generator=g),
        threshold=threshold,
        k=K if arch in ("topk", "batchtopk") else None,
        source={"model": "minilm", "site": "encoder.layer.3.output"},
    )


def inputs(seed: int = 1) -> Tensor:
    return torch.randn(64, D_IN, generator=torch.Generator().manual_seed(seed)) * 2


def assert_same_function(a: SAEWeights, b: SAEWeights) -> None:
    x = inputs()
    za, zb = reference_encode(a, x), reference_encode(b, x)
    torch.testing.assert_close(za, zb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        reference_decode(a, za), reference_decode(b, zb), rtol=1e-5, atol=1e-5
    )


# ---- our own round trips -------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu", "batchtopk"])
def test_saelens_round_trip(tmp_path: Path, arch: str) -> None:
    w = make_weights(arch)
    write_saelens(w, tmp_path / "sl")
    assert sorted(p.name for p in (tmp_path / "sl").iterdir()) == [
        "cfg.json",
        "sae_weights.safetensors",
    ]
    back = read_saelens(tmp_path / "sl")
    # batchtopk is written as SAELens writes it: JumpReLU with the inference threshold
    assert back.arch == ("jumprelu" if arch == "batchtopk" else arch)
    assert back.k == (K if arch == "topk" else None)
    assert torch.equal(back.W_enc, w.W_enc) and torch.equal(back.W_dec, w.W_dec)
    assert back.source["model"] == "minilm" and back.source["site"] == "encoder.layer.3.output"
    assert_same_function(w, back)


def test_sparsify_round_trip(tmp_path: Path) -> None:
    w = make_weights("topk")
    write_sparsify(w, tmp_path / "layers.3")
    cfg = json.loads((tmp_path / "layers.3" / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["num_latents"], cfg["k"]) == (D_IN, D_SAE, K)
    back = read_sparsify(tmp_path / "layers.3")
    assert torch.equal(back.W_enc, w.W_enc) and torch.equal(back.b_dec, w.b_dec)
    assert back.k == K and back.arch == "topk"


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "batchtopk"])
def test_sparsify_refuses_non_topk(tmp_path: Path, arch: str) -> None:
    with pytest.raises(ValueError, match="sparsify holds only TopK"):
        write_sparsify(make_weights(arch), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_unknown_formats() -> None:
    with pytest.raises(
        ValueError, match="format must be one of saelens, sparsify, dictionary_learning"
    ):
        read_foreign("hf", "x")
    with pytest.raises(
        ValueError, match="format must be one of saelens, sparsify; got 'dictionary_learning'"
    ):
        write_foreign("dictionary_learning", make_weights("relu"), "x")


def test_check_weights_validation() -> None:
    w = make_weights("topk")
    with pytest.raises(ValueError, match=r"W_enc has shape \(24, 8\), expected \(8, 24\)"):
        check_weights(w._replace(W_enc=w.W_enc.T))
    with pytest.raises(ValueError, match=r"k must be in \[1, d_sae=24\]; got 25"):
        check_weights(w._replace(k=25))
    with pytest.raises(ValueError, match="b_dec contains NaN"):
        check_weights(w._replace(b_dec=torch.full((D_IN,), float("nan"))))
    with pytest.raises(ValueError, match="arch must be one of relu, topk, batchtopk, jumprelu"):
        check_weights(w._replace(arch="gated"))
    with pytest.raises(ValueError, match="needs a threshold"):
        check_weights(make_weights("relu")._replace(arch="jumprelu"))


# ---- bad folders ----------------------------------------------------------------------------


def test_saelens_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_saelens(tmp_path / "none")
    w = make_weights("relu")
    write_saelens(w, tmp_path / "ok")
    cfg_path = tmp_path / "ok" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    for key, value, match in [
        ("normalize_activations", "layer_norm", "normalize_activations='layer_norm'"),
        ("architecture", "gated", "architecture 'gated' cannot be imported"),
        ("d_sae", 7, "cfg.json says d_sae=7 but W_dec has d_sae=24"),
    ]:
        cfg_path.write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(ValueError, match=match):
            read_saelens(tmp_path / "ok")
    cfg_path.write_text(json.dumps(cfg))
    weights = tmp_path / "ok" / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_saelens(tmp_path / "ok")
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"expected sae_weights\.safetensors"):
        read_saelens(tmp_path / "ok")


def test_sparsify_bad_folders(tmp_path: Path) -> None:
    write_sparsify(make_weights("topk"), tmp_path / "s")
    cfg_path = tmp_path / "s" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    for key, value, match in [
        ("skip_connection", True, "skip_connection=true cannot be imported as an SAE"),
        ("activation", "groupmax", "activation 'groupmax' is not supported"),
        ("d_in", 9, "cfg.json says d_in=9"),
        ("k", 99, r"k must be in \[1, d_sae=24\]; got 99"),
    ]:
        cfg_path.write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(ValueError, match=match):
            read_sparsify(tmp_path / "s")


# ---- dictionary_learning (documented state-dict layout, written here) ------------------------


def test_dictionary_learning_layouts(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    enc_w = torch.randn(D_SAE, D_IN, generator=g)  # nn.Linear(d_in, d_sae).weight
    enc_b = torch.randn(D_SAE, generator=g) * 0.1
    dec_w = torch.randn(D_IN, D_SAE, generator=g)  # nn.Linear(d_sae, d_in).weight
    bias = torch.randn(D_IN, generator=g)
    x = inputs()

    # AutoEncoder: relu(encoder(x - bias)); decoder(f) + bias
    torch.save(
        {"bias": bias, "encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w},
        tmp_path / "ae.pt",
    )
    w = read_dictionary_learning(tmp_path)
    f = torch.relu((x - bias) @ enc_w.T + enc_b)
    torch.testing.assert_close(reference_encode(w, x).float(), f, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        reference_decode(w, f).float(), f @ dec_w.T + bias, rtol=1e-5, atol=1e-5
    )

    # AutoEncoderNew: relu(encoder(x)); decoder(f) with its own bias
    torch.save(
        {
            "encoder.weight": enc_w,
            "encoder.bias": enc_b,
            "decoder.weight": dec_w,
            "decoder.bias": bias,
        },
        tmp_path / "ae.pt",
    )
    w = read_dictionary_learning(tmp_path / "ae.pt")
    f = torch.relu(x @ enc_w.T + enc_b)
    torch.testing.assert_close(reference_encode(w, x).float(), f, rtol=1e-4, atol=1e-4)

    # AutoEncoderTopK: topk(relu(encoder(x - b_dec))); decoder(f) + b_dec
    state = {
        "k": torch.tensor(K, dtype=torch.int),
        "threshold": torch.tensor(-1.0),
        "encoder.weight": enc_w,
        "encoder.bias": enc_b,
        "decoder.weight": dec_w,
        "b_dec": bias,
    }
    torch.save(state, tmp_path / "ae.pt")
    w = read_dictionary_learning(tmp_path)
    post = torch.relu((x - bias) @ enc_w.T + enc_b)
    top = post.topk(K, dim=1)
    f = torch.zeros_like(post).scatter(1, top.indices, top.values)
    assert w.arch == "topk" and w.k == K
    torch.testing.assert_close(reference_encode(w, x).float(), f, rtol=1e-5, atol=1e-5)

    # BatchTopKSAE at inference: relu(encoder(x - b_dec)) kept above the scalar threshold
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {"dict_class": "BatchTopKSAE"}}))
    torch.save({**state, "threshold": torch.tensor(0.4)}, tmp_path / "ae.pt")
    w = read_dictionary_learning(tmp_path)
    assert w.arch == "batchtopk" and w.source["dict_class"] == "BatchTopKSAE"
    torch.testing.assert_close(
        reference_encode(w, x).float(), post * (post > 0.4), rtol=1e-5, atol=1e-5
    )
    (tmp_path / "config.json").unlink()

    # JumpReluAutoEncoder: x @ W_enc + b_enc (no b_dec subtracted), latents scaled by ||W_dec_j||
    W_enc, W_dec, thr = enc_w.T.contiguous(), dec_w.T.contiguous(), torch.rand(D_SAE, generator=g)
    torch.save(
        {"W_enc": W_enc, "b_enc": enc_b, "W_dec": W_dec, "b_dec": bias, "threshold": thr},
        tmp_path / "ae.pt",
    )
    w = read_dictionary_learning(tmp_path)
    pre = x @ W_enc + enc_b
    f = torch.relu(pre * (pre > thr)) * W_dec.norm(dim=1)
    x_hat = (f / W_dec.norm(dim=1)) @ W_dec + bias
    torch.testing.assert_close(
        reference_decode(w, reference_encode(w, x)).float(), x_hat, rtol=1e-4, atol=1e-4
    )


class NotATensor:
    """Anything a weights-only unpickler must refuse."""


def test_dictionary_learning_refuses_pickles_and_gated(tmp_path: Path) -> None:
    torch.save({"encoder.weight": NotATensor()}, tmp_path / "ae.pt")
    with pytest.raises(ValueError, match="weights_only=True refused it"):
        read_dictionary_learning(tmp_path)
    torch.save({"r_mag": torch.zeros(3), "gate_bias": torch.zeros(3)}, tmp_path / "ae.pt")
    with pytest.raises(ValueError, match="gated autoencoders cannot be imported"):
        read_dictionary_learning(tmp_path)
    torch.save({"something": torch.zeros(3)}, tmp_path / "ae.pt")
    with pytest.raises(ValueError, match="unrecognised dictionary_learning state dict"):
        read_dictionary_learning(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"expected a dictionary_learning ae\.pt"):
        read_dictionary_learning(tmp_path / "missing.pt")


# ---- against the real peers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sae_lens():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("sae_lens")


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu", "batchtopk"])
def test_export_loads_in_real_saelens(tmp_path: Path, sae_lens, arch: str) -> None:  # type: ignore[no-untyped-def]
    w = make_weights(arch)
    write_saelens(w, tmp_path / "sl")
    peer = sae_lens.SAE.load_from_disk(str(tmp_path / "sl"), device="cpu")
    x = inputs()
    with torch.no_grad():
        z_peer = peer.encode(x)
        x_hat_peer = peer.decode(z_peer)
    z = reference_encode(w, x).float()
    torch.testing.assert_close(z_peer, z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat_peer, reference_decode(w, z).float(), rtol=1e-5, atol=1e-5)


def _saelens_peer(sae_lens, kind: str):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(7)
    if kind == "standard-no-bdec":
        sae = sae_lens.StandardSAE(
            sae_lens.StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=False)
        )
    elif kind == "topk-rescaled":
        sae = sae_lens.TopKSAE(
            sae_lens.TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=True)
        )
    else:
        sae = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE))
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if name == "threshold" else 1.0))
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=g) + 0.5)  # rows of unequal norm
    return sae


@pytest.mark.parametrize("kind", ["standard-no-bdec", "topk-rescaled", "jumprelu"])
def test_import_from_real_saelens(tmp_path: Path, sae_lens, kind: str) -> None:  # type: ignore[no-untyped-def]
    peer = _saelens_peer(sae_lens, kind)
    peer.save_model(str(tmp_path / "sl"))
    w = read_saelens(tmp_path / "sl")
    x = inputs()
    with torch.no_grad():
        z_peer = peer.encode(x)
        x_hat_peer = peer.decode(z_peer)
    z = reference_encode(w, x).float()
    if kind == "topk-rescaled":
        # SAELens's latents are pre-activations times ||W_dec_j||, which is what we fold in
        assert w.W_dec.norm(dim=1).allclose(torch.ones(D_SAE), atol=1e-5)
    torch.testing.assert_close(z, z_peer, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reference_decode(w, z).float(), x_hat_peer, rtol=1e-4, atol=1e-4)
    # and the polysemy SAE built from the imported weights computes the same
    from polysemy.sae.interop import to_sae

    ours = to_sae(w)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), z_peer, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours(x).x_hat, x_hat_peer, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def sparsify():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("sparsify")


def _dense(top_acts: Tensor, top_indices: Tensor) -> Tensor:
    return torch.zeros(top_acts.shape[0], D_SAE).scatter(1, top_indices, top_acts)


def test_sparsify_both_ways_with_real_sparsify(tmp_path: Path, sparsify) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(5)
    peer = sparsify.SparseCoder(D_IN, sparsify.SparseCoderConfig(num_latents=D_SAE, k=K))
    with torch.no_grad():
        peer.encoder.bias.normal_(0, 0.1)
        peer.b_dec.normal_()
    peer.save_to_disk(tmp_path / "peer")
    w = read_sparsify(tmp_path / "peer")
    x = inputs()
    with torch.no_grad():
        enc = peer.encode(x)
        x_hat_peer = peer.decode(enc.top_acts, enc.top_indices)
    z_peer = _dense(enc.top_acts, enc.top_indices)
    torch.testing.assert_close(reference_encode(w, x).float(), z_peer, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        reference_decode(w, z_peer).float(), x_hat_peer, rtol=1e-5, atol=1e-5
    )
    from polysemy.sae.interop import to_sae

    with torch.no_grad():
        imported = to_sae(w)
        torch.testing.assert_close(imported.encode(x), z_peer, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(imported(x).x_hat, x_hat_peer, rtol=1e-5, atol=1e-5)

    ours = make_weights("topk")
    write_sparsify(ours, tmp_path / "ours")
    loaded = sparsify.SparseCoder.load_from_disk(tmp_path / "ours")
    with torch.no_grad():
        enc = loaded.encode(x)
        x_hat = loaded.decode(enc.top_acts, enc.top_indices)
    z = reference_encode(ours, x).float()
    torch.testing.assert_close(_dense(enc.top_acts, enc.top_indices), z, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat, reference_decode(ours, z).float(), rtol=1e-5, atol=1e-5)


# ---- into and out of polysemy SAEs -----------------------------------------------------------


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu", "batchtopk"])
def test_to_sae_and_back(arch: str) -> None:
    from polysemy.sae.interop import to_sae, weights_of

    w = make_weights(arch)
    sae = to_sae(w)
    x = inputs()
    with torch.no_grad():
        z = sae.encode(x)
        x_hat = sae.decode(z)
    torch.testing.assert_close(z, reference_encode(w, x).float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat, reference_decode(w, z).float(), rtol=1e-5, atol=1e-5)
    back = weights_of(sae)
    assert back.arch == arch and back.k == w.k
    assert torch.equal(back.W_enc, w.W_enc) and torch.equal(back.b_dec, w.b_dec)


def test_weights_of_refuses_other_modules() -> None:
    from polysemy.sae.interop import weights_of

    with pytest.raises(TypeError, match="expected a polysemy SparseAutoencoder; got Linear"):
        weights_of(torch.nn.Linear(2, 2))
