"""Edges between features: how much an upstream feature a moves a downstream feature b.

Two dictionaries at two sites of one model, `sae_up` at an earlier site U and `sae_down` at a
later site D. In one context c (a sentence), the edge from a to b is

    edge_c(a, b) = sum_s z_a(s) * (W_dec_up[a] . d pre_b / d h_U(s))

where z_a(s) is a's activation at text token s, h_U(s) the site's value there, and
pre_b = sum over the text tokens t where b fires of b's pre-activation `(h_D(t) - b_dec) @
W_enc[:, b] + b_enc[b]`. It is a's activation times the gradient of b's pre-activation with
respect to a's decoder direction, summed over the tokens a writes at.

The gradient is taken through a *linearised* model: attention patterns (every softmax, and
the softmax inside `scaled_dot_product_attention`) and LayerNorm scales (the 1/std of
`layer_norm` and `rms_norm`) are frozen at their values on the clean pass, so from U to D
only the values that attention mixes, the centring of LayerNorm and the MLPs (through their
local derivative at this context) carry the change. With no MLP between U and D the map is
then exactly linear, and edge_c(a, b) is a's share of b's pre-activation. Norms written by
hand (not through `torch.nn.functional`) are not frozen (`FrozenLinearisation`).

The reported weight is the mean of edge_c over contexts, with a percentile bootstrap interval
over contexts for the top edges; beside it the direct virtual weight W_dec_up[a] .
W_enc_down[:, b] (the edge through the residual stream alone, when U and D have one width),
and as the null the distribution of |weight| over every (a, b) pair computed.

Many b at once: the part of the model from U to D runs once per batch and the backward
passes of `chunk` downstream features run as one call vectorised by vmap (or, where an op
has no batching rule, on `chunk` copies of the batch, copy j asking for b_j); layers below U
run once per batch and answer from a cache (as in `SiteReplay`); downstream features silent
on a batch are skipped (their edges there are zero).
Running sums over contexts hold one `[n_down, d_sae_up]` matrix; the top `top_k` upstream
features of each downstream feature are kept, and a second pass over the contexts recomputes
the `top` strongest edges per context for their intervals.

Transcoders: upstream, z_a is encoded from the MLP's input (`site_up_in`, the checkpoint's
`source.site_in`) and U is the MLP's output (`site_up`, `source.site_out`), where W_dec[a]
lives; the clean pass is the real model's (the local replacement model: transcoder plus its
error is the MLP), and the skip term of a skip-transcoder is no feature (a constant at U).
Downstream, b's pre-activation is read at the transcoder's input site (docs/circuits.md).

Where one attention block (and norms) is all that lies between U and D in a BERT- or
GPT-2-like model (or U is the previous MLP's output), `method="auto"` computes the same
numbers without any backward pass (`circuits_factored`: the frozen map factors into
context-free weights times context sums).

>>> result = analyze_circuits(loaded, sae_up, sae_down, corpus)  # doctest: +SKIP
>>> result.edges[0]                                              # doctest: +SKIP
{'up': 12, 'down': 40, 'weight': 0.81, 'ci': {...}, 'virtual': 0.12, ...}
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from polysemy.analysis.braids import braid_scores
from polysemy.analysis.circuits_factored import (
    PatternNotFound,
    factored_series,
    factored_sums,
    frozen_sdpa_pattern,
)
from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.replay import (
    PaddedBatch,
    _call,
    _detach,
    _repeat,
    pad_examples,
    pad_id,
    plan_replay,
    resolve_site,
    sae_site,
    sae_width,
    take_examples,
)
from polysemy.analysis.stats import bootstrap_ci, quantiles
from polysemy.models.sites import Site, _module, _StopForward, patch_site, read_sites
from polysemy.progress import progress_bar
from polysemy.validation import ParameterError, check_choice, check_int, configured

logger = logging.getLogger(__name__)

LINEARISATION = (
    "attention patterns (softmax) and LayerNorm/RMSNorm scales frozen at the clean pass; "
    "MLPs differentiated at the context"
)


# ---- the linearisation ------------------------------------------------------------------------


def _frozen_sdpa(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """`scaled_dot_product_attention` with its pattern detached (eval mode: no dropout)."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        value = value.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
    pattern = frozen_sdpa_pattern(query, key, attn_mask, is_causal, scale, enable_gqa)
    return pattern.to(value.dtype) @ value


