"""Transcoders in analyze_circuits: latents encoded from the MLP's input, decoder rows written
at its output, downstream transcoders read at the next MLP's input. The factored path gives
the autograd path's numbers on the natural pair (MLP out -> next MLP in) of tiny BERT, tiny
GPT-2 and MiniLM; edge ablation removes z_a W_dec[a] at the MLP's output."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from polysemy.analysis.circuits import analyze_circuits
from polysemy.analysis.edge_ablation import ablate_edges
from polysemy.models import load_model
from polysemy.models.sites import _module, _StopForward, get_site, patch_site, read_sites
from polysemy.sae import sae_from_weights
from polysemy.validation import ParameterError

_KW = dict(top_k=4, top=8, resamples=100, batch_size=3, shuffles=5)


def _tc(d_in: int, d_out: int, n: int, site_in: str, site_out: str, seed: int, skip=False):
    """A random TopK transcoder (unrelated encoder and decoder, non-zero b_dec)."""
    g = torch.Generator().manual_seed(seed)
    W_enc = F.normalize(torch.randn(d_in, n, generator=g), dim=0)
    W_dec = F.normalize(torch.randn(n, d_out, generator=g), dim=-1)
    extra = {"W_skip": 0.3 * torch.randn(d_in, d_out, generator=g)} if skip else {}
    tc = sae_from_weights("skip-transcoder" if skip else "transcoder", W_enc=W_enc,
                          b_enc=torch.zeros(n), W_dec=W_dec,
                          b_dec=0.1 * torch.randn(d_out, generator=g), k=4, **extra)  # fmt: skip
    tc.metadata = {"source": {"site": site_in, "site_in": site_in, "site_out": site_out}}
    return tc


def _same(model, up, down, texts, examples: int, **kw) -> None:
    kw = {**_KW, "examples": examples, **kw}
    a = analyze_circuits(model, up, down, texts, method="autograd", **kw)
    b = analyze_circuits(model, up, down, texts, **kw)  # auto: factored where it fits
    assert (a.method, b.method) == ("autograd", "factored")
    scale = float(a.top_weight.abs().max())
    assert scale > 0
    torch.testing.assert_close(b.top_weight, a.top_weight, atol=1e-5 * scale, rtol=1e-5)
    assert torch.equal(a.top_up, b.top_up)
    for ea, eb in zip(a.edges, b.edges, strict=True):
        assert (ea["up"], ea["down"], ea["contexts"]) == (eb["up"], eb["down"], eb["contexts"])
        assert ea["ci"]["low"] == pytest.approx(eb["ci"]["low"], rel=1e-5, abs=1e-5 * scale)
    assert a.site_up.endswith(".output") and a.site_down == b.site_down


def test_bert_transcoder_to_transcoder(tiny_bert, sentences) -> None:
    up = _tc(32, 32, 40, "encoder.layer.0.intermediate.input",
             "encoder.layer.0.output.dense.output", 0)  # fmt: skip
    down = _tc(32, 32, 48, "encoder.layer.1.intermediate.input",
               "encoder.layer.1.output.dense.output", 1)  # fmt: skip
    _same(tiny_bert, up, down, sentences, 6, seq_len=12)


def test_gpt2_transcoder_to_transcoder(tiny_gpt2) -> None:
    ids = torch.randint(0, 200, (6, 10), generator=torch.Generator().manual_seed(3))
    up = _tc(32, 32, 40, "h.0.ln_2.output", "h.0.mlp.output", 0)
    down = _tc(32, 32, 48, "h.1.ln_2.output", "h.1.mlp.output", 1)
    _same(tiny_gpt2, up, down, ids, 6)


def test_minilm_layer2_to_layer3(sentences) -> None:
    loaded = load_model("minilm")
    up = _tc(384, 384, 64, "encoder.layer.2.intermediate.input",
             "encoder.layer.2.output.dense.output", 0)  # fmt: skip
    down = _tc(384, 384, 64, "encoder.layer.3.intermediate.input",
               "encoder.layer.3.output.dense.output", 1)  # fmt: skip
    _same(loaded, up, down, sentences, 4, seq_len=16, batch_size=2)


def test_transcoder_up_to_sae_down_and_beyond_the_span(tiny_bert, sentences) -> None:
    """An SAE downstream works too; two layers apart (an MLP between) falls back to autograd."""
    from tests.analysis.test_circuits_factored import _sae

    up = _tc(32, 32, 40, "encoder.layer.0.intermediate.input",
             "encoder.layer.0.output.dense.output", 0)  # fmt: skip
    sae = _sae(32, 48, "encoder.layer.1.attention.output", 1)
    _same(tiny_bert, up, sae, sentences, 6, seq_len=12)
    far = _tc(32, 32, 48, "encoder.layer.1.intermediate.input", "x", 1)
    r = analyze_circuits(tiny_bert, up, far, sentences, examples=3, seq_len=10, **_KW,
                         site_down="encoder.layer.1.output.LayerNorm.output")  # fmt: skip
    assert r.method == "autograd" and r.site_down.startswith("encoder.layer.1.output.LayerNorm")


def test_latents_come_from_the_mlp_input(tiny_gpt2) -> None:
    """Where a is off at the MLP's input (encoded by hand) its edge is exactly zero."""
    ids = torch.randint(0, 200, (6, 10), generator=torch.Generator().manual_seed(3))
    up = _tc(32, 32, 40, "h.0.ln_2.output", "h.0.mlp.output", 0)
    down = _tc(32, 32, 48, "h.1.ln_2.output", "h.1.mlp.output", 1)
    with torch.no_grad(), read_sites(tiny_gpt2, ["h.0.ln_2.output"]) as reader:
        _module(tiny_gpt2)(input_ids=ids)
    z = up.encode(reader.values["h.0.ln_2.output"].flatten(0, 1)).view(6, 10, -1)
    for method in ("autograd", "factored"):
        r = analyze_circuits(tiny_gpt2, up, down, ids, examples=6, method=method, **_KW)
        assert r.edges
        for e in r.edges:
            on = (z[..., e["up"]] > 0).any(1)  # (contexts,)
            assert e["contexts"] <= int(on.sum())


