"""Run a model from a site onward with the site's value replaced, never rerunning what lies below.

Fidelity and ablation ask the same question many times: "what does the model output when the
activation at this site is x' instead of x?" A plain loop reruns the whole model for every x'.
`SiteReplay` runs the clean pass once and records the outputs of the *maximal submodules that
complete before the site is produced and are not its ancestors* (for the site
`encoder.layer.3.output` of a BERT: `embeddings`, `encoder.layer.0` ... `encoder.layer.3`; for
`encoder.layer.3.intermediate.output`, also `encoder.layer.3.attention`). A replay then calls
the model with those modules' `forward` temporarily replaced by functions that return the
recorded outputs, repeated along the batch for a batch of D replacements, so only the site's
remainder and the layers above it run. The plan is found once, structurally, by a dry run on a
tiny input (the order in which module hooks fire), so it works for any PyTorch model whose
forward calls each of those modules once; module hooks still fire on a replaced forward, which
is how the site's new value is put in (`patch_site`).

>>> replay = SiteReplay(loaded, "encoder.layer.3.output")                  # doctest: +SKIP
>>> cache = replay.record(input_ids=ids, attention_mask=mask)             # clean pass
>>> hidden = replay.replay(cache, new_values)    # new_values [D * batch, seq, width]

Rows of a replay are direction-major: row `d * batch + b` is example `b` under replacement `d`.

This module also holds what both analyses read off a forward pass: examples tokenized like a
harvest (`encode_examples`, `pad_examples`), the sentence-transformers mean pooling, the
next-token logits of a base causal LM (`next_token_logits`) and `is_causal`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from polysemy.models.sites import (
    ModelLike,
    Site,
    _dry_inputs,
    _module,
    get_site,
    patch_site,
)


@dataclass
class ReplayCache:
    """What a clean pass left for replays of one batch of examples."""

    inputs: dict[str, Tensor]
    """The model's keyword inputs (`input_ids`, `attention_mask`), `[batch, seq]` each."""
    outputs: dict[str, Any]
    """Module name -> its recorded output (the modules of `SiteReplay.plan`)."""
    site: Float[Tensor, "batch seq width"]
    """The clean value at the site."""
    last_hidden: Float[Tensor, "batch seq d_model"]
    """The clean last hidden state."""

    @property
    def batch(self) -> int:
        return int(self.site.shape[0])


def plan_replay(model: ModelLike, site: str | Site) -> tuple[str, ...]:
    """Names of the maximal submodules that complete before `site` is produced and are not its
    ancestors, each called once per forward pass, in forward order (found by a dry run)."""
    module = _module(model)
    resolved = get_site(model, site)
    order: list[tuple[str, str]] = []  # (event, module name), event "pre" or "post"
    calls: dict[str, int] = {}
    handles = []
    for name, sub in module.named_modules():
        if not name:
            continue
        handles.append(
            sub.register_forward_pre_hook(lambda m, a, name=name: order.append(("pre", name)))
        )
        handles.append(
            sub.register_forward_hook(lambda m, a, o, name=name: order.append(("post", name)))
        )
    try:
        with torch.inference_mode():
            _call(module, _dry_inputs(module))
    finally:
        for h in handles:
            h.remove()
    for event, name in order:
        if event == "post":
            calls[name] = calls.get(name, 0) + 1
    site_event = ("post" if resolved.direction == "output" else "pre", resolved.module)
    if site_event not in order:
        raise ValueError(f"site {resolved.name!r} is never reached by a forward pass")
    before = order[: order.index(site_event) + 1]
    done = [name for event, name in before if event == "post" and calls.get(name) == 1]
    # Ancestors of the site are not done when it is produced, so they never appear in `done`;
    # keep only the outermost of what is.
    done_set = set(done)
    maximal = [
        name
        for name in done
        if not any(name.startswith(other + ".") for other in done_set if other != name)
    ]
    return tuple(maximal)


def _call(module: nn.Module, inputs: dict[str, Tensor]) -> Any:
    kwargs: dict[str, Any] = dict(inputs)
    # A key-value cache would be filled by layers whose forward a replay skips.
    if "use_cache" in inspect.signature(module.forward).parameters:
        kwargs["use_cache"] = False
    try:
        return module(**kwargs)
    except TypeError:
        return module(input_ids=inputs["input_ids"])


def _last_hidden(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, Tensor):
        return hidden
    return output[0]


def _repeat(value: Any, batch: int, times: int) -> Any:
    """`value` with every tensor whose leading dim is `batch` repeated `times` along it
    (direction-major); other tensors (position tables, `[1, ...]` masks) broadcast as they are."""
    if isinstance(value, Tensor):
        if times == 1 or value.dim() == 0 or value.shape[0] != batch:
            return value.clone() if value.dim() and value.shape[0] == batch else value
        return value.repeat(times, *([1] * (value.dim() - 1)))
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_repeat(v, batch, times) for v in value)
    if isinstance(value, list):
        return [_repeat(v, batch, times) for v in value]
    if isinstance(value, dict):
        items = {k: _repeat(v, batch, times) for k, v in value.items()}
        return type(value)(**items) if type(value) is not dict else items
    return value