def _frozen_layer_norm(
    x: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    dims = tuple(range(-len(normalized_shape), 0))
    centred = x - x.mean(dims, keepdim=True)  # linear: the centring stays
    scale = torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + eps).detach()
    out = centred * scale
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _frozen_rms_norm(
    x: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    eps: float | None = None,
) -> Tensor:
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    out = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps).detach()
    return out if weight is None else out * weight


class FrozenLinearisation(TorchFunctionMode):
    """Inside the block, gradients see attention patterns and norm scales as constants.

    Values are unchanged (up to rounding): only what autograd records differs. Catches
    `softmax` (function, method and `torch.softmax`), `scaled_dot_product_attention`,
    `layer_norm` and `rms_norm` from `torch.nn.functional`.
    """

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in (F.softmax, torch.softmax, Tensor.softmax):
            return func(*args, **kwargs).detach()
        if func is F.scaled_dot_product_attention:
            return _frozen_sdpa(*args, **kwargs)
        if func is F.layer_norm:
            return _frozen_layer_norm(*args, **kwargs)
        if func is getattr(F, "rms_norm", None):
            return _frozen_rms_norm(*args, **kwargs)
        return func(*args, **kwargs)


# ---- config and result ------------------------------------------------------------------------


@dataclass(frozen=True)
class CircuitsConfig:
    """Which sites, contexts and downstream features `analyze_circuits` reads."""

    site_up: str | None = None
    """Site of the upstream SAE (None: the site its checkpoint was harvested from)."""
    site_down: str | None = None
    """Site of the downstream SAE, later in the forward pass (None: its checkpoint's; for a
    transcoder, the site it reads, `source.site_in`)."""
    site_up_in: str | None = None
    """Upstream transcoder only: the site its latents are encoded from, the MLP's input (None:
    its checkpoint's `source.site_in`); `site_up` is then where its decoder rows are written,
    the MLP's output (None: `source.site_out`)."""
    examples: int = 256
    """Contexts: sentences (corpus documents, first `seq_len` tokens each); fewer is an error."""
    seq_len: int = 64
    """Tokens per sentence, special tokens included (longer documents are cut)."""
    batch_size: int = 8
    """Sentences per forward pass (memory, not results)."""
    chunk: int = 32
    """Downstream features whose backward passes run as one vectorised call (memory and
    speed, not results)."""
    features_down: tuple[int, ...] = ()
    """Downstream features to draw edges into (empty: every feature of `sae_down`)."""
    top_k: int = 8
    """Upstream features kept per downstream feature, by |mean edge weight|."""
    top: int = 50
    """Strongest edges overall reported with bootstrap intervals over contexts."""
    resamples: int = 1000
    """Bootstrap resamples of each reported edge's interval."""
    seed: int = 0
    """Seed of the bootstrap."""
    shuffles: int = 50
    """Shuffles of the contexts for the braids' null (`analysis.braids`, over the `top`
    edges)."""
    braid_features: int = 16
    """Upstream features that describe a context for the braids: its `braid_features` most
    active ones by activation summed over its tokens (not every feature active anywhere in
    it: on real text a sentence holds hundreds, and no two sentences' sets overlap enough to
    cluster)."""
    frozen: bool = True
    """Freeze attention patterns and norm scales (the linearisation above); False takes the
    plain gradient (a control: the calibration shows what it leaks)."""
    method: Literal["auto", "factored", "autograd"] = "auto"
    """How edges are computed: `factored` (exact and fast, when one attention block and
    norms are all that lies between the sites of a BERT- or GPT-2-like model: no backward
    pass, docs/circuits.md), `autograd` (backward passes, any model), `auto` (factored where
    it applies)."""
    ablate: int = 0
    """Strongest of the `top` edges also ablated in the real model across contexts, the
    causal check of an edge (`analysis.edge_ablation`); 0: none."""
    ablate_random: int = 20
    """Random directions, and random edges into the same b from equally active features, per
    ablated edge: the two nulls the ablation effect is judged against."""

    def __post_init__(self) -> None:
        check_int("examples", self.examples, least=2)
        check_int("seq_len", self.seq_len, least=3)
        check_int("batch_size", self.batch_size, least=1)
        check_int("chunk", self.chunk, least=1)
        if not isinstance(self.features_down, tuple):
            raise ParameterError("features_down", "a tuple of feature indices", self.features_down)
        for b in self.features_down:
            check_int("features_down", b, least=0)
        check_int("top_k", self.top_k, least=1)
        check_int("top", self.top, least=1)
        check_int("resamples", self.resamples, least=100)
        check_int("seed", self.seed, least=0)
        check_int("shuffles", self.shuffles, least=1)
        check_int("braid_features", self.braid_features, least=1)
        check_choice("method", self.method, ("auto", "factored", "autograd"))
        check_int("ablate", self.ablate, least=0)
        check_int("ablate_random", self.ablate_random, least=2)