def test_skip_term_is_not_a_feature(tiny_bert, sentences) -> None:
    """A skip-transcoder's edges are its latents' alone: the same as without the skip term."""
    sites = ("encoder.layer.0.intermediate.input", "encoder.layer.0.output.dense.output")
    plain, skip = _tc(32, 32, 40, *sites, 0), _tc(32, 32, 40, *sites, 0, skip=True)
    down = _tc(32, 32, 48, "encoder.layer.1.intermediate.input", "x", 1)
    a = analyze_circuits(tiny_bert, plain, down, sentences, examples=4, seq_len=10, **_KW)
    b = analyze_circuits(tiny_bert, skip, down, sentences, examples=4, seq_len=10, **_KW)
    assert torch.equal(a.top_up, b.top_up)
    torch.testing.assert_close(a.top_weight, b.top_weight)


@pytest.mark.parametrize(
    ("model_name", "site_in", "site_out", "site_down"),
    [
        ("tiny_gpt2", "h.0.ln_2.output", "h.0.mlp.output", "h.1.ln_2.output"),
        ("tiny_bert", "encoder.layer.0.intermediate.input", "encoder.layer.0.output.dense.output",
         "encoder.layer.1.intermediate.input"),
    ],
)  # fmt: skip
def test_ablation_removes_the_decoder_row_at_the_mlp_output(
    request, model_name, site_in, site_out, site_down
) -> None:
    """The ablation effect of (a, b), against a by-hand pass with z_a W_dec[a] removed at the
    MLP's output (z_a encoded from the MLP's input)."""
    loaded = request.getfixturevalue(model_name)
    ids = torch.randint(5, 200, (4, 10), generator=torch.Generator().manual_seed(3))
    up = _tc(32, 32, 40, site_in, site_out, 0)
    down = _tc(32, 32, 48, site_down, "x", 1)
    r = analyze_circuits(loaded, up, down, ids, examples=4, ablate=2, ablate_random=4, **_KW)
    assert r.ablation is not None and r.ablation["n_edges"] == 2
    a, b = r.ablation["edges"][0]["up"], r.ablation["edges"][0]["down"]
    res = ablate_edges(loaded, up, down, ids, [(a, b)], examples=4, ablate_random=4,
                       resamples=100, batch_size=4)  # fmt: skip
    model = _module(loaded)
    site_in, site_out = get_site(model, site_in), get_site(model, site_out)
    down_site = get_site(model, site_down)
    with torch.no_grad():
        with read_sites(model, [site_in, down_site]) as clean:
            model(input_ids=ids)
        z_a = up.encode(clean.values[site_in.name].flatten(0, 1)).view(4, 10, -1)[..., a]
        h_d = clean.values[down_site.name]
        fires = down.encode(h_d.flatten(0, 1)).view(4, 10, -1)[..., b] > 0
        with (
            patch_site(model, site_out, lambda v: v - z_a[..., None] * up.W_dec[a]),
            read_sites(model, [down_site], early_exit=True) as ablated,
            contextlib.suppress(_StopForward),
        ):
            model(input_ids=ids)
        change = (h_d - ablated.values[down_site.name]) @ down.W_enc[:, b]
    expected = (change * fires).sum(1).double()
    assert expected.abs().max() > 0
    torch.testing.assert_close(res.effects[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"site_up_in": "h.1.ln_2.output"}, "site_up_in must be a site computed before"),
        ({"site_up": "h.1.output"}, "site_down must be a site computed after"),
    ],
)
def test_bad_transcoder_sites(tiny_gpt2, options, match) -> None:
    ids = torch.randint(0, 200, (3, 6), generator=torch.Generator().manual_seed(3))
    up = _tc(32, 32, 40, "h.0.ln_2.output", "h.0.mlp.output", 0)
    down = _tc(32, 32, 48, "h.1.ln_2.output", "h.1.mlp.output", 1)
    with pytest.raises(ParameterError, match=match):
        analyze_circuits(tiny_gpt2, up, down, ids, examples=3, **_KW, **options)


