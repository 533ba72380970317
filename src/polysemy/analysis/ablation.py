"""Ablation: remove a feature or a neuron at a site, per example, against random directions.

Each target is a direction d at the site and a coefficient v per text token with x ∋ v·d:
a feature f has d = W_dec[f] and v = z_f = encode(x)[f]; a neuron n has d = e_n and v = x_n.
An ablation adds a perturbation δ at the example's text tokens, and the model runs on from the
site (`SiteReplay`: lower layers never rerun; all replacements are batched):

    feature  remove       δ = -z_f W_dec[f]         (error term kept: x - z_f W_dec[f])
             project_out  δ = -(x·d̂) d̂,  d̂ = W_dec[f] / ||W_dec[f]||
             mean         δ = (z̄_f - z_f) W_dec[f]    (z̄_f: mean over the sample's text tokens)
             resample     δ = (z_f' - z_f) W_dec[f]   (z_f' of a random text token of the sample)
    neuron   zero / mean / resample: the same with d = e_n, v = x_n

The null: for each target, `random` directions u_r (unit, drawn once, shared by all targets)
each added with the target's own per-token norm, δ_r = ||δ|| u_r: the same size at the same
tokens, in a direction chosen blind.

Effect per example (`effect`): `embedding` (encoders) 1 - cos(e', e) of the mean-pooled
last hidden states; `loss` (causal LMs) the change of mean next-token cross-entropy over the
example's predictions; `readout` |(e' - e)·r̂| for a given readout direction r of the output.

Per target: quantiles and the mean with a bootstrap interval; the mean where the target fires
(v > 0 at some text token) and where it does not; `frac_above_null`, the fraction of examples
whose effect exceeds the 95th percentile of that example's null effects; and a `verdict` of
the mean's interval against the range of the random directions' means, a Monte-Carlo rank
test at 5%: with N directions and k = floor(0.05 (N + 1)), "effect" needs the whole interval
above the k-th largest null mean (signed loss change: k = floor(0.025 (N + 1)) on each side),
so a direction no different from random ones is flagged with probability <= 5%.
`random:r` entries are the first target's random direction r judged against the other
directions exactly as a target is: the run's own false-positive check.

Files: `effects.safetensors`: `targets [T, n]`, `null [T, random, n]`, `fires [T, n]` (bool).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from polysemy.analysis.folder import start_analysis_on_main, write_analysis
from polysemy.analysis.replay import (
    SiteReplay,
    check_sae_fits,
    is_causal,
    mean_pool,
    next_token_logits,
    pad_examples,
    pad_id,
    resolve_site,
    sae_site,
    take_examples,
    unembedding,
)
from polysemy.analysis.stats import (
    Interval,
    Verdict,
    binomial_ci,
    bootstrap_ci,
    quantiles,
    verdict,
)
from polysemy.analysis.targets import parse_target
from polysemy.models.loading import LoadedModel
from polysemy.models.sites import Site
from polysemy.progress import progress_bar
from polysemy.sae import distributed as dist_utils
from polysemy.validation import ParameterError, check_choice, check_int, configured

logger = logging.getLogger(__name__)

FeatureMode = Literal["remove", "project_out", "mean", "resample"]
NeuronMode = Literal["zero", "mean", "resample"]
Effect = Literal["auto", "embedding", "loss", "readout"]


@dataclass(frozen=True)
class AblateConfig:
    """What to ablate, how, on how many examples, and against how many random directions."""

    targets: tuple[str, ...] = ()
    """What to ablate, as a comma list: feature:F (needs an SAE) and neuron:N."""
    random: int = 40
    """Random directions of the target's norm, per target: the null. A 5% rank test needs at
    least 19 (39 for the signed loss change); with fewer, no target is called an effect."""
    site: str | None = None
    """Site to ablate at (None: the site the SAE's checkpoint was harvested from)."""
    examples: int = 1000
    """Examples (corpus documents, first `seq_len` tokens each); fewer is an error."""
    seq_len: int = 128
    """Tokens per example, special tokens included (longer documents are cut)."""
    batch_size: int = 32
    """Examples per clean pass."""
    directions_per_pass: int = 16
    """Ablations batched into one replay (a replay runs this many times `batch_size` rows)."""
    feature_mode: FeatureMode = "remove"
    """remove (z_f W_dec[f], error term kept), project_out, mean or resample."""
    neuron_mode: NeuronMode = "zero"
    """zero, mean or resample the neuron."""
    effect: Effect = "auto"
    """embedding (1 - cosine of pooled outputs), loss (next-token CE change), readout (needs
    `readout`), or auto (loss for causal LMs, else embedding)."""
    readout: str | None = None
    """A .npy or .safetensors file holding a readout direction [d_model] of the last hidden
    state (sets effect to readout)."""
    seed: int = 0
    """Seed of the random directions, resampling and the bootstrap."""

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", tuple(t for t in self.targets.split(",") if t))
        object.__setattr__(self, "targets", tuple(self.targets))
        for t in self.targets:
            parse_target(t)
        if len(set(self.targets)) != len(self.targets):
            raise ParameterError("targets", "targets that do not repeat", list(self.targets))
        check_int("random", self.random, least=2)
        if self.site is not None and (not isinstance(self.site, str) or not self.site):
            raise ParameterError("site", "a site name or None", self.site)
        check_int("examples", self.examples, least=2)
        check_int("seq_len", self.seq_len, least=2)
        check_int("batch_size", self.batch_size, least=1)
        check_int("directions_per_pass", self.directions_per_pass, least=1)
        check_choice(
            "feature_mode", self.feature_mode, ("remove", "project_out", "mean", "resample")
        )
        check_choice("neuron_mode", self.neuron_mode, ("zero", "mean", "resample"))
        check_choice("effect", self.effect, ("auto", "embedding", "loss", "readout"))
        if self.effect == "readout" and self.readout is None:
            raise ParameterError("readout", "a file when effect is readout", None)
        check_int("seed", self.seed)


@dataclass(frozen=True)
class TargetResult:
    """The per-example effects of one target, summarised (fields: module docstring)."""

    target: str
    mean_effect: float
    ci: Interval
    quantiles: dict[str, float]
    frac_above_null: float
    verdict: Verdict
    null: Interval
    """Range of the random directions' mean effects the verdict compares `ci` with."""
    fires: int
    """Examples where the target is active (v > 0 at some text token)."""
    effect_fires: Interval | None
    effect_silent: Interval | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mean_effect": self.mean_effect,
            "ci": [self.ci.low, self.ci.high],
            "quantiles": self.quantiles,
            "frac_above_null": self.frac_above_null,
            "verdict": self.verdict,
            "null_range": [self.null.low, self.null.high],
            "fires": self.fires,
            "effect_fires": None if self.effect_fires is None else self.effect_fires.to_dict(),
            "effect_silent": None if self.effect_silent is None else self.effect_silent.to_dict(),
        }