@dataclass(frozen=True)
class CircuitsResult:
    """Edges from `sae_up`'s features into `sae_down`'s, averaged over contexts."""

    features_down: Tensor
    """`[n_down]` int64: the downstream features analysed."""
    top_up: Tensor
    """`[n_down, top_k]` int64: each one's strongest upstream features, by |weight|."""
    top_weight: Tensor
    """`[n_down, top_k]` float64: their mean edge weights over contexts."""
    top_virtual: Tensor | None
    """`[n_down, top_k]`: the direct virtual weights W_dec_up[a] . W_enc_down[:, b] (None
    when the two sites differ in width)."""
    edges: list[dict[str, Any]]
    """The `top` strongest edges: up, down, weight, ci (bootstrap over contexts), virtual,
    contexts (where the edge is non-zero), verdict."""
    null_abs_weight: dict[str, float]
    """Quantiles of |weight| over every (a, b) pair computed: the reference an edge is
    strong against."""
    braids: dict[str, Any]
    """`analysis.braids` over the `top` edges: `braided_fraction`, `ci`, `null_ci`, and the
    clusters of each edge in `edges`' order."""
    contexts: int
    site_up: str
    site_down: str
    frozen: bool
    path: str | None
    method: str = "autograd"
    """`factored` or `autograd`: how the edges were computed (the same numbers either way)."""
    ablation: dict[str, Any] | None = None
    """`analysis.edge_ablation` over the first `ablate` edges (None when not asked)."""
    site_up_in: str | None = None
    """An upstream transcoder's input site, where its latents are encoded (None: an SAE,
    encoded at `site_up`)."""

    def summary(self) -> dict[str, Any]:
        """The `--json` object."""
        return {
            "contexts": self.contexts,
            "site_up": self.site_up,
            **({} if self.site_up_in is None else {"site_up_in": self.site_up_in}),
            "site_down": self.site_down,
            "n_down": int(self.features_down.numel()),
            "top_k": int(self.top_up.shape[1]),
            "linearisation": LINEARISATION if self.frozen else "none (plain gradient)",
            "method": self.method,
            "edges": self.edges,
            "braids": self.braids,
            "null": {"kind": "|weight| over every (a, b) pair", "quantiles": self.null_abs_weight},
            **({} if self.ablation is None else {"ablation": self.ablation}),
        }


# ---- the passes -------------------------------------------------------------------------------


@dataclass
class _Cache:
    inputs: dict[str, Tensor]
    outputs: dict[str, Any]
    h_up: Tensor  # (B, T, d_U)
    z_up: Tensor  # (B, T, d_sae_up), zero off text tokens
    active_down: Tensor  # (B, T, d_sae_down) bool, b fires at a text token