def test_site_up_in_refused_for_an_sae_and_widths_checked(tiny_gpt2) -> None:
    from tests.analysis.test_circuits_factored import _sae

    ids = torch.randint(0, 200, (3, 6), generator=torch.Generator().manual_seed(3))
    down = _tc(32, 32, 48, "h.1.ln_2.output", "h.1.mlp.output", 1)
    with pytest.raises(ParameterError, match="site_up_in must be left out for an SAE"):
        analyze_circuits(tiny_gpt2, _sae(32, 40, "h.0.output", 0), down, ids, examples=3,
                         site_up_in="h.0.ln_2.output", **_KW)  # fmt: skip
    wide = _tc(32, 128, 40, "h.0.ln_2.output", "h.0.mlp.output", 0)
    with pytest.raises(ParameterError, match="sae_up must be a transcoder with d_out=32"):
        analyze_circuits(tiny_gpt2, wide, down, ids, examples=3, **_KW)
    assert get_site(tiny_gpt2, "h.0.mlp.output").width == 32


def test_planted_circuit_through_a_transcoded_mlp() -> None:
    """Known truth: the planted circuit with an orthogonal linear 'MLP' R at `up` (the block
    reads R^T back, so the model computes the same), and a transcoder that is exact for it
    (latents = the planted codes, encoded at the MLP's input; decoder rows D_up R at its
    output). Its edges must be the exact SAE's edges on the original model, which recover
    the planted parents."""
    from polysemy.analysis.circuits_calibration import _Block, planted_circuit

    model, sae_up, sae_down = planted_circuit(seed=0)
    ids = torch.randint(0, 64, (16, 8), generator=torch.Generator().manual_seed(1))
    kw = dict(examples=16, top_k=2, top=10, resamples=100, shuffles=1, site_down="block.output")
    ref = analyze_circuits(model, sae_up, sae_down, ids, site_up="up.output", **kw)
    d = int(sae_up.W_dec.shape[1])
    R, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(2)))
    mixed, _, _ = planted_circuit(seed=0)
    mixed.up = torch.nn.Linear(d, d, bias=False)
    with torch.no_grad():
        mixed.up.weight.copy_(R.t())  # x @ R
    mixed.block = _Block(R.t() @ model.block.M)
    tc = sae_from_weights("transcoder", W_enc=sae_up.W_enc.detach().clone(),
                          b_enc=sae_up.b_enc.detach().clone(), W_dec=sae_up.W_dec.detach() @ R,
                          b_dec=torch.zeros(d), k=2)  # fmt: skip
    tc.metadata = {"source": {"site_in": "embed.output", "site_out": "up.output"}}
    got = analyze_circuits(mixed, tc, sae_down, ids, **kw)
    assert got.site_up == "up.output" and got.summary()["site_up_in"] == "embed.output"
    assert torch.equal(got.top_up, ref.top_up)
    torch.testing.assert_close(got.top_weight, ref.top_weight, rtol=1e-4, atol=1e-5)
    truth = model.truth
    found = [truth[a, b] != 0 for b, row in enumerate(got.top_up.tolist()) for a in row]
    assert sum(found) >= 0.8 * len(found)
