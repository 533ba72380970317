"""The factored fast path of `analyze_circuits`: exact edges when one attention block lies
between the two sites.

When nothing but one attention block and LayerNorms lies between site U and site D, the
frozen linearisation (`circuits.LINEARISATION`) of the map from the value at U (token s) to
the value at D (token t) is

    J[t, s] = post_t (delta_ts I + sum_h A_h[t, s] W_O^h W_V^h pre_s)

with A_h head h's frozen attention pattern, W_V^h and W_O^h the head's slices of the value
and output projections, pre_s the frozen norm on the attention branch (GPT-2's ln_1:
diag(gamma) P / sigma_s, P the centring projection) and post_t the frozen norm after the
residual add (BERT's attention.output.LayerNorm, GPT-2's ln_2), each the identity where
there is none. Biases and b_dec are constants and drop out of the gradient. So

    edge_c(a, b) = sum_{s,t} z_a(s) M[t, b] e_b^T J[t, s] d_a
                 = V_0[a, b] C_0[a, b] + sum_h V_h[a, b] C_h[a, b]

with d_a = W_dec_up[a], e_b = W_enc_down[:, b], M the fire mask of b (text tokens), the
context-free matrices

    V_0[a, b] = (P G_post e_b) . d_a
    V_h[a, b] = (W_O^h^T P G_post e_b) . (W_V^h G_pre P d_a)     (rank <= d_head)

and the context's co-activation sums

    C_0[a, b] = sum_t z_a(t) M[t, b] / sigma_post(t)
    C_h[a, b] = sum_{s,t} z_a(s) / sigma_pre(s) A_h[t, s] M[t, b] / sigma_post(t).

V does not depend on the context, so the C's are summed over all contexts and multiplied by
the V's once at the end: one forward pass per batch up to D, no backward pass. The sum over
contexts of edge_c is the same number the autograd path computes (tests hold them equal).

Supported site pairs (module, direction), P any prefix of the transformer's layer list:

- BERT-like (post-LN), layer L: U is the residual entering layer L (layer L-1's output:
  `encoder.layer.{L-1}`, `...output` or `...output.LayerNorm` output; layer L's or its
  `attention`'s input; for L = 0 the output of `embeddings`, its LayerNorm or dropout) and D
  is layer L's attention output after its LayerNorm (`encoder.layer.L.attention`,
  `...attention.output` or `...attention.output.LayerNorm` output, `...intermediate` or
  `...intermediate.dense` input) or before it (`...attention.output.LayerNorm` input).
- GPT-2-like (pre-LN): U is block L's input (`h.L` input, `h.{L-1}` output, `drop`
  output for L = 0) and D is the residual after the attention (`h.L.ln_2`
  input) or after ln_2 (`h.L.ln_2` output, `h.L.mlp` input).
- The previous MLP's output (an upstream transcoder's `site_out`), for L > 0: BERT's
  `encoder.layer.{L-1}.output.dense` (or `.output.dropout`) output, before the add and
  layer L-1's `output.LayerNorm`, which then lies on both branches (`in_norm`: d_a becomes
  G_in P d_a and every C term gains 1/sigma_in(s)); GPT-2's `h.{L-1}.mlp` (or
  `.mlp.dropout`) output, added to the residual as it is.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from polysemy.analysis.replay import PaddedBatch, _call
from polysemy.models.sites import Site, _StopForward, read_sites
from polysemy.progress import progress_bar


@dataclass(frozen=True)
class AttentionBlock:
    """What lies between U and D: one attention block, and the norms either side."""

    attention: str
    """Module whose forward computes the pattern (its one softmax or SDPA call is read)."""
    pre_norm: str | None
    """LayerNorm on the attention branch only (GPT-2's ln_1), or None."""
    post_norm: str | None
    """LayerNorm after the residual add (BERT's attention.output.LayerNorm, GPT-2's ln_2),
    or None when D is read before it."""
    W_V: Tensor
    """`[heads, d_head, d]`: each head's value projection (column-vector convention)."""
    W_O: Tensor
    """`[heads, d, d_head]`: each head's slice of the output projection."""
    description: str
    in_norm: str | None = None
    """LayerNorm on both branches between U and the attention (BERT's layer L-1
    `output.LayerNorm` when U is that layer's MLP output, `output.dense`), or None."""

    @property
    def heads(self) -> int:
        return int(self.W_V.shape[0])


_BERT_LAYERS = "encoder.layer"


def _layer_lists(model: nn.Module) -> list[tuple[str, str]]:
    """(kind, prefix) of every BERT-like or GPT-2-like layer list in `model`."""
    found = []
    for name, sub in model.named_modules():
        if not isinstance(sub, nn.ModuleList) or len(sub) == 0:
            continue
        first = sub[0]
        if name.endswith(_BERT_LAYERS) and _is_bert_layer(first):
            found.append(("bert", name[: -len(_BERT_LAYERS)]))
        elif (name == "h" or name.endswith(".h")) and _is_gpt2_block(first):
            found.append(("gpt2", name[:-1]))
    return found


def _is_bert_layer(layer: nn.Module) -> bool:
    att = getattr(layer, "attention", None)
    self_ = getattr(att, "self", None)
    out = getattr(att, "output", None)
    return (
        isinstance(getattr(self_, "value", None), nn.Linear)
        and isinstance(getattr(out, "dense", None), nn.Linear)
        and isinstance(getattr(out, "LayerNorm", None), nn.LayerNorm)
        and hasattr(self_, "num_attention_heads")
        and not getattr(layer, "add_cross_attention", False)
    )


def _is_gpt2_block(block: nn.Module) -> bool:
    attn = getattr(block, "attn", None)
    return (
        isinstance(getattr(block, "ln_1", None), nn.LayerNorm)
        and isinstance(getattr(block, "ln_2", None), nn.LayerNorm)
        and hasattr(attn, "c_attn")
        and hasattr(attn, "c_proj")
        and hasattr(attn, "num_heads")
        and not getattr(attn, "is_cross_attention", False)
    )


def _bert_pair(model: nn.Module, p: str, up: Site, down: Site) -> AttentionBlock | None:
    m = re.fullmatch(re.escape(p) + r"encoder\.layer\.(\d+)\.(attention(\.output(\.LayerNorm)?)?|"
                     r"intermediate(\.dense)?)", down.module)  # fmt: skip
    if m is None:
        return None
    L = int(m.group(1))
    layer = f"{p}encoder.layer.{L}"
    rest = down.module[len(layer) + 1 :]
    if rest == "attention.output.LayerNorm":
        post = down.direction == "output"  # its input: the residual before the norm
    elif (rest in ("attention", "attention.output") and down.direction == "output") or (
        rest.startswith("intermediate") and down.direction == "input"
    ):
        post = True
    else:
        return None
    # Not `attention.self` input: patched there, the residual would keep the old value.
    ups = {(layer, "input"), (f"{layer}.attention", "input")}
    # The previous layer's MLP output (a transcoder's site_out), before the add and
    # output.LayerNorm: that norm then lies on both branches, frozen like the others.
    mlp_out: set[tuple[str, str]] = set()
    if L > 0:
        prev = f"{p}encoder.layer.{L - 1}"
        ups |= {(prev, "output"), (f"{prev}.output", "output"),
                (f"{prev}.output.LayerNorm", "output")}  # fmt: skip
        mlp_out = {(f"{prev}.output.dense", "output"), (f"{prev}.output.dropout", "output")}
    else:
        ups |= {(f"{p}embeddings", "output"), (f"{p}embeddings.LayerNorm", "output"),
                (f"{p}embeddings.dropout", "output")}  # fmt: skip
    if (up.module, up.direction) not in ups | mlp_out:
        return None
    in_norm = f"{p}encoder.layer.{L - 1}.output.LayerNorm" if (up.module, up.direction) in (
        mlp_out) else None  # fmt: skip
    self_: Any = model.get_submodule(f"{layer}.attention.self")
    heads = int(self_.num_attention_heads)
    W = self_.value.weight.detach()  # (heads * d_head, d)
    d_head = W.shape[0] // heads
    W_V = W.view(heads, d_head, -1)
    dense: Any = model.get_submodule(f"{layer}.attention.output.dense")
    W_O = dense.weight.detach()  # (d, heads * d_head)
    W_O = W_O.view(W_O.shape[0], heads, d_head).permute(1, 0, 2)
    norm = f"{layer}.attention.output.LayerNorm"
    return AttentionBlock(
        attention=f"{layer}.attention.self",
        pre_norm=None,
        post_norm=norm if post else None,
        W_V=W_V,
        W_O=W_O,
        description=f"BERT layer {L}: {f'layer {L - 1} output.LayerNorm, ' if in_norm else ''}"
        f"self-attention{', attention.output.LayerNorm' * post}",
        in_norm=in_norm,
    )


def _gpt2_pair(model: nn.Module, p: str, up: Site, down: Site) -> AttentionBlock | None:
    m = re.fullmatch(re.escape(p) + r"h\.(\d+)\.(ln_2|mlp|mlp\.c_fc)", down.module)
    if m is None:
        return None
    L = int(m.group(1))
    block = f"{p}h.{L}"
    if m.group(2) == "ln_2":
        post = down.direction == "output"
    elif down.direction == "input":
        post = True
    else:
        return None
    ups = {(block, "input")}  # not ln_1's input: patched there, the residual keeps its value
    ups |= {(f"{p}h.{L - 1}", "output")} if L > 0 else {(f"{p}drop", "output")}
    if L > 0:  # the previous block's MLP output: added to the residual as it is
        ups |= {(f"{p}h.{L - 1}.mlp", "output"), (f"{p}h.{L - 1}.mlp.dropout", "output")}
    if (up.module, up.direction) not in ups:
        return None
    attn: Any = model.get_submodule(f"{block}.attn")
    heads = int(attn.num_heads)
    d = int(attn.c_proj.weight.shape[1])
    d_head = d // heads
    # GPT-2's Conv1D computes x @ weight: c_attn.weight is (d, 3d), [q | k | v] along dim 1.
    W_V = attn.c_attn.weight.detach()[:, 2 * d :].t().reshape(heads, d_head, -1)
    W_O = attn.c_proj.weight.detach().t().reshape(-1, heads, d_head).permute(1, 0, 2)
    return AttentionBlock(
        attention=f"{block}.attn",
        pre_norm=f"{block}.ln_1",
        post_norm=f"{block}.ln_2" if post else None,
        W_V=W_V,
        W_O=W_O,
        description=f"GPT-2 block {L}: ln_1, attention{', ln_2' * post}",
    )


def attention_block(model: nn.Module, up: Site, down: Site) -> AttentionBlock | None:
    """The single attention block between `up` and `down`, or None when the pair is not one
    the factored path supports (the module docstring lists them)."""
    for kind, prefix in _layer_lists(model):
        pair = _bert_pair if kind == "bert" else _gpt2_pair
        found = pair(model, prefix, up, down)
        if found is not None:
            return found
    return None


# ---- one clean pass: activations, patterns, norm scales ---------------------------------------


def frozen_sdpa_pattern(
    query: Tensor,
    key: Tensor,
    attn_mask: Tensor | None,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> Tensor:
    """The (detached, float32) attention pattern `scaled_dot_product_attention` applies."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale  # (..., L, S)
    if is_causal:
        L, S = scores.shape[-2:]
        keep = torch.ones(L, S, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.softmax(scores.float(), dim=-1).detach()


def _sdpa_pattern(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    return frozen_sdpa_pattern(query, key, attn_mask, is_causal, scale, enable_gqa)


class _PatternReader(TorchFunctionMode):
    """Keeps the attention pattern computed while `inside` (set by hooks on the block's
    attention module): the output of its softmax, or the pattern inside its SDPA call."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.pattern: Tensor | None = None

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        if self.inside:
            if func is F.scaled_dot_product_attention:
                pattern = _sdpa_pattern(*args, **kwargs)
                value = kwargs.get("value", args[2] if len(args) > 2 else None)
                self.pattern = pattern
                if value.shape[-3] != pattern.shape[-3]:  # grouped-query attention
                    value = value.repeat_interleave(pattern.shape[-3] // value.shape[-3], -3)
                return pattern.to(value.dtype) @ value
            if func in (F.softmax, torch.softmax, Tensor.softmax):
                out = func(*args, **kwargs)
                self.pattern = out
                return out
        return func(*args, **kwargs)


class PatternNotFound(RuntimeError):
    """The block's attention module computed no softmax or SDPA pattern this path can read."""


@dataclass
class _Pass:
    z_up: Tensor  # (B, T, n_up), zero off text tokens
    fire: Tensor  # (B, T, n_feats) bool: downstream feature fires at a text token
    pattern: Tensor  # (B, H, T, T) float32, A[t, s]
    inv_pre: Tensor  # (B, T) 1 / sigma of the pre norm at s (ones without one)
    inv_post: Tensor  # (B, T) 1 / sigma of the post norm at t (ones without one)
    inv_in: Tensor  # (B, T) 1 / sigma of the norm on both branches at s (ones without one)


CACHE_BYTES = 2 << 30
"""Most bytes of clean passes `factored_sums` keeps for the second pass (about 1 MB per
MiniLM context of 128 tokens, mostly the attention pattern); batches beyond it run again."""


def _compact(p: _Pass) -> _Pass:
    return _Pass(p.z_up.to_sparse(), p.fire.to_sparse(), p.pattern, p.inv_pre, p.inv_post, p.inv_in)


def _expand(p: _Pass) -> _Pass:
    return _Pass(p.z_up.to_dense(), p.fire.to_dense(), p.pattern, p.inv_pre, p.inv_post, p.inv_in)


def _nbytes(p: _Pass) -> int:
    dense = sum(t.numel() * t.element_size() for t in (p.pattern, p.inv_pre, p.inv_post, p.inv_in))
    # Sparse COO: one int64 index per dimension and one value per non-zero.
    return dense + sum(t._nnz() * (8 * t.dim() + t.element_size()) for t in (p.z_up, p.fire))


def _inverse_std(norm: nn.Module, store: dict[str, Tensor], key: str) -> Callable[..., None]:
    eps = float(getattr(norm, "eps", 1e-5))

    def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].float()
        store[key] = torch.rsqrt(x.var(-1, unbiased=False) + eps)

    return hook


@torch.no_grad()
def _clean_pass(
    model: nn.Module,
    block: AttentionBlock,
    sae_up: Any,
    sae_down: Any,
    up: Site,
    down: Site,
    feats: Tensor,
    batch: PaddedBatch,
    up_read: Site | None = None,
) -> _Pass:
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    read = up if up_read is None else up_read  # a transcoder's latents come from its input
    scales: dict[str, Tensor] = {}
    reader_mode = _PatternReader()
    attention = model.get_submodule(block.attention)
    handles = [
        attention.register_forward_pre_hook(lambda m, a: setattr(reader_mode, "inside", True)),
        attention.register_forward_hook(lambda m, a, o: setattr(reader_mode, "inside", False)),
    ]
    for key, name in (("pre", block.pre_norm), ("post", block.post_norm), ("in", block.in_norm)):
        if name is not None:
            norm = model.get_submodule(name)
            handles.append(norm.register_forward_pre_hook(_inverse_std(norm, scales, key)))
    try:
        with (
            read_sites(model, [read, up, down], early_exit=True) as reader,
            reader_mode,
            contextlib.suppress(_StopForward),
        ):
            _call(model, inputs)
    finally:
        for h in handles:
            h.remove()
    pattern = reader_mode.pattern
    B, T = batch.input_ids.shape
    if pattern is None or pattern.shape != (B, block.heads, T, T):
        got = None if pattern is None else tuple(pattern.shape)
        raise PatternNotFound(
            f"circuits: expected one attention pattern [{B}, {block.heads}, {T}, {T}] from "
            f"{block.attention!r}, got {got}; use method='autograd'"
        )
    h_up, h_down = reader.values[read.name], reader.values[down.name]
    text = batch.text[..., None]
    z_up = sae_up.encode(h_up.flatten(0, 1)).view(B, T, -1) * text
    z_down = sae_down.encode(h_down.flatten(0, 1)).view(B, T, -1)[..., feats]
    ones = torch.ones(B, T, device=h_up.device)
    return _Pass(
        z_up=z_up.float(),
        fire=(z_down > 0) & text,
        pattern=pattern.float(),
        inv_pre=scales.get("pre", ones),
        inv_post=scales.get("post", ones),
        inv_in=scales.get("in", ones),
    )


def _mixed(p: _Pass, fire: Tensor) -> Tensor:
    """`[B, H + 1, T, n]`: Y_0 = M / sigma_post and Y_h = diag(1/sigma_pre) A_h^T Y_0, for the
    `n` columns of `fire` (`[B, T, n]`)."""
    y0 = fire.float() * p.inv_post[..., None]  # (B, T, n)
    yh = p.pattern.transpose(-1, -2) @ y0[:, None]  # (B, H, T, n): sum_t A[t, s] y0[t]
    yh = yh * p.inv_pre[:, None, :, None]
    # A norm on both branches scales what a writes at s, on the residual path and the heads'.
    return torch.cat([y0[:, None], yh], dim=1) * p.inv_in[:, None, :, None]


# ---- the context-free factors -----------------------------------------------------------------


def _centre(x: Tensor) -> Tensor:
    return x - x.mean(-1, keepdim=True)


def _factors(
    block: AttentionBlock, model: nn.Module, sae_up: Any, sae_down: Any, feats: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(D, E, L, R), float64: V_0 = D @ E.T and V_h = L[h] @ R[h].T, D `[n_up, d]`, E
    `[n_feats, d]`, L `[H, n_up, d_head]`, R `[H, n_feats, d_head]`."""
    D = sae_up.W_dec.detach().double()  # (n_up, d): d_a
    if block.in_norm is not None:  # G_in P d_a, on both branches
        D = _centre(D) * _gamma(model.get_submodule(block.in_norm), D)
    E = sae_down.W_enc.detach().double()[:, feats].t()  # (n, d): e_b
    if block.post_norm is not None:  # P G_post e_b
        norm = model.get_submodule(block.post_norm)
        E = _centre(E * _gamma(norm, E))
    Dv = D
    if block.pre_norm is not None:  # G_pre P d_a
        norm = model.get_submodule(block.pre_norm)
        Dv = _centre(D) * _gamma(norm, D)
    L = torch.einsum("hkd,ad->hak", block.W_V.double(), Dv)  # W_V^h G P d_a
    R = torch.einsum("hdk,bd->hbk", block.W_O.double(), E)  # W_O^h^T P G e_b
    return D, E, L, R


def _gamma(norm: nn.Module, like: Tensor) -> Tensor:
    weight = getattr(norm, "weight", None)
    if weight is None:
        return torch.ones(like.shape[-1], dtype=like.dtype, device=like.device)
    return weight.detach().to(like.dtype)


# ---- the passes -------------------------------------------------------------------------------


def factored_sums(
    model: nn.Module,
    block: AttentionBlock,
    sae_up: Any,
    sae_down: Any,
    up: Site,
    down: Site,
    feats: Tensor,
    batches: Sequence[PaddedBatch],
    progress: bool = False,
    order: str = "auto",
    cache: list[_Pass] | None = None,
    up_read: Site | None = None,
) -> Tensor:
    """`[n_feats, n_up]` float64: sum over the contexts of `batches` of edge_c(a, b).

    `order` ("auto", "tokens" or "blocks": speed, not results) says how a context's heads
    term is formed (`_heads_by_tokens`, `_heads_by_blocks`); "auto" takes the one with fewer
    multiplications for that context. With `cache`, the first batches' passes are appended
    to it in compact form (up to `CACHE_BYTES` in all), for `factored_series` to reuse.
    `up_read`: where the upstream latents are encoded from (a transcoder's input; None: U)."""
    n_up, n = int(sae_up.W_dec.shape[0]), int(feats.numel())
    device = feats.device
    D, E, L, R = _factors(block, model, sae_up, sae_down, feats)
    L32, R32 = L.float(), R.float()
    L_all = L32.permute(1, 0, 2).reshape(n_up, -1)  # (n_up, H d_head): [a, (h, r)]
    H, d_head = int(L.shape[0]), int(L.shape[2])
    # C_0 summed over contexts (times V_0 once at the end), and the heads' terms
    # sum_h V_h * C_h summed over contexts: V_h for a context's active features comes from
    # its low-rank factors (d_head wide), cheaper than 12 more accumulators to update.
    C0 = torch.zeros(n_up, n, dtype=torch.float64, device=device)
    S = torch.zeros(n_up, n, dtype=torch.float64, device=device)
    used: list[int] = []  # bytes of each cached pass
    bar = progress_bar(len(batches), desc="circuits (factored)", unit="batch", enabled=progress)
    for batch in batches:
        bar.update(1)
        p = _clean_pass(model, block, sae_up, sae_down, up, down, feats, batch, up_read)
        if cache is not None and len(cache) == len(used) and sum(used) < CACHE_BYTES:
            cache.append(_compact(p))
            used.append(_nbytes(cache[-1]))
        for i in range(int(batch.input_ids.shape[0])):
            # Only the upstream features on in this context and the downstream ones firing.
            z, fire = p.z_up[i], p.fire[i]  # (T, n_up), (T, n)
            ua = z.any(0).nonzero().flatten()
            ub = fire.any(0).nonzero().flatten()
            if ua.numel() == 0 or ub.numel() == 0:
                continue
            T = int(z.shape[0])
            kz = int((z != 0).sum(1).max())  # most upstream features on at one token
            y = _mixed(_one(p, i), fire[None, :, ub])[0]  # (H1, T, |ub|)
            zt = z[:, ua].t()  # (|ua|, T)
            where = (ua[:, None], ub[None])
            C0.index_put_(where, (zt @ y[0]).double(), accumulate=True)
            by_tokens = T * kz * H * d_head <= H * int(ua.numel()) * (T + d_head)
            if order == "tokens" or (order == "auto" and by_tokens):
                heads = _heads_by_tokens(z, ua, y[1:], L_all, R32[:, ub], kz)
            else:
                heads = _heads_by_blocks(zt, y[1:], L32[:, ua], R32[:, ub])
            S.index_put_(where, heads.double(), accumulate=True)
    bar.close()
    S += C0 * (D.float() @ E.float().t()).double()  # float32 GEMM: 1e-7 relative
    return S.t().contiguous()


def _heads_by_blocks(zt: Tensor, y: Tensor, Lu: Tensor, Rb: Tensor) -> Tensor:
    """`[|ua|, |ub|]`: sum_h (Z^T Y_h) * V_h on the active block, head by head (dense
    |ua| x T x |ub| products: for dictionaries with many features on per token)."""
    heads = torch.zeros(zt.shape[0], y.shape[-1], device=zt.device)
    for h in range(y.shape[0]):
        heads.addcmul_(zt @ y[h], Lu[h] @ Rb[h].t())
    return heads


def _heads_by_tokens(
    z: Tensor, ua: Tensor, y: Tensor, L_all: Tensor, Rb: Tensor, kz: int, chunk: int = 2
) -> Tensor:
    """The same block, token by token: sum_h Y_h[s, b] V_h[a, b] = L[a] . (Y[s, b] R[b]) over
    the (h, r) index (H d_head = d wide), for the kz features on at each token s: T x kz x d x
    |ub| multiplications instead of H x |ua| x (T + d_head) x |ub| (fewer for sparse codes)."""
    vals, idx = z.topk(kz, dim=1)  # (T, kz): each token's features (zeros pad)
    local = torch.searchsorted(ua, idx).clamp_(max=int(ua.numel()) - 1)
    heads = torch.zeros(int(ua.numel()), y.shape[-1], device=z.device)
    T, nb = y.shape[1:]
    Rt = Rb.transpose(1, 2).contiguous()  # (H, d_head, |ub|)
    for s in range(0, T, chunk):
        ys = y[:, s : s + chunk].transpose(0, 1).contiguous()  # (t, H, |ub|)
        W = (ys[:, :, None, :] * Rt[None]).reshape(ys.shape[0], -1, nb)  # (t, H d_head, |ub|)
        rows = torch.bmm(L_all[idx[s : s + chunk]], W) * vals[s : s + chunk, :, None]
        heads.index_add_(0, local[s : s + chunk].flatten(), rows.flatten(0, 1))
    return heads


def _one(p: _Pass, i: int) -> _Pass:
    """Context `i` of the pass, as a pass of one."""
    sl = slice(i, i + 1)
    return _Pass(p.z_up[sl], p.fire[sl], p.pattern[sl], p.inv_pre[sl], p.inv_post[sl], p.inv_in[sl])


def factored_series(
    model: nn.Module,
    block: AttentionBlock,
    sae_up: Any,
    sae_down: Any,
    up: Site,
    down: Site,
    feats: Tensor,
    batches: Sequence[PaddedBatch],
    pairs: Sequence[tuple[int, int]],
    cache: Sequence[_Pass] = (),
    up_read: Site | None = None,
) -> tuple[Tensor, Tensor]:
    """(`[len(pairs), contexts]` float64 edge_c for each (row of `feats`, upstream feature)
    pair, `[contexts, n_up]`: each upstream feature's activation summed over each context).
    The first `len(cache)` batches come from `cache` (`factored_sums`), the rest from a clean
    pass."""
    device = feats.device
    rows = torch.tensor([r for r, _ in pairs], dtype=torch.long, device=device)
    ups = torch.tensor([a for _, a in pairs], dtype=torch.long, device=device)
    D, E, L, R = _factors(block, model, sae_up, sae_down, feats[rows])
    # V at each pair: (H1, n_pairs).
    v = torch.cat([(D[ups] * E).sum(-1)[None], (L[:, ups] * R).sum(-1)])
    series, active = [], []
    for i, batch in enumerate(batches):
        if i < len(cache):
            p = _expand(cache[i])
        else:
            p = _clean_pass(model, block, sae_up, sae_down, up, down, feats, batch, up_read)
        active.append(p.z_up.sum(1).double().cpu())
        y = _mixed(p, p.fire[..., rows])  # (B, H1, T, n_pairs)
        z = p.z_up[..., ups]  # (B, T, n_pairs)
        c = torch.einsum("bhtp,btp->bhp", y.double(), z.double())  # (B, H1, n_pairs)
        series.append((c * v[None]).sum(1).cpu())  # (B, n_pairs)
    return torch.cat(series).t().contiguous(), torch.cat(active)