class _Edges:
    """Per-batch edges through the frozen model, many downstream features per backward."""

    def __init__(
        self,
        model: nn.Module,
        sae_up: Any,
        sae_down: Any,
        up: Site,
        down: Site,
        frozen: bool,
        up_read: Site | None = None,
    ) -> None:
        self.model, self.sae_up, self.sae_down = model, sae_up, sae_down
        self.up, self.down, self.frozen = up, down, frozen
        # Where the upstream latents are encoded from: U itself for an SAE, the MLP's input
        # for a transcoder (whose decoder rows are written at U, the MLP's output).
        self.up_read = up if up_read is None else up_read
        self.vmap = True  # vectorise the backward passes; False after one failure
        self.plan = plan_replay(model, up)

    @torch.no_grad()
    def record(self, batch: PaddedBatch) -> _Cache:
        outputs: dict[str, Any] = {}
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        handles = [
            self.model.get_submodule(name).register_forward_hook(
                lambda m, a, o, name=name: outputs.__setitem__(name, _detach(o))
            )
            for name in self.plan
        ]
        try:
            with (
                read_sites(
                    self.model, [self.up_read, self.up, self.down], early_exit=True
                ) as reader,
                contextlib.suppress(_StopForward),
            ):
                _call(self.model, inputs)
        finally:
            for h in handles:
                h.remove()
        h_up, h_down = reader.values[self.up.name], reader.values[self.down.name]
        h_read = reader.values[self.up_read.name]
        text = batch.text[..., None]  # (B, T, 1)
        z_up = self.sae_up.encode(h_read.flatten(0, 1)).view(*h_up.shape[:2], -1) * text
        z_down = self.sae_down.encode(h_down.flatten(0, 1)).view(*h_down.shape[:2], -1)
        return _Cache(inputs, outputs, h_up, z_up, (z_down > 0) & text)

    @contextlib.contextmanager
    def _answering(self, cache: _Cache, times: int) -> Iterator[None]:
        batch = cache.h_up.shape[0]
        replaced: list[nn.Module] = []
        try:
            for name in self.plan:
                sub = self.model.get_submodule(name)

                def answer(*a: Any, recorded: Any = cache.outputs[name], **k: Any) -> Any:
                    return _repeat(recorded, batch, times)

                sub.forward = answer  # type: ignore[method-assign]
                replaced.append(sub)
            yield
        finally:
            for sub in replaced:
                del sub.forward

    def run(self, cache: _Cache, features: Tensor) -> Tensor:
        """`[n_b, B, d_sae_up]`: edge_c(a, b) for each b of `features`, context and a."""
        n_b = int(features.numel())
        B, T, d_up = cache.h_up.shape
        # d pre_b / d h_D(t) = W_enc[:, b] at the text tokens where b fires, else 0.
        w = self.sae_down.W_enc.detach()[:, features].t()  # (n_b, d_D)
        mask = cache.active_down[..., features].permute(2, 0, 1)  # (n_b, B, T)
        grad_out = mask[..., None].to(w.dtype) * w[:, None, None, :]  # (n_b, B, T, d_D)
        grad = None
        if self.vmap:
            try:  # one forward, n_b backward passes vectorised by vmap
                values, h_down = self._forward(cache, 1)
                (grad,) = torch.autograd.grad(h_down, values, grad_out, is_grads_batched=True)
            except RuntimeError as exc:  # an op without a batching rule: copies instead
                logger.info("circuits: vmap over backward failed (%s); using copies", exc)
                self.vmap = False
        if grad is None:  # n_b copies of the batch, one backward
            values, h_down = self._forward(cache, n_b)
            (grad,) = torch.autograd.grad(h_down, values, grad_out.reshape(h_down.shape))
        proj = grad.view(n_b, B, T, d_up) @ self.sae_up.W_dec.detach().t()  # (n_b, B, T, d_sae_up)
        return (proj * cache.z_up[None]).sum(2)  # (n_b, B, d_sae_up)

    def _forward(self, cache: _Cache, times: int) -> tuple[Tensor, Tensor]:
        """(leaf at U `[times * B, T, d_U]`, its value at D) through the frozen model."""
        B = cache.h_up.shape[0]
        values = cache.h_up.repeat(times, 1, 1).requires_grad_(True)
        inputs = {k: _repeat(v, B, times) for k, v in cache.inputs.items()}
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            stack.enter_context(self._answering(cache, times))
            stack.enter_context(patch_site(self.model, self.up, values))
            reader = stack.enter_context(
                read_sites(self.model, [self.down], early_exit=True, select=lambda t: t)
            )
            if self.frozen:
                stack.enter_context(FrozenLinearisation())
            with contextlib.suppress(_StopForward):
                _call(self.model, inputs)
        return values, reader.values[self.down.name]