@dataclass(frozen=True)
class AblateResult:
    """Ablation effects of each target and of its random-direction null."""

    site: str
    effect: Literal["embedding", "loss", "readout"]
    n: int
    results: tuple[TargetResult, ...]
    """The targets, then `random:r` for each random direction of the first target."""
    effects: Tensor = field(repr=False)
    """`[targets, n]` per-example effects."""
    null_effects: Tensor = field(repr=False)
    """`[targets, random, n]` per-example effects of the random directions."""
    fires: Tensor = field(repr=False)
    """`[targets, n]` bool: the target is active on the example."""
    false_positive_rate: Interval | None = None
    """`random:r` entries with verdict effect, as a rate with its exact interval."""

    def summary(self) -> dict[str, Any]:
        null = {
            "directions": int(self.null_effects.shape[1]),
            "norm": "per token, the target's own perturbation norm",
            "per_target": {
                r.target: {
                    "mean_effect": float(self.null_effects[i].mean()),
                    "quantiles": quantiles(self.null_effects[i]),
                    "range": [r.null.low, r.null.high],
                }
                for i, r in enumerate(self.results[: self.effects.shape[0]])
            },
            "false_positive_rate": None
            if self.false_positive_rate is None
            else self.false_positive_rate.to_dict(),
        }
        return {
            "site": self.site,
            "effect": self.effect,
            "n": self.n,
            "results": [r.to_dict() for r in self.results],
            "null": null,
        }