def _detach(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_detach(v) for v in value)
    if isinstance(value, list):
        return [_detach(v) for v in value]
    return value


class SiteReplay:
    """Clean passes that remember what lies below a site, and replays from the site onward.

    `record` runs the model once on a batch and returns a `ReplayCache`; `replay` runs the
    model on `D * batch` rows whose site value is given, with the planned lower modules
    answering from the cache (`plan`: see `plan_replay`). The model must be in eval mode
    (dropout would make the clean and the replayed passes differ).
    """

    def __init__(self, model: ModelLike, site: str | Site) -> None:
        self.model = _module(model)
        self.site = get_site(model, site)
        if not self.site.per_token:
            raise ValueError(
                f"site {self.site.name!r} has one vector per sequence; fidelity and ablation "
                "need a per-token site (e.g. a layer's output)"
            )
        self.plan = plan_replay(model, self.site)

    @torch.inference_mode()
    def record(self, **inputs: Tensor) -> ReplayCache:
        """The clean forward pass on `inputs`, remembering the planned modules' outputs."""
        outputs: dict[str, Any] = {}
        captured: dict[str, Tensor] = {}
        handles = []
        for name in self.plan:
            sub = self.model.get_submodule(name)
            handles.append(
                sub.register_forward_hook(
                    lambda m, a, o, name=name: outputs.__setitem__(name, _detach(o))
                )
            )

        def read(value: Tensor) -> Tensor:
            captured["site"] = value.detach().clone()
            return value

        with contextlib.ExitStack() as stack:
            for h in handles:
                stack.callback(h.remove)
            stack.enter_context(patch_site(self.model, self.site, read))
            hidden = _last_hidden(_call(self.model, inputs))
        return ReplayCache(dict(inputs), outputs, captured["site"], hidden.detach())

    @torch.inference_mode()
    def replay(
        self, cache: ReplayCache, values: Float[Tensor, "rows seq width"]
    ) -> Float[Tensor, "rows seq d_model"]:
        """Last hidden state of the model on `values.shape[0] = D * batch` rows whose site
        value is `values` (row `d * batch + b` is example `b`), run from the site onward."""
        batch = cache.batch
        if values.dim() != 3 or values.shape[0] % batch or values.shape[1:] != cache.site.shape[1:]:
            raise ValueError(
                f"values must have shape (D * {batch}, {cache.site.shape[1]}, "
                f"{cache.site.shape[2]}); got {tuple(values.shape)}"
            )
        times = values.shape[0] // batch
        inputs = {k: _repeat(v, batch, times) for k, v in cache.inputs.items()}
        with self._answering_from(cache, times), patch_site(self.model, self.site, values):
            return _last_hidden(_call(self.model, inputs))

    @contextlib.contextmanager
    def _answering_from(self, cache: ReplayCache, times: int) -> Iterator[None]:
        replaced: list[nn.Module] = []
        try:
            for name in self.plan:
                sub = self.model.get_submodule(name)
                recorded = cache.outputs[name]

                def answer(*args: Any, recorded: Any = recorded, **kwargs: Any) -> Any:
                    return _repeat(recorded, cache.batch, times)

                # An instance attribute shadows the class's forward; hooks still run around it.
                sub.forward = answer  # type: ignore[method-assign]
                replaced.append(sub)
            yield
        finally:
            for sub in replaced:
                del sub.forward


# ---- examples: text -> padded batches, as a harvest tokenizes them -------------------------


class Example(NamedTuple):
    """One tokenized example: its ids (special tokens included) and which are text tokens."""

    ids: list[int]
    text: list[bool]
    """True at text tokens (the rows an SAE harvested from this site was trained on)."""


def encode_examples(
    tokenizer: Any, documents: Sequence[str], *, seq_len: int, min_tokens: int = 1
) -> list[Example]:
    """Each document's first `seq_len` tokens (special tokens included) as one example, wrapped
    in the tokenizer's special tokens like a harvested sequence; documents with fewer than
    `min_tokens` text tokens are skipped."""
    from polysemy.activations.harvest import special_template

    prefix, suffix, _ = special_template(tokenizer)
    room = seq_len - len(prefix) - len(suffix)
    if room < 1:
        raise ValueError(
            f"seq_len must be > {len(prefix) + len(suffix)} (the special tokens); got {seq_len}"
        )
    encoded = tokenizer(list(documents), add_special_tokens=False, verbose=False)["input_ids"]
    out = []
    for ids in encoded:
        ids = list(ids)[:room]
        if len(ids) < min_tokens:
            continue
        out.append(
            Example(
                prefix + ids + suffix,
                [False] * len(prefix) + [True] * len(ids) + [False] * len(suffix),
            )
        )
    return out


class PaddedBatch(NamedTuple):
    input_ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    text: Bool[Tensor, "batch seq"]
    """True at text tokens."""