def _contexts(loaded: Any, texts: Any, config: CircuitsConfig, device: Any) -> list[PaddedBatch]:
    if isinstance(texts, Tensor):
        if texts.dim() != 2 or texts.dtype not in (torch.int32, torch.int64):
            raise ParameterError("texts", "a [contexts, seq] tensor of token ids", texts.shape)
        if texts.shape[0] < config.examples:
            raise ParameterError(
                "examples", f"at most {texts.shape[0]}, the contexts given", config.examples
            )
        ids = texts[: config.examples].long().to(device)
        ones = torch.ones_like(ids)
        return [
            PaddedBatch(
                ids[s : s + config.batch_size],
                ones[s : s + config.batch_size],
                ones[s : s + config.batch_size].bool(),
            )
            for s in range(0, ids.shape[0], config.batch_size)
        ]
    tokenizer = getattr(loaded, "tokenizer", None)
    examples = take_examples(tokenizer, texts, config.examples, seq_len=config.seq_len)
    pad = pad_id(tokenizer)
    return [
        pad_examples(examples[s : s + config.batch_size], pad, device)
        for s in range(0, len(examples), config.batch_size)
    ]


def _is_transcoder(sae: Any) -> bool:
    return bool(getattr(getattr(sae, "config", None), "is_transcoder", False))


def _recorded(sae: Any, given: str | None, keys: tuple[str, ...], parameter: str) -> str:
    """`given`, or the first of `keys` the checkpoint's `source` records."""
    if given is not None:
        return given
    meta = getattr(sae, "metadata", None) or {}
    source = (meta.get("source") or {}) if isinstance(meta, dict) else {}
    for key in keys:
        if source.get(key):
            return str(source[key])
    raise ParameterError(
        parameter, f"given (the checkpoint records no source.{keys[0]})", None
    )  # fmt: skip


def _resolve(loaded: Any, name: Callable[[], str], parameter: str) -> Site:
    try:
        return resolve_site(loaded, name())
    except ParameterError as exc:
        raise ParameterError(parameter, exc.expected, exc.got) from None


def circuit_sites(
    loaded: Any, sae_up: Any, sae_down: Any, config: CircuitsConfig
) -> tuple[Site, Site, Site]:
    """(up_read, up, down): where the upstream latents are encoded from, where its decoder
    rows are written, and where the downstream pre-activations are read. For an SAE up_read
    is up; for an upstream transcoder up_read is the MLP's input (`site_up_in`) and up its
    output (`site_up`); a downstream transcoder is read at its input. Widths and order are
    checked; ParameterError names `site_up`, `site_up_in`, `site_down`, `sae_up` or
    `sae_down`."""
    if _is_transcoder(sae_up):
        up = _resolve(loaded, lambda: _recorded(sae_up, config.site_up, ("site_out",), "site_up"),
                      "site_up")  # fmt: skip
        up_read = _resolve(
            loaded,
            lambda: _recorded(sae_up, config.site_up_in, ("site_in", "site"), "site_up_in"),
            "site_up_in",
        )  # fmt: skip
        if up_read.index > up.index:
            raise ParameterError(
                "site_up_in", f"a site computed before site_up {up.name!r}", up_read.name
            )  # fmt: skip
    else:
        if config.site_up_in is not None:
            raise ParameterError(
                "site_up_in", "left out for an SAE (it applies to transcoders)", config.site_up_in
            )  # fmt: skip
        up = _resolve(loaded, lambda: sae_site(sae_up, config.site_up), "site_up")
        up_read = up
    if _is_transcoder(sae_down):  # b's pre-activation is read at the MLP's input
        down = _resolve(
            loaded, lambda: _recorded(sae_down, config.site_down, ("site_in", "site"), "site_down"),
            "site_down",
        )  # fmt: skip
    else:
        down = _resolve(loaded, lambda: sae_site(sae_down, config.site_down), "site_down")
    if down.index <= up.index:
        raise ParameterError(
            "site_down", f"a site computed after site_up {up.name!r}", down.name
        )  # fmt: skip
    if not (up.per_token and down.per_token and up_read.per_token):
        raise ParameterError("site_up", "per-token sites (e.g. a layer's output)", up.name)
    _check_sae(sae_up, up_read, "sae_up", up)
    _check_sae(sae_down, down, "sae_down")
    return up_read, up, down