class _Target(NamedTuple):
    name: str
    kind: str
    direction: Tensor  # (width,)
    mode: str


def load_readout(path: str | os.PathLike[str]) -> Tensor:
    """A readout direction from a .npy or .safetensors file (one 1-D float array)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"readout {str(path)!r} does not exist")
    if p.suffix == ".npy":
        import numpy as np

        arr = torch.from_numpy(np.load(p, allow_pickle=False))
    elif p.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(p))
        if len(tensors) != 1:
            raise ValueError(f"readout {str(path)!r} must hold one array; got {sorted(tensors)}")
        arr = next(iter(tensors.values()))
    else:
        raise ValueError(f"readout must be a .npy or .safetensors file; got {str(path)!r}")
    return arr.reshape(-1).double()


def _resolve_targets(config: AblateConfig, sae: Any, site: Site) -> list[_Target]:
    if not config.targets:
        raise ParameterError("targets", "at least one of feature:F or neuron:N", "")
    out = []
    for text in config.targets:
        kind, index = parse_target(text)
        if kind == "feature":
            if sae is None:
                raise ParameterError("sae", "given to ablate a feature", None)
            d_sae = int(sae.W_dec.shape[0])
            if index >= d_sae:
                raise ParameterError("targets", f"features below d_sae={d_sae}", text)
            out.append(_Target(text, kind, sae.W_dec[index].detach().float(), config.feature_mode))
        else:
            if index >= site.width:
                raise ParameterError(
                    "targets", f"neurons below the site's width {site.width}", text
                )
            e = torch.zeros(site.width)
            e[index] = 1.0
            out.append(_Target(text, kind, e, config.neuron_mode))
    return out


@torch.inference_mode()
def ablate(
    loaded: LoadedModel,
    documents: Any,
    config: AblateConfig | None = None,
    *,
    sae: Any = None,
    readout_direction: Tensor | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = False,
    **options: Any,
) -> AblateResult:
    """Ablate each of `config.targets` on the first `examples` documents of `documents` (a
    Corpus or strings) and compare with random directions of equal norm; with `out`, write an
    `ablate` analysis folder. `readout_direction` ([d_model]) overrides `config.readout`.
    Raises ParameterError naming `site`, `sae`, `targets`, `examples` or `readout`.

    Under torchrun every process calls it alike (model and SAE on its own device): rank r
    runs batches r, r + N, ... of both phases; the coefficients (for mean and resample), the
    per-example effects and firing flags are gathered, and each rank draws what one process
    would draw for the batches it skips, so every rank returns the one-process result; rank 0
    alone writes `out`. A rank that fails stops the others within `HEARTBEAT_BATCHES` of its
    batches (docs/scale.md)."""
    config = configured(AblateConfig, config, options)
    model = loaded.model
    device = next(iter(model.parameters())).device
    info = dist_utils.init_from_env(device)
    site = resolve_site(loaded, sae_site(sae, config.site) if sae is not None else config.site)
    if sae is not None:
        check_sae_fits(sae, site)
        if hasattr(sae, "eval"):
            sae.eval()
    targets = _resolve_targets(config, sae, site)
    if readout_direction is None and config.readout is not None:
        readout_direction = load_readout(config.readout)
    causal = is_causal(loaded)
    effect: Literal["embedding", "loss", "readout"]
    if readout_direction is not None:
        effect = "readout"
    elif config.effect == "auto":
        effect = "loss" if causal else "embedding"
    else:
        effect = config.effect  # type: ignore[assignment]
    if effect == "loss" and not causal:
        raise ParameterError("effect", "embedding or readout for an encoder model", "loss")
    readout_hat = None
    if effect == "readout":
        assert readout_direction is not None
        hidden_size = int(getattr(model.config, "hidden_size", 0) or readout_direction.numel())
        if readout_direction.numel() != hidden_size or float(readout_direction.norm()) == 0:
            raise ParameterError(
                "readout", f"a non-zero direction of {hidden_size} numbers",
                f"{readout_direction.numel()} numbers",
            )  # fmt: skip
        readout_hat = F.normalize(readout_direction.double(), dim=0).to(device)
    folder = start_analysis_on_main(out, info, force=force)
    examples = take_examples(
        loaded.tokenizer,
        documents,
        config.examples,
        seq_len=config.seq_len,
        min_tokens=2 if effect == "loss" else 1,
    )
    pad = pad_id(loaded.tokenizer)
    replay = SiteReplay(loaded, site)
    g = torch.Generator().manual_seed(config.seed)
    random_dirs = F.normalize(torch.randn(config.random, site.width, generator=g), dim=-1)

    # Phase 1: clean passes, and each target's coefficient v at every text token. Under
    # torchrun this rank runs every world-th batch, the batches one process would run.
    starts = range(0, len(examples), config.batch_size)
    # Text tokens per batch, known on every rank without running the model.
    tokens = [sum(sum(e.text) for e in examples[s : s + config.batch_size]) for s in starts]
    own = [s for i, s in enumerate(starts) if i % info.world_size == info.rank]
    bar = progress_bar(2 * len(own), desc="ablate", unit="batch", enabled=progress and info.is_main)
    caches, texts = [], []
    coeffs: list[list[Tensor]] = [[] for _ in targets]
    T, N = len(targets), config.random
    effects = torch.zeros(T, len(examples), dtype=torch.float64)
    null = torch.zeros(T, N, len(examples), dtype=torch.float64)
    fires = torch.zeros(T, len(examples), dtype=torch.bool)
    with dist_utils.reporting_failures(info):  # a failure here stops every rank
        for start in dist_utils.own_batches(info, starts, job=_JOB):
            bar.update(1)
            batch = pad_examples(examples[start : start + config.batch_size], pad, device)
            cache = replay.record(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            caches.append(cache)
            texts.append(batch.text)
            rows = cache.site[batch.text]
            for t, target in enumerate(targets):
                coeffs[t].append(_coefficient(target, rows, sae).cpu())
        pools = [torch.cat(c) if c else torch.zeros(0) for c in coeffs]  # each (text tokens,)
        if info.enabled:
            dist_utils.stop_if_a_rank_failed(info, job=_JOB)
            dtype = pools[0].dtype if own else next(iter(model.parameters())).dtype
            pools = _gather_pools(info, pools, own, starts, tokens, dtype)

        unembed = unembedding(loaded) if effect == "loss" else None
        drawn = 0  # batches whose resampling draws `g` has made, as one process would
        for i, start in enumerate(dist_utils.own_batches(info, starts, job=_JOB)):
            bar.update(1)
            k = start // config.batch_size
            for skipped in tokens[drawn:k]:  # another rank's batches: draw what they drew
                for t, target in enumerate(targets):
                    if target.mode == "resample":  # `_perturbation`'s draw
                        torch.randint(0, pools[t].numel(), (skipped,), generator=g)
            drawn = k + 1
            _ablate_batch(
                caches[i], texts[i], start, targets, pools, random_dirs, g, sae, config,
                _Clean(caches[i], unembed, readout_hat), replay, effects, null, fires,
            )  # fmt: skip
        if info.enabled:
            dist_utils.stop_if_a_rank_failed(info, job=_JOB)
            effects = dist_utils.sum_tensor_over_ranks(effects, info, job=_JOB)
            null = dist_utils.sum_tensor_over_ranks(null, info, job=_JOB)
            fires = dist_utils.sum_tensor_over_ranks(fires.double(), info, job=_JOB) > 0.5
    bar.close()

    signed = effect == "loss"
    results = [
        _summarise(target.name, effects[t], null[t], fires[t], signed, config)
        for t, target in enumerate(targets)
    ]
    randoms = []
    for r in range(N):
        others = torch.cat([null[0, :r], null[0, r + 1 :]])
        randoms.append(_summarise(f"random:{r}", null[0, r], others, None, signed, config))
    flagged = sum(1 for r in randoms if r.verdict == "effect")
    result = AblateResult(
        site=site.name,
        effect=effect,
        n=len(examples),
        results=tuple(results + randoms),
        effects=effects,
        null_effects=null,
        fires=fires,
        false_positive_rate=binomial_ci(flagged, N),
    )
    if folder is not None:
        inputs = {
            "model": loaded.name,
            "site": site.name,
            "sae": None if sae is None else str((getattr(sae, "metadata", None) or {}).get("arch")),
            "corpus": str(getattr(documents, "name", "documents")),
            "config": asdict(config),
        }
        files = {
            "effects.safetensors": {
                "targets": effects.contiguous(),
                "null": null.contiguous(),
                "fires": fires.contiguous(),
            }
        }
        write_analysis(folder, "ablate", inputs=inputs, summary=result.summary(), files=files)
    return result


_JOB = "ablation pass"


def _gather_pools(
    info: dist_utils.DistInfo,
    pools: list[Tensor],
    own: list[int],
    starts: range,
    tokens: list[int],
    dtype: torch.dtype,
) -> list[Tensor]:
    """Every rank's coefficients in their one-process order (each rank fills its batches'
    segments of zeros; one sum gathers them, exactly: x + 0 = x)."""
    offsets = [0]
    for count in tokens:
        offsets.append(offsets[-1] + count)
    full = torch.zeros(len(pools), offsets[-1], dtype=torch.float64)
    at = 0
    for start in own:
        k = starts.index(start)
        full[:, offsets[k] : offsets[k + 1]] = torch.stack(
            [p[at : at + tokens[k]].double() for p in pools]
        )
        at += tokens[k]
    full = dist_utils.sum_tensor_over_ranks(full, info, job=_JOB)
    return [row.to(dtype) for row in full]


def _ablate_batch(
    cache: Any,
    text: Tensor,
    row0: int,
    targets: list[_Target],
    pools: list[Tensor],
    random_dirs: Tensor,
    g: torch.Generator,
    sae: Any,
    config: AblateConfig,
    clean: _Clean,
    replay: SiteReplay,
    effects: Tensor,
    null: Tensor,
    fires: Tensor,
) -> None:
    """Each target and its random directions on one batch, into `effects`, `null` and `fires`
    at the batch's rows (from `row0`)."""
    x, b = cache.site, cache.site.shape[0]
    rows = x[text]  # (tokens, width)
    token_row = torch.arange(b, device=x.device)[:, None].expand_as(text)[text]  # (tokens,)
    deltas: list[tuple[int, int, Tensor]] = []  # (target, -1 or null index, delta rows)
    for t, target in enumerate(targets):
        v = _coefficient(target, rows, sae)
        fired = torch.zeros(b, dtype=torch.bool, device=x.device)
        fired[token_row[v > 0]] = True
        fires[t, row0 : row0 + b] = fired.cpu()
        delta = _perturbation(target, rows, v, pools[t].to(x.device), g)
        norm = delta.norm(dim=-1, keepdim=True)  # (tokens, 1)
        deltas.append((t, -1, delta))
        for r in range(config.random):
            deltas.append((t, r, norm * random_dirs[r].to(x)))
    for chunk in range(0, len(deltas), config.directions_per_pass):
        group = deltas[chunk : chunk + config.directions_per_pass]
        values = x.repeat(len(group), 1, 1)  # (D*B, seq, width)
        for k, (_, _, delta) in enumerate(group):
            part = values[k * b : (k + 1) * b]
            part[text] = rows + delta.to(x.dtype)
        hidden = replay.replay(cache, values)
        per = clean.effects(hidden, len(group))  # (D, B)
        for k, (t, r, _) in enumerate(group):
            if r < 0:
                effects[t, row0 : row0 + b] = per[k].cpu()
            else:
                null[t, r, row0 : row0 + b] = per[k].cpu()