def pad_examples(examples: Sequence[Example], pad: int, device: Any = "cpu") -> PaddedBatch:
    """Right-padded batch of `examples` (padding masked out; text tokens flagged)."""
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    text = torch.zeros((len(examples), width), dtype=torch.bool)
    for row, e in enumerate(examples):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        mask[row, : len(e.ids)] = 1
        text[row, : len(e.ids)] = torch.tensor(e.text)
    return PaddedBatch(ids.to(device), mask.to(device), text.to(device))


def pad_id(tokenizer: Any) -> int:
    from polysemy.activations.harvest import special_template

    return special_template(tokenizer)[2]


# ---- what the analyses read off the last hidden state --------------------------------------


def mean_pool(
    hidden: Float[Tensor, "rows seq d_model"], mask: Int[Tensor, "rows seq"]
) -> Float[Tensor, "rows d_model"]:
    """The sentence-transformers recipe: mean of the last hidden states over attended tokens."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (rows, seq, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def unembedding(model: ModelLike) -> Float[Tensor, "vocab d_model"]:
    """The matrix that turns a causal LM's last hidden state into next-token logits: its output
    embedding when it has one, else the untied head `load_model` kept beside a base model,
    else (a base model such as `GPT2Model` of a tied LM) its tied input embedding."""
    from polysemy.models.loading import UNTIED_HEAD

    module = _module(model)
    head = getattr(module, UNTIED_HEAD, None)
    get_out = getattr(module, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    if out is not None:
        return out.weight
    if isinstance(head, Tensor):
        return head
    get_in = getattr(module, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    if emb is None:
        raise ValueError(f"model {type(module).__name__} has no input or output embedding")
    return emb.weight


def next_token_logits(
    hidden: Float[Tensor, "rows seq d_model"], unembed: Float[Tensor, "vocab d_model"]
) -> Float[Tensor, "rows seq vocab"]:
    return hidden @ unembed.T


@torch.inference_mode()
def is_causal(model: ModelLike) -> bool:
    """True when a later token cannot change an earlier one's last hidden state (probed on a
    tiny input: the last token is changed and the first position compared)."""
    module = _module(model)
    inputs = _dry_inputs(module)
    other = {k: v.clone() for k, v in inputs.items()}
    other["input_ids"][:, -1] += 1  # dry ids stay 5 below the vocabulary's end
    first = _last_hidden(_call(module, inputs))[:, 0]
    second = _last_hidden(_call(module, other))[:, 0]
    return bool(torch.allclose(first, second, atol=1e-6, rtol=1e-5))


def take_examples(
    tokenizer: Any, documents: Any, n: int, *, seq_len: int, min_tokens: int = 1
) -> list[Example]:
    """The first `n` usable documents of `documents` as examples; ParameterError naming
    `examples` when there are fewer."""
    from polysemy.validation import ParameterError

    if tokenizer is None:
        raise ValueError("model has no tokenizer; fidelity and ablation need one")
    out: list[Example] = []
    group: list[str] = []
    for text in documents:
        if not isinstance(text, str):
            raise TypeError(f"documents must be strings; got {type(text).__name__}")
        group.append(text)
        if len(group) == 256:
            out += encode_examples(tokenizer, group, seq_len=seq_len, min_tokens=min_tokens)
            group = []
            if len(out) >= n:
                break
    if group and len(out) < n:
        out += encode_examples(tokenizer, group, seq_len=seq_len, min_tokens=min_tokens)
    if len(out) < n:
        raise ParameterError(
            "examples",
            f"at most {len(out)}, the usable documents (>= {min_tokens} text tokens) the "
            "corpus holds",
            n,
        )
    return out[:n]


def sae_width(sae: Any) -> int:
    """The `d_in` of an SAE-like object (attribute, config or decoder shape)."""
    for value in (
        getattr(sae, "d_in", None),
        getattr(getattr(sae, "config", None), "d_in", None),
    ):
        if value is not None:
            return int(value)
    if hasattr(sae, "W_dec"):
        return int(sae.W_dec.shape[1])
    raise ValueError(f"sae must have d_in or W_dec; got {type(sae).__name__}")


def sae_site(sae: Any, site: str | None) -> str:
    """`site`, or the site the SAE was harvested from (its checkpoint's `source.site`)."""
    if site is not None:
        return site
    meta = getattr(sae, "metadata", None) or {}
    found = (meta.get("source") or {}).get("site") if isinstance(meta, dict) else None
    if not found:
        from polysemy.validation import ParameterError

        raise ParameterError("site", "given (the SAE's checkpoint does not record one)", None)
    return str(found)


def check_sae_fits(sae: Any, site: Site) -> None:
    d_in = sae_width(sae)
    if d_in != site.width:
        from polysemy.validation import ParameterError

        raise ParameterError(
            "sae", f"an SAE with d_in={site.width} (the width of site {site.name!r})", d_in
        )


def resolve_site(model: ModelLike, name: str | None) -> Site:
    """The site called `name`; ParameterError naming `site` when it is missing or unknown."""
    from polysemy.validation import ParameterError

    if name is None:
        raise ParameterError("site", "given (no SAE checkpoint records one here)", None)
    try:
        return get_site(model, name)
    except ValueError as exc:
        hint = str(exc).split("; ", 1)[-1]
        raise ParameterError("site", f"a site of the model ({hint})", name) from None