def _check_sae(sae: Any, site: Site, name: str, site_out: Site | None = None) -> None:
    """`sae` reads `site` (its d_in); an upstream transcoder also writes `site_out` (d_out)."""
    if sae_width(sae) != site.width:
        raise ParameterError(
            name, f"an SAE with d_in={site.width} (the width of site {site.name!r})",
            sae_width(sae),
        )  # fmt: skip
    if site_out is not None and int(sae.W_dec.shape[1]) != site_out.width:
        raise ParameterError(
            name, f"a transcoder with d_out={site_out.width} (the width of site {site_out.name!r})",
            int(sae.W_dec.shape[1]),
        )  # fmt: skip


def _factored_block(model: nn.Module, up: Site, down: Site, config: CircuitsConfig) -> Any:
    """The attention block the factored path reads, or None for the autograd path."""
    from polysemy.analysis.circuits_factored import attention_block

    if config.method == "autograd" or (config.method == "auto" and not config.frozen):
        return None
    block = attention_block(model, up, down)
    if config.method == "factored":
        if not config.frozen:
            raise ParameterError("method", "'autograd' or 'auto' with frozen=False", "factored")
        if block is None:
            raise ParameterError(
                "method", "'autograd' or 'auto' for these sites (the factored path needs one "
                "attention block between them in a BERT- or GPT-2-like model)", "factored",
            )  # fmt: skip
    return block