def _coefficient(target: _Target, rows: Tensor, sae: Any) -> Tensor:
    """v per text token: z_f for a feature, x_n for a neuron."""
    if target.kind == "neuron":
        return rows[:, int(target.direction.argmax())]
    index = int(target.name.split(":")[1])
    w = sae.W_dec
    return sae.encode(rows.to(w.dtype))[:, index].to(rows.dtype)


def _perturbation(
    target: _Target, rows: Tensor, v: Tensor, pool: Tensor, g: torch.Generator
) -> Tensor:
    """δ per text token (`[tokens, width]`) for the target's mode (module docstring)."""
    d = target.direction.to(rows)
    if target.mode == "project_out":
        d_hat = d / d.norm().clamp_min(1e-12)
        return -(rows @ d_hat)[:, None] * d_hat
    if target.mode in ("remove", "zero"):
        new = torch.zeros_like(v)
    elif target.mode == "mean":
        new = pool.mean().expand_as(v)
    else:  # resample: the coefficient of a random text token of the sample
        idx = torch.randint(0, pool.numel(), (v.numel(),), generator=g)
        new = pool[idx].to(v)
    return (new - v)[:, None] * d


class _Clean:
    """The clean outputs of one batch, and per-example effects of replays against them."""

    def __init__(self, cache: Any, unembed: Tensor | None, readout: Tensor | None) -> None:
        self.mask = cache.inputs["attention_mask"]
        self.pooled = mean_pool(cache.last_hidden, self.mask).double()  # (B, d_model)
        self.unembed, self.readout = unembed, readout
        if unembed is not None:
            ids = cache.inputs["input_ids"]
            self.scored = (self.mask[:, :-1] * self.mask[:, 1:]).to(torch.float64)
            self.target = ids[:, 1:]
            self.ce = self._ce(cache.last_hidden, 1)[0]  # (B,)

    def _ce(self, hidden: Tensor, times: int) -> Tensor:
        assert self.unembed is not None
        logp = next_token_logits(hidden[:, :-1], self.unembed).float().log_softmax(-1)
        target = self.target.repeat(times, 1)
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).double()  # (D*B, seq-1)
        scored = self.scored.repeat(times, 1)
        per = (nll * scored).sum(1) / scored.sum(1).clamp_min(1.0)
        return per.reshape(times, -1)

    def effects(self, hidden: Tensor, times: int) -> Tensor:
        """`[times, batch]` effects of a replay of `times * batch` rows."""
        if self.unembed is not None and self.readout is None:
            return self._ce(hidden, times) - self.ce
        pooled = mean_pool(hidden, self.mask.repeat(times, 1)).double()
        pooled = pooled.reshape(times, *self.pooled.shape)
        if self.readout is not None:
            return ((pooled - self.pooled) @ self.readout).abs()
        return 1.0 - F.cosine_similarity(pooled, self.pooled.expand_as(pooled), dim=-1)


