"""The factored path of analyze_circuits (no backward pass) gives the autograd path's numbers
on BERT (tiny, and MiniLM) and GPT-2 at every supported pair of sites; `method` picks it only
where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polysemy.analysis.circuits import _autograd_series, _Edges, analyze_circuits
from polysemy.analysis.circuits_factored import attention_block, factored_series, factored_sums
from polysemy.analysis.replay import PaddedBatch
from polysemy.models import load_model
from polysemy.models.sites import get_site
from polysemy.sae import sae_from_weights
from polysemy.validation import ParameterError


def _sae(d: int, n: int, site: str, seed: int, k: int = 4) -> torch.nn.Module:
    """A random TopK SAE; b_dec non-zero (a constant: it must not change the edges)."""
    g = torch.Generator().manual_seed(seed)
    W = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    sae = sae_from_weights("topk", W_enc=W.T.clone(), b_enc=torch.zeros(n), W_dec=W,
                           b_dec=0.1 * torch.randn(d, generator=g), k=k)  # fmt: skip
    sae.metadata = {"source": {"site": site}}
    return sae


_KW = dict(top_k=4, top=8, resamples=100, batch_size=3)


def _same(model, up: str, down: str, texts, d: int, examples: int, **kw) -> None:
    su, sd = _sae(d, 40, up, 0), _sae(d, 48, down, 1)
    kw = {**_KW, "examples": examples, **kw}
    a = analyze_circuits(model, su, sd, texts, method="autograd", **kw)
    b = analyze_circuits(model, su, sd, texts, **kw)  # auto
    assert (a.method, b.method) == ("autograd", "factored")
    assert b.summary()["method"] == "factored"
    scale = float(a.top_weight.abs().max())
    assert scale > 0
    torch.testing.assert_close(b.top_weight, a.top_weight, atol=1e-5 * scale, rtol=1e-5)
    assert torch.equal(a.top_up, b.top_up)
    for ea, eb in zip(a.edges, b.edges, strict=True):
        assert (ea["up"], ea["down"], ea["contexts"]) == (eb["up"], eb["down"], eb["contexts"])
        for key in ("low", "high"):
            assert ea["ci"][key] == pytest.approx(eb["ci"][key], rel=1e-5, abs=1e-5 * scale)
        assert ea["verdict"] == eb["verdict"]
    assert a.braids["braided_fraction"] == b.braids["braided_fraction"]


@pytest.mark.parametrize(
    ("up", "down"),
    [
        ("encoder.layer.0.output", "encoder.layer.1.attention.output"),
        ("encoder.layer.1.input", "encoder.layer.1.intermediate.input"),
        ("embeddings.output", "encoder.layer.0.attention.output.LayerNorm.input"),
    ],
)
def test_bert_factored_equals_autograd(tiny_bert, sentences, up: str, down: str) -> None:
    # Padded sentences of different lengths: padding must stay out of both.
    _same(tiny_bert, up, down, sentences, 32, 6, site_up=up, site_down=down, seq_len=12)


@pytest.mark.parametrize(
    ("up", "down"),
    [("h.0.output", "h.1.ln_2.output"), ("h.2.input", "h.2.ln_2.input"),
     ("drop.output", "h.0.mlp.input")],
)  # fmt: skip
def test_gpt2_factored_equals_autograd(tiny_gpt2, up: str, down: str) -> None:
    ids = torch.randint(0, 200, (6, 10), generator=torch.Generator().manual_seed(3))
    _same(tiny_gpt2, up, down, ids, 32, 6, site_up=up, site_down=down)


def test_gpt2_with_a_head_like_the_organism() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=1, eos_token_id=1)  # fmt: skip
    model = GPT2LMHeadModel(config).eval().requires_grad_(False)
    ids = torch.randint(0, 64, (4, 9), generator=torch.Generator().manual_seed(1))
    _same(model, "transformer.h.0.output", "transformer.h.1.ln_2.output", ids, 32, 4)


def test_gpt2_padded_sentences(tiny_gpt2, gpt2_docs) -> None:
    docs = [" ".join(d.split()[: 3 + i % 6]) for i, d in enumerate(gpt2_docs)]  # lengths vary
    _same(tiny_gpt2, "h.0.output", "h.1.ln_2.output", docs, 32, 6, seq_len=12)


def test_eager_bert_attention(sentences) -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=64, attn_implementation="eager")  # fmt: skip
    model = BertModel(config).eval().requires_grad_(False)
    assert model.config._attn_implementation == "eager"  # the pattern comes from its softmax
    ids = torch.randint(5, 900, (4, 9), generator=torch.Generator().manual_seed(2))
    _same(model, "encoder.layer.0.output", "encoder.layer.1.attention.output", ids, 32, 4)


def test_unreadable_pattern_falls_back(sentences) -> None:
    """An attention function with a hand-written softmax: no pattern for the factored path to
    read, so `auto` runs backward passes and `factored` says why it cannot."""
    from transformers import AttentionInterface, BertConfig, BertModel

    def by_hand(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        scores = query @ key.transpose(2, 3) * (scaling or query.shape[-1] ** -0.5)
        if attention_mask is not None:
            scores = scores + attention_mask
        e = (scores - scores.amax(-1, keepdim=True)).exp()
        return ((e / e.sum(-1, keepdim=True)) @ value).transpose(1, 2).contiguous(), None

    AttentionInterface.register("polysemy_test_by_hand", by_hand)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                        attn_implementation="polysemy_test_by_hand")  # fmt: skip
    model = BertModel(config).eval().requires_grad_(False)
    up, down = "encoder.layer.0.output", "encoder.layer.1.attention.output"
    su, sd = _sae(32, 40, up, 0), _sae(32, 48, down, 1)
    ids = torch.randint(5, 900, (3, 8), generator=torch.Generator().manual_seed(2))
    kw = {**_KW, "examples": 3}
    assert analyze_circuits(model, su, sd, ids, **kw).method == "autograd"
    with pytest.raises(RuntimeError, match="expected one attention pattern"):
        analyze_circuits(model, su, sd, ids, method="factored", **kw)


def test_some_downstream_features(tiny_bert, sentences) -> None:
    up, down = "encoder.layer.0.output", "encoder.layer.1.attention.output"
    _same(tiny_bert, up, down, sentences, 32, 5, seq_len=10, features_down=(3, 7, 11, 20))


def test_minilm_layer3_to_layer4(sentences) -> None:
    loaded = load_model("minilm")
    up, down = "encoder.layer.3.output", "encoder.layer.4.attention.output"
    _same(loaded, up, down, sentences, 384, 4, seq_len=16, batch_size=2)


def test_per_context_values_match(tiny_bert) -> None:
    model = tiny_bert.model
    up = get_site(model, "encoder.layer.0.output")
    down = get_site(model, "encoder.layer.1.attention.output")
    su, sd = _sae(32, 40, up.name, 0), _sae(32, 48, down.name, 1)
    ids = torch.randint(5, 900, (5, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # one padded sentence
    batches = [PaddedBatch(ids[:3], mask[:3], mask[:3].bool()),
               PaddedBatch(ids[3:], mask[3:], mask[3:].bool())]  # fmt: skip
    feats = torch.arange(48)
    pairs = [(b, a) for b in range(0, 48, 5) for a in range(0, 40, 7)]
    edges = _Edges(model, su, sd, up, down, frozen=True)
    want, want_active = _autograd_series(edges, feats, batches, pairs, chunk=8, contexts=5)
    block = attention_block(model, up, down)
    assert block is not None
    passes: list = []
    factored_sums(model, block, su, sd, up, down, feats, batches, cache=passes)
    assert len(passes) == 2 and passes[0].z_up.is_sparse  # kept compact for the second pass
    assert want.abs().max() > 0 and (want == 0).any()
    for cache in ([], passes[:1], passes):  # recomputed, half kept, all kept
        got, active = factored_series(model, block, su, sd, up, down, feats, batches, pairs,
                                      cache=cache)  # fmt: skip
        torch.testing.assert_close(got, want, atol=1e-5 * float(want.abs().max()), rtol=1e-5)
        assert torch.equal(active, want_active)


def test_supported_pairs(tiny_bert, tiny_gpt2) -> None:
    def block(model, up: str, down: str):
        return attention_block(model.model, get_site(model, up), get_site(model, down))

    bert = block(tiny_bert, "encoder.layer.0.output", "encoder.layer.1.attention.output")
    assert bert is not None and bert.heads == 2 and bert.pre_norm is None
    assert bert.post_norm == "encoder.layer.1.attention.output.LayerNorm"
    assert bert.W_V.shape == (2, 16, 32) and bert.W_O.shape == (2, 32, 16)
    gpt = block(tiny_gpt2, "h.1.input", "h.1.ln_2.input")
    assert gpt is not None and gpt.pre_norm == "h.1.ln_1" and gpt.post_norm is None
    # An MLP in between, two blocks apart, or a site that is not the whole residual.
    for up, down in [("encoder.layer.0.output", "encoder.layer.1.output"),
                     ("encoder.layer.0.output", "encoder.layer.0.attention.output"),
                     ("embeddings.output", "encoder.layer.1.attention.output"),
                     ("encoder.layer.1.attention.self.input",
                      "encoder.layer.1.attention.output")]:  # fmt: skip
        assert block(tiny_bert, up, down) is None, (up, down)
    for up, down in [("h.0.output", "h.1.output"), ("h.1.ln_1.input", "h.1.ln_2.input"),
                     ("h.0.input", "h.1.ln_2.input"),
                     ("h.1.input", "h.1.attn.output")]:  # fmt: skip
        assert block(tiny_gpt2, up, down) is None, (up, down)


def test_method_choice(tiny_bert, sentences) -> None:
    up, down = "encoder.layer.0.output", "encoder.layer.1.output"  # an MLP in between
    su, sd = _sae(32, 40, up, 0), _sae(32, 48, down, 1)
    kw = {**_KW, "examples": 3, "seq_len": 8}
    assert analyze_circuits(tiny_bert, su, sd, sentences, **kw).method == "autograd"
    with pytest.raises(ParameterError, match="method must be 'autograd' or 'auto' for these"):
        analyze_circuits(tiny_bert, su, sd, sentences, method="factored", **kw)
    sd = _sae(32, 48, "encoder.layer.1.attention.output", 1)
    plain = analyze_circuits(tiny_bert, su, sd, sentences, frozen=False, **kw)
    assert plain.method == "autograd"  # the factored path is the frozen linearisation only
    with pytest.raises(ParameterError, match="method must be 'autograd' or 'auto' with frozen"):
        analyze_circuits(tiny_bert, su, sd, sentences, method="factored", frozen=False, **kw)
    with pytest.raises(ParameterError, match="method must be one of"):
        analyze_circuits(tiny_bert, su, sd, sentences, method="fast", **kw)


def test_token_and_block_orders_agree(tiny_bert) -> None:
    model = tiny_bert.model
    up = get_site(model, "encoder.layer.0.output")
    down = get_site(model, "encoder.layer.1.attention.output")
    su, sd = _sae(32, 40, up.name, 0, k=6), _sae(32, 48, down.name, 1)
    ids = torch.randint(5, 900, (4, 9), generator=torch.Generator().manual_seed(0))
    ones = torch.ones_like(ids)
    batches = [PaddedBatch(ids, ones, ones.bool())]
    block = attention_block(model, up, down)
    run = lambda order: factored_sums(model, block, su, sd, up, down, torch.arange(48),  # noqa: E731
                                      batches, order=order)  # fmt: skip
    tokens, blocks = run("tokens"), run("blocks")
    assert blocks.abs().max() > 0
    torch.testing.assert_close(tokens, blocks, atol=1e-5 * float(blocks.abs().max()), rtol=1e-5)
