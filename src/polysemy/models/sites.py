"""Name every hookable activation of a model, and read, patch or ablate it through hooks.

A *site* is one tensor inside the forward pass, named by the path of the module that makes
or takes it plus `.output` or `.input`:

- `encoder.layer.3.output`: what layer 3 of a BERT returns, the residual stream after it;
- `encoder.layer.3.intermediate.intermediate_act_fn.output`: the MLP activation after the
  GELU (width d_mlp);
- `encoder.layer.3.attention.output.input`: the attention heads' mixed values, before the
  output projection.

Sites are found by a dry run on a tiny input (so widths are measured, not guessed), listed
in the order the forward pass produces them. A module output that is a tuple (some
attention blocks return `(hidden, weights)`) is represented by its first element. Modules
called more than once per forward pass are not listed: their name would not say which call.

Every hook lives in a context manager that removes it on exit, error or not:

>>> with read_sites(model, ["encoder.layer.3.output"], early_exit=True) as reader:  # doctest: +SKIP
...     acts = reader.run(input_ids=ids, attention_mask=mask)["encoder.layer.3.output"]
>>> with ablate_site(model, "encoder.layer.1.output", mode="zero"):                 # doctest: +SKIP
...     out = model(input_ids=ids)

With `early_exit`, the forward pass stops right after the last site it needs, so layers
after it cost nothing; the values are the same as a full forward pass's.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from polysemy.models.loading import LoadedModel

logger = logging.getLogger(__name__)

Direction = Literal["input", "output"]
AblationMode = Literal["zero", "mean", "direction"]
_DRY_BATCH, _DRY_SEQ = 2, 7


@dataclass(frozen=True)
class Site:
    """One named activation of a model, as measured by a dry run."""

    name: str
    """Stable name: module path + `.input` or `.output`, e.g. `encoder.layer.3.output`."""
    module: str
    """Path of the module whose hook reads it (`model.get_submodule(module)`)."""
    direction: Direction
    """`output`: what the module returns; `input`: its first positional tensor argument."""
    width: int
    """Size of the last dimension (d_in of a store harvested from this site)."""
    per_token: bool
    """True for `[batch, seq, width]` activations (one row per token; harvestable)."""
    index: int
    """Position in the forward pass: sites with a higher index are computed later."""
    module_type: str
    """Class name of the module, e.g. `BertLayer`, `GELUActivation`."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ModelLike = nn.Module | LoadedModel


def _module(model: ModelLike) -> nn.Module:
    if isinstance(model, LoadedModel):
        return model.model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch nn.Module or LoadedModel; got {type(model).__name__}"
        )
    return model


# One dry run per model object: site listing is called by every read/patch/ablate.
_SITE_CACHE: dict[int, tuple[Any, list[Site]]] = {}


def list_sites(model: ModelLike) -> list[Site]:
    """Every hookable activation of `model`, in forward order, widths measured by a dry run.

    The dry run feeds `input_ids` of shape [2, 7] (with an all-ones `attention_mask` when the
    model takes one). Only floating tensors whose leading dims are `[batch]` or
    `[batch, seq]` are sites; attention-weight maps and position tables are not.
    """
    module = _module(model)
    cached = _SITE_CACHE.get(id(module))
    if cached is not None and cached[0]() is module:
        return list(cached[1])
    sites = _dry_run(module)
    _SITE_CACHE[id(module)] = (weakref.ref(module), sites)
    return list(sites)


def _dry_inputs(module: nn.Module) -> dict[str, Tensor]:
    config = getattr(module, "config", None)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    device = _device_of(module)
    # Ids from the middle of the vocabulary: never padding, valid for any vocab > 10.
    ids = torch.arange(_DRY_BATCH * _DRY_SEQ, device=device).reshape(_DRY_BATCH, _DRY_SEQ)
    ids = (ids % max(vocab - 10, 1)) + (5 if vocab > 10 else 0)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


# Keyword names under which a module may take its input tensor, in the order they are tried:
# the dry run reads an `.input` site from the same key that patch_site later replaces.
_INPUT_KWARGS = ("hidden_states", "input", "x", "inputs_embeds")


def _input_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
    if args and isinstance(args[0], Tensor):
        return args[0]
    for key in _INPUT_KWARGS:
        if isinstance(kwargs.get(key), Tensor):
            return kwargs[key]
    return None