def _null_range(null_means: Tensor, signed: bool) -> tuple[Interval, bool]:
    """Where a target's mean effect must fall outside of to count, as a Monte-Carlo rank test
    at 5%: with N random directions and k = floor(0.05 (N + 1)) (signed effects: 0.025 on
    each side), the range ends at the k-th largest (and k-th smallest) null mean, so a
    direction exchangeable with the random ones lands outside it with probability at most
    k / (N + 1) <= 5%. Also returns whether the test can decide at all (k >= 1)."""
    n = int(null_means.numel())
    k = int((0.025 if signed else 0.05) * (n + 1))
    ordered = null_means.sort().values
    high = float(ordered[n - max(k, 1)])
    low = float(ordered[max(k, 1) - 1]) if signed else min(0.0, float(ordered[0]))
    interval = Interval(
        float(null_means.median()), low, high, 0.95, n, "random directions (rank test)"
    )
    return interval, k >= 1


def _summarise(
    name: str,
    effect: Tensor,
    null: Tensor,
    fires: Tensor | None,
    signed: bool,
    config: AblateConfig,
) -> TargetResult:
    """`effect [n]` against `null [random, n]`."""
    ci = bootstrap_ci(effect, seed=config.seed)
    threshold = torch.quantile(null, 0.95, dim=0)  # (n,) per example
    null_range, decidable = _null_range(null.mean(dim=1), signed)
    judged = verdict(ci, null_range)

    def part(mask: Tensor) -> Interval | None:
        return bootstrap_ci(effect[mask], seed=config.seed) if int(mask.sum()) > 1 else None

    return TargetResult(
        target=name,
        mean_effect=ci.estimate,
        ci=ci,
        quantiles=quantiles(effect),
        frac_above_null=float((effect > threshold).double().mean()),
        verdict=judged if decidable or judged == "no effect" else "inconclusive",
        null=null_range,
        fires=int(fires.sum()) if fires is not None else 0,
        effect_fires=part(fires) if fires is not None else None,
        effect_silent=part(~fires) if fires is not None else None,
    )
