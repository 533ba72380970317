"""analyze_circuits: planted edges found exactly under the linearisation, batching that does
not change results, the frozen-gradient mode, the folder, and every validation branch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.analysis.circuits import FrozenLinearisation, _Edges, analyze_circuits
from polysemy.analysis.circuits_calibration import (
    calibrate_braids,
    calibrate_circuits,
    planted_circuit,
)
from polysemy.analysis.folder import read_analysis
from polysemy.analysis.replay import PaddedBatch
from polysemy.models.sites import get_site
from polysemy.sae import sae_from_weights
from polysemy.validation import ParameterError


def _ids(n: int, seq: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 64, (n, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_edges_found_exactly_when_frozen(seed: int) -> None:
    cal = calibrate_circuits(seed=seed)
    assert cal.recovery.estimate == 1.0 and cal.recovery.n == 24
    assert cal.leak < 1e-4  # off-support weights vanish up to rounding
    assert all(e["verdict"] == "effect" for e in cal.result.edges)


def test_plain_gradient_leaks_through_the_softmax() -> None:
    cal = calibrate_circuits(seed=0, frozen=False)
    assert cal.leak > 0.1  # the unfrozen pattern and norm spread every a onto every b


def test_per_context_edges_match_the_formula() -> None:
    model, sae_up, sae_down = planted_circuit(seed=0)
    ids = _ids(3)
    ones = torch.ones_like(ids)
    edges = _Edges(model, sae_up, sae_down, get_site(model, "up.output"),
                   get_site(model, "block.output"), frozen=True)  # fmt: skip
    cache = edges.record(PaddedBatch(ids, ones, ones.bool()))
    got = edges.run(cache, torch.arange(12))  # (n_b, B, d_up)
    h = cache.h_up
    P = torch.softmax(h @ h.transpose(-2, -1) / 4.0, -1)  # d = 16: scale 1/4
    mixed = P @ (h @ model.block.M)
    s = torch.rsqrt(mixed.var(-1, unbiased=False) + 1e-5)  # (B, T)
    want = torch.einsum("itb,it,its,isa,ab->bia", cache.active_down.float(), s, P,
                        cache.z_up, model.truth)  # fmt: skip
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_chunking_does_not_change_results() -> None:
    model, sae_up, sae_down = planted_circuit(seed=2)
    # top_k = the planted parents per feature: beyond them the weights are rounding noise.
    kw = dict(examples=10, site_up="up.output", site_down="block.output", top_k=2, top=5,
              resamples=100, batch_size=4)  # fmt: skip
    a = analyze_circuits(model, sae_up, sae_down, _ids(10), chunk=1, **kw)
    b = analyze_circuits(model, sae_up, sae_down, _ids(10), chunk=7, **kw)
    torch.testing.assert_close(a.top_weight, b.top_weight, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.top_up, b.top_up)
    assert [(e["up"], e["down"]) for e in a.edges] == [(e["up"], e["down"]) for e in b.edges]


@pytest.mark.parametrize("vmap", [True, False])
def test_vmap_and_copies_agree(vmap: bool) -> None:
    model, sae_up, sae_down = planted_circuit(seed=0)
    ids = _ids(3)
    ones = torch.ones_like(ids)
    edges = _Edges(model, sae_up, sae_down, get_site(model, "up.output"),
                   get_site(model, "block.output"), frozen=True)  # fmt: skip
    cache = edges.record(PaddedBatch(ids, ones, ones.bool()))
    want = edges.run(cache, torch.arange(1))  # one feature: same either way
    edges.vmap = vmap
    got = edges.run(cache, torch.arange(12))
    torch.testing.assert_close(got[:1], want, atol=1e-5, rtol=1e-4)
    assert edges.vmap is vmap  # vmap worked on this model (no fallback)


def test_frozen_mode_keeps_values_and_freezes_gradients() -> None:
    x = torch.randn(2, 5, 6, requires_grad=True)
    with FrozenLinearisation():
        p = F.softmax(x, dim=-1)
        ln = F.layer_norm(x, (6,))
        att = F.scaled_dot_product_attention(x[:, None], x[:, None], x[:, None])[:, 0]
    torch.testing.assert_close(p, F.softmax(x, dim=-1))
    torch.testing.assert_close(ln, F.layer_norm(x, (6,)), atol=1e-5, rtol=1e-5)
    want_att = F.scaled_dot_product_attention(x[:, None], x[:, None], x[:, None])[:, 0]
    torch.testing.assert_close(att, want_att, atol=1e-5, rtol=1e-5)
    assert not p.requires_grad  # the pattern is a constant
    # Frozen attention is linear in the values: its gradient is the pattern's column sums.
    (g,) = torch.autograd.grad(att.sum(), x)
    pattern = torch.softmax(x @ x.transpose(-2, -1) / 6**0.5, -1).detach()
    torch.testing.assert_close(g, pattern.sum(-2)[..., None].expand_as(x), atol=1e-5, rtol=1e-5)
    # Frozen LayerNorm: centring times a constant scale.
    (g,) = torch.autograd.grad(ln[0, 0, 0], x)
    scale = torch.rsqrt(x[0, 0].var(unbiased=False) + 1e-5).detach()
    want = (torch.eye(6)[0] - 1 / 6) * scale
    torch.testing.assert_close(g[0, 0], want, atol=1e-5, rtol=1e-5)


def _bert_saes(d_sae: int = 24) -> tuple:
    g = torch.Generator().manual_seed(0)
    saes = []
    for site in ("encoder.layer.0.output", "encoder.layer.1.output"):
        W = F.normalize(torch.randn(d_sae, 32, generator=g), dim=-1)
        sae = sae_from_weights("relu", W_enc=W.T.clone(), b_enc=torch.zeros(d_sae) + 0.1,
                               W_dec=W, b_dec=torch.zeros(32))  # fmt: skip
        sae.metadata = {"source": {"site": site}}
        saes.append(sae)
    return tuple(saes)


def test_bert_folder_and_summary(tmp_path, sentences) -> None:
    loaded = tiny_encoder(seed=0)
    up, down = _bert_saes()
    out = tmp_path / "circ"
    r = analyze_circuits(loaded, up, down, sentences, examples=12, top_k=4, top=6,
                         resamples=100, out=out)  # fmt: skip
    s = r.summary()
    assert s["contexts"] == 12 and s["site_up"] == "encoder.layer.0.output"
    assert len(s["edges"]) == 6 and r.top_up.shape == (24, 4)
    assert s["braids"]["n_edges"] == 6 and 0.0 <= s["braids"]["braided_fraction"] <= 1.0
    for e in s["edges"]:
        assert e["ci"]["low"] <= e["weight"] <= e["ci"]["high"] and e["ci"]["n"] == 12
        assert e["virtual"] is not None
    weights = [abs(e["weight"]) for e in s["edges"]]
    assert weights == sorted(weights, reverse=True)
    assert weights[0] >= s["null"]["quantiles"]["q95"]
    folder = read_analysis(out, "circuits")
    assert folder.json("edges.json") == s["edges"]
    assert folder.tensors("edges.safetensors")["top_up"].shape == (24, 4)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"site_up": "encoder.layer.1.output", "site_down": "encoder.layer.0.output"},
         "site_down must be a site computed after"),
        ({"features_down": (99,)}, "features_down must be indices below d_sae=24"),
        ({"examples": 10_000}, "examples must be at most"),
        ({"site_up": "encoder.nope.output"}, "site_up must be a site of the model"),
        ({"top_k": 0}, "top_k must be"),
        ({"braid_features": 0}, "braid_features must be"),
        ({"ablate": -1}, "ablate must be"),
    ],
)  # fmt: skip
def test_validation(options, match, sentences, tmp_path) -> None:
    loaded = tiny_encoder(seed=0)
    up, down = _bert_saes()
    with pytest.raises(ParameterError, match=match):
        analyze_circuits(loaded, up, down, sentences, out=tmp_path / "x", **options)
    assert not (tmp_path / "x").exists()


def test_wrong_width_sae_refused(sentences) -> None:
    loaded = tiny_encoder(seed=0)
    up, _ = _bert_saes()
    narrow = sae_from_weights("relu", W_enc=torch.zeros(16, 8), b_enc=torch.zeros(8),
                              W_dec=torch.zeros(8, 16), b_dec=torch.zeros(16))  # fmt: skip
    with pytest.raises(ParameterError, match="sae_down must be an SAE with d_in=32"):
        analyze_circuits(loaded, up, narrow, sentences, site_down="encoder.layer.1.output")


def test_frozen_mode_keeps_a_padded_bert_forward() -> None:
    loaded = tiny_encoder(seed=0)
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    want = loaded.model(input_ids=ids, attention_mask=mask).last_hidden_state
    with FrozenLinearisation():
        got = loaded.model(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(got[keep], want[keep], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_braids_find_the_shared_planted_edges(seed: int) -> None:
    cal = calibrate_braids(seed=seed)
    assert cal.true_positive.estimate == 1.0 and cal.true_positive.n == 6
    assert cal.false_positive.estimate == 0.0 and cal.false_positive.n == 12
    braids = cal.result.summary()["braids"]
    assert braids["braided_fraction"] == pytest.approx(6 / 18)
    assert braids["null_ci"]["low"] > braids["ci"]["high"]  # shuffles braid everything