def _autograd_sums(
    edges: _Edges, feats: Tensor, batches: list[PaddedBatch], chunk: int, progress: bool
) -> Tensor:
    """`[n_down, d_up]` float64: edge_c summed over contexts, backward passes in chunks."""
    # A b silent on the whole batch has no edges there (its output gradient is zero), so
    # only the live ones run: with a sparse dictionary, a small share of d_sae per batch.
    sums = torch.zeros(int(feats.numel()), int(edges.sae_up.W_dec.shape[0]),
                       dtype=torch.float64, device=feats.device)  # fmt: skip
    backward_rows = 0
    bar = progress_bar(len(batches), desc="circuits", unit="batch", enabled=progress)
    for batch in batches:
        bar.update(1)
        cache = edges.record(batch)
        live = cache.active_down[..., feats].flatten(0, 1).any(0).nonzero().flatten()  # rows
        backward_rows += int(live.numel())
        for s in range(0, int(live.numel()), chunk):
            rows_ = live[s : s + chunk]
            sums[rows_] += edges.run(cache, feats[rows_]).sum(1).double()
    bar.close()
    logger.info("circuits: %d downstream features live per batch on average",
                backward_rows // max(len(batches), 1))  # fmt: skip
    return sums


def _autograd_series(
    edges: _Edges,
    feats: Tensor,
    batches: list[PaddedBatch],
    pairs: list[tuple[int, int]],
    chunk: int,
    contexts: int,
) -> tuple[Tensor, Tensor]:
    """(`[len(pairs), contexts]` edge_c of each (row of `feats`, upstream feature) pair,
    `[contexts, d_up]`: each upstream feature's activation summed over each context's tokens)."""
    device = feats.device
    d_up = int(edges.sae_up.W_dec.shape[0])
    chosen_rows = sorted({r for r, _ in pairs})
    per_context = torch.zeros(len(chosen_rows), contexts, d_up, dtype=torch.float64)
    active = torch.zeros(contexts, d_up, dtype=torch.float64)
    where = {r: i for i, r in enumerate(chosen_rows)}
    chosen = feats[torch.tensor(chosen_rows, dtype=torch.long, device=device)]
    pos = 0
    for batch in batches:
        cache = edges.record(batch)
        B = int(batch.input_ids.shape[0])
        active[pos : pos + B] = cache.z_up.sum(1).double().cpu()
        live = cache.active_down[..., chosen].flatten(0, 1).any(0).nonzero().flatten()
        for s in range(0, int(live.numel()), chunk):
            idx = live[s : s + chunk]
            values = edges.run(cache, chosen[idx]).double().cpu()  # (n, B, d_up)
            per_context[idx.cpu(), pos : pos + B] = values
        pos += B
    return torch.stack([per_context[where[r], :, a] for r, a in pairs]), active


def _sae_path(sae: Any) -> str | None:
    """The checkpoint folder an SAE was loaded from (`path`, or the CLI's `metadata["path"]`)."""
    path = getattr(sae, "path", None) or (getattr(sae, "metadata", None) or {}).get("path")
    return str(path) if path else None


def analyze_circuits(
    loaded: Any,
    sae_up: Any,
    sae_down: Any,
    texts: Any,
    config: CircuitsConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = False,
    **options: Any,
) -> CircuitsResult:
    """Edges from `sae_up`'s features into `sae_down`'s over the first `examples` documents of
    `texts` (a Corpus or strings, tokenized by `loaded.tokenizer`; or a `[contexts, seq]`
    tensor of token ids, every token a text token); with `out`, write a `circuits` analysis
    folder (`edges.json`, `edges.safetensors`). Raises ParameterError naming `site_up`,
    `site_down`, `sae_up`, `sae_down`, `features_down` or `examples`."""
    config = configured(CircuitsConfig, config, options)
    model = _module(loaded)
    up_read, up, down = circuit_sites(loaded, sae_up, sae_down, config)
    d_down = int(sae_down.W_dec.shape[0])
    bad = [b for b in config.features_down if b >= d_down]
    if bad:
        raise ParameterError("features_down", f"indices below d_sae={d_down}", bad[0])
    device = next(iter(model.parameters())).device
    batches = _contexts(loaded, texts, config, device)
    if out is not None:
        start_analysis(out, force=force)
    for sae in (sae_up, sae_down):
        if hasattr(sae, "eval"):
            sae.eval()
    feats = (
        torch.tensor(config.features_down, dtype=torch.long)
        if config.features_down
        else torch.arange(d_down)
    ).to(device)
    d_up = int(sae_up.W_dec.shape[0])
    block = _factored_block(model, up, down, config)
    edges = None
    if block is None:
        edges = _Edges(model, sae_up, sae_down, up, down, config.frozen, up_read)
    contexts = sum(int(b.input_ids.shape[0]) for b in batches)
    passes: list[Any] = []  # the factored path's clean passes, kept for pass 2
    if block is not None:
        try:
            sums = factored_sums(model, block, sae_up, sae_down, up, down, feats, batches,
                                 progress, cache=passes, up_read=up_read)  # fmt: skip
        except PatternNotFound:
            if config.method == "factored":
                raise
            logger.info("circuits: no attention pattern to read; using backward passes")
            block, passes = None, []
            edges = _Edges(model, sae_up, sae_down, up, down, config.frozen, up_read)
    if block is None:
        assert edges is not None
        sums = _autograd_sums(edges, feats, batches, config.chunk, progress)
    mean = sums / contexts  # (n_down, d_up)
    k = min(config.top_k, d_up)
    top_idx = mean.abs().topk(k, dim=1).indices  # (n_down, k)
    top_weight = mean.gather(1, top_idx)
    virtual = None
    if sae_up.W_dec.shape[1] == sae_down.W_enc.shape[0]:
        v = sae_up.W_dec.detach().double() @ sae_down.W_enc.detach().double()[:, feats]
        virtual = v.t().gather(1, top_idx)  # (n_down, k)
    null = quantiles(mean.abs().flatten().float())

    # Pass 2: per-context values of the `top` strongest kept edges, for their intervals.
    flat = top_weight.abs().flatten()
    order = flat.topk(min(config.top, flat.numel())).indices
    rows, cols = order // k, order % k
    pairs = [(r, int(top_idx[r, c])) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
    if block is not None:
        per_edge, active = factored_series(
            model, block, sae_up, sae_down, up, down, feats, batches, pairs, cache=passes,
            up_read=up_read,
        )  # fmt: skip
    else:
        assert edges is not None
        per_edge, active = _autograd_series(edges, feats, batches, pairs, config.chunk, contexts)
    report: list[dict[str, Any]] = []
    series_all: list[Tensor] = []
    for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        a, b = int(top_idx[r, c]), int(feats[r])
        series = per_edge[i]
        series_all.append(series)
        ci = bootstrap_ci(series, resamples=config.resamples, seed=config.seed)
        decided = ci.low > 0 or ci.high < 0
        report.append(
            {
                "up": a,
                "down": b,
                "weight": float(top_weight[r, c]),
                "ci": ci.to_dict(),
                "virtual": None if virtual is None else float(virtual[r, c]),
                "contexts": int((series != 0).sum()),
                "verdict": "effect" if decided else "inconclusive",
            }
        )
    braids = braid_scores(
        torch.stack(series_all), active, [e["up"] for e in report],
        salient=config.braid_features, shuffles=config.shuffles, seed=config.seed,
    ).summary()  # fmt: skip
    for e, clusters, braided in zip(
        report, braids.pop("clusters"), braids.pop("braided"), strict=True
    ):
        e["clusters"], e["braided"] = clusters, braided
    ablation = None
    if config.ablate:  # the causal check of the strongest edges (analysis.edge_ablation)
        from polysemy.analysis.edge_ablation import ablate_pairs

        n_ab = min(config.ablate, len(report))
        ablation = ablate_pairs(
            model, sae_up, sae_down, up, down, batches,
            [(e["up"], e["down"]) for e in report[:n_ab]],
            linear=torch.stack(series_all[:n_ab]), random=config.ablate_random,
            chunk=config.chunk, resamples=config.resamples, seed=config.seed, up_read=up_read,
        )  # fmt: skip
    result = CircuitsResult(
        features_down=feats.cpu(),
        top_up=top_idx.cpu(),
        top_weight=top_weight.cpu(),
        top_virtual=None if virtual is None else virtual.cpu(),
        edges=report,
        braids=braids,
        null_abs_weight={str(q): v for q, v in null.items()},
        contexts=contexts,
        site_up=up.name,
        site_down=down.name,
        frozen=config.frozen,
        path=None if out is None else str(out),
        method="autograd" if block is None else "factored",
        ablation=None if ablation is None else ablation.summary(),
        site_up_in=None if up_read is up else up_read.name,
    )
    if out is not None:
        tensors = {
            "features_down": result.features_down,
            "top_up": result.top_up,
            "top_weight": result.top_weight,
        }
        if result.top_virtual is not None:
            tensors["top_virtual"] = result.top_virtual
        if ablation is not None:
            tensors["ablation_effects"] = ablation.effects
            tensors["ablation_null"] = ablation.null
            tensors["ablation_null_edges"] = ablation.null_edges
            tensors["ablation_null_up"] = ablation.null_up
            tensors["ablation_coactive"] = ablation.coactive
        write_analysis(
            out,
            "circuits",
            inputs={
                "model": str(getattr(loaded, "name", type(model).__name__)),
                "site_up": up.name,
                **({} if up_read is up else {"site_up_in": up_read.name}),
                "site_down": down.name,
                # The checkpoints' folders, so readers (the explorer) can link an edge's
                # endpoints to those SAEs' feature pages.
                "sae_up": _sae_path(sae_up),
                "sae_down": _sae_path(sae_down),
                "corpus": str(getattr(texts, "name", "texts")),
                "contexts": contexts,
                "config": asdict(config),
            },
            summary={k: v for k, v in result.summary().items() if k != "edges"},
            files={"edges.json": report, "edges.safetensors": tensors},
        )
    return result