def _dry_run(module: nn.Module) -> list[Site]:
    events: list[tuple[str, str, Direction, Tensor | None]] = []
    calls: dict[tuple[str, Direction], int] = {}
    handles = []

    def pre_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            calls[(name, "input")] = calls.get((name, "input"), 0) + 1
            events.append((name, type(mod).__name__, "input", _input_tensor(args, kwargs)))

        return hook

    def fwd_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            calls[(name, "output")] = calls.get((name, "output"), 0) + 1
            events.append((name, type(mod).__name__, "output", _first_tensor(output)))

        return hook

    try:
        for name, sub in module.named_modules():
            if not name:
                continue  # the model itself: its output is a ModelOutput, not an activation
            handles.append(sub.register_forward_pre_hook(pre_hook(name), with_kwargs=True))
            handles.append(sub.register_forward_hook(fwd_hook(name)))
        inputs = _dry_inputs(module)
        with torch.inference_mode():
            try:
                module(**inputs)
            except TypeError:
                module(input_ids=inputs["input_ids"])
    except Exception as exc:
        raise ValueError(
            f"cannot list sites of {type(module).__name__}: its dry forward pass on "
            f"input_ids [{_DRY_BATCH}, {_DRY_SEQ}] failed ({type(exc).__name__}: {exc}); "
            "polysemy supports encoder-only and decoder-only transformers"
        ) from exc
    finally:
        for h in handles:
            h.remove()

    sites: list[Site] = []
    seen: set[str] = set()
    for name, type_name, direction, tensor in events:
        site_name = f"{name}.{direction}"
        if site_name in seen or calls[(name, direction)] != 1:
            continue
        seen.add(site_name)
        if tensor is None or not tensor.is_floating_point() or tensor.dim() not in (2, 3):
            continue
        if tensor.shape[0] != _DRY_BATCH:
            continue
        per_token = tensor.dim() == 3 and tensor.shape[1] == _DRY_SEQ
        if tensor.dim() == 3 and not per_token:
            continue
        sites.append(
            Site(
                name=site_name,
                module=name,
                direction=direction,
                width=int(tensor.shape[-1]),
                per_token=per_token,
                index=len(sites),
                module_type=type_name,
            )
        )
    return sites


def get_site(model: ModelLike, site: str | Site) -> Site:
    """The `Site` called `site`; ValueError listing the closest names when there is none."""
    if isinstance(site, Site):
        return site
    if not isinstance(site, str):
        raise TypeError(f"site must be a site name (str) or Site; got {type(site).__name__}")
    sites = list_sites(model)
    by_name = {s.name: s for s in sites}
    if site in by_name:
        return by_name[site]
    close = difflib.get_close_matches(site, list(by_name), n=5, cutoff=0.6)
    if not close:
        close = [s.name for s in sites if s.name.startswith(site.rsplit(".", 1)[0])][:5]
    hint = f"close matches: {', '.join(close)}" if close else "run `polysemy sites` to list them"
    raise ValueError(f"unknown site {site!r} ({len(sites)} sites in this model); {hint}")


class _StopForward(Exception):
    """Raised from the hook of the last needed site to end the forward pass early."""


@dataclass
class SiteReader:
    """What `read_sites` yields: the captured values, and `run` to call the model."""

    model: nn.Module
    sites: tuple[Site, ...]
    early_exit: bool
    values: dict[str, Tensor] = field(default_factory=dict)
    """Site name -> the value captured by the last forward pass (after `select`)."""

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        """Call the model and return `values`; an early exit ends the call quietly."""
        self.values.clear()
        with contextlib.suppress(_StopForward):
            self.model(*args, **kwargs)
        missing = [s.name for s in self.sites if s.name not in self.values]
        if missing:
            raise RuntimeError(f"the forward pass never reached site(s) {missing}")
        return dict(self.values)


@contextlib.contextmanager
def _hooks(handles: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def read_sites(
    model: ModelLike,
    sites: Sequence[str | Site],
    *,
    early_exit: bool = False,
    select: Callable[[Tensor], Tensor] | None = None,
) -> Iterator[SiteReader]:
    """Capture the value of each site during forward passes run inside the block.

    `select` maps each captured tensor (e.g. `[batch, seq, width]`) to what is kept (for
    example the rows of real tokens); by default the tensor is detached and cloned, so later
    in-place ops of the model cannot change it. With `early_exit`, the hook of the site that
    is computed last raises a private exception that `SiteReader.run` swallows: use
    `reader.run(...)`, not `model(...)`, to call the model. Hooks are removed on exit.
    """
    module = _module(model)
    resolved = tuple(dict.fromkeys(get_site(model, s) for s in sites))
    if not resolved:
        raise ValueError("sites must name at least one site; got none")
    reader = SiteReader(model=module, sites=resolved, early_exit=early_exit)
    last = max(resolved, key=lambda s: s.index)
    keep = select if select is not None else (lambda t: t.detach().clone())

    def store(site: Site, value: Tensor | None) -> None:
        if value is None:
            raise RuntimeError(f"site {site.name!r} produced no tensor in this forward pass")
        reader.values[site.name] = keep(value)
        if early_exit and site is last:
            raise _StopForward

    handles: list[Any] = []
    with _hooks(handles):
        for site in resolved:
            sub = module.get_submodule(site.module)
            if site.direction == "output":
                handles.append(
                    sub.register_forward_hook(
                        lambda mod, args, out, site=site: store(site, _first_tensor(out))
                    )
                )
            else:
                handles.append(
                    sub.register_forward_pre_hook(
                        lambda mod, args, kwargs, site=site: store(
                            site, _input_tensor(args, kwargs)
                        ),
                        with_kwargs=True,
                    )
                )
        yield reader


@contextlib.contextmanager
def patch_site(
    model: ModelLike,
    site: str | Site,
    value: Tensor | Callable[[Tensor], Tensor],
) -> Iterator[Site]:
    """Replace a site's value in every forward pass inside the block.

    `value` is a tensor broadcastable to the site's activation (e.g. `[batch, seq, width]` or
    `[width]`), or a function from the activation to its replacement (same shape). For a
    module whose output is a tuple, its first element is replaced and the rest kept.
    """
    module = _module(model)
    resolved = get_site(model, site)
    sub = module.get_submodule(resolved.module)

    def replace(current: Tensor) -> Tensor:
        new = value(current) if callable(value) else value.to(current.dtype).expand_as(current)
        if not isinstance(new, Tensor) or new.shape != current.shape:
            got = tuple(new.shape) if isinstance(new, Tensor) else type(new).__name__
            raise ValueError(
                f"patch for site {resolved.name!r} must have shape "
                f"{tuple(current.shape)}; got {got}"
            )
        return new

    def out_hook(mod: nn.Module, args: Any, out: Any) -> Any:
        if isinstance(out, Tensor):
            return replace(out)
        first = _first_tensor(out)
        if first is None:
            return None
        return (
            type(out)((replace(first), *out[1:]))
            if isinstance(out, tuple)
            else [replace(first), *out[1:]]
        )

    def in_hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args and isinstance(args[0], Tensor):
            return (replace(args[0]), *args[1:]), kwargs
        for key in _INPUT_KWARGS:
            if isinstance(kwargs.get(key), Tensor):
                return args, {**kwargs, key: replace(kwargs[key])}
        return None

    if resolved.direction == "output":
        handle = sub.register_forward_hook(out_hook)
    else:
        handle = sub.register_forward_pre_hook(in_hook, with_kwargs=True)
    with _hooks([handle]):
        yield resolved


@contextlib.contextmanager
def ablate_site(
    model: ModelLike,
    site: str | Site,
    *,
    mode: AblationMode = "zero",
    mean: Float[Tensor, " width"] | None = None,
    direction: Float[Tensor, "*k width"] | None = None,
) -> Iterator[Site]:
    """Ablate a site inside the block: `zero` it, replace it by a `mean` vector, or remove
    its component along `direction` (one `[width]` vector or several `[k, width]`, projected
    out of the subspace they span)."""
    resolved = get_site(model, site)
    fn: Callable[[Tensor], Tensor]
    if mode == "zero":
        fn = torch.zeros_like
    elif mode == "mean":
        if mean is None or mean.shape != (resolved.width,):
            got = tuple(mean.shape) if mean is not None else None
            raise ValueError(f"mode='mean' needs mean of shape ({resolved.width},); got {got}")
        fn = lambda x: mean.to(x).expand_as(x).clone()  # noqa: E731
    elif mode == "direction":
        if (
            direction is None
            or direction.dim() not in (1, 2)
            or direction.shape[-1] != resolved.width
        ):
            got = tuple(direction.shape) if direction is not None else None
            raise ValueError(
                f"mode='direction' needs direction of shape ({resolved.width},) or "
                f"(k, {resolved.width}); got {got}"
            )
        # Orthonormal basis of the span, so several non-orthogonal directions are removed once.
        basis = torch.linalg.qr(direction.reshape(-1, resolved.width).double().T).Q.T  # (k, width)

        def fn(x: Tensor) -> Tensor:
            b = basis.to(x)
            return x - (x @ b.T) @ b  # (..., k) @ (k, width)
    else:
        raise ValueError(f"mode must be one of 'zero', 'mean', 'direction'; got {mode!r}")
    with patch_site(model, resolved, fn):
        yield resolved
