"""Downstream fidelity: splice an SAE into a model at its site and measure what changes.

At the site's text tokens (the rows the SAE was trained on) the activation x is replaced by
its reconstruction x̂ = decode(encode(x)) (or by x̂ + (x - x̂) with `keep_error`, a check that
must score 1), and the model runs on from the site. The same is done with the site zeroed and
with the site set to its mean over the sample's text tokens, the two reference ablations. Each
sentence runs its lower layers once (`SiteReplay`): the SAE, zero and mean variants are one
batched replay.

Encoders (the sentence-transformers recipe: e = mean of the last hidden states over the
attended tokens), per sentence i with clean embedding e_i and variant embedding e_i^v:

    embedding_cosine   = mean_i cos(e_i^sae, e_i)
    similarity_spearman = Spearman, over pairs i < j of the first `similarity_sentences`
                          sentences, of cos(e_i^sae, e_j^sae) against cos(e_i, e_j)
    recovered_vs_zero  = (C_sae - C_zero) / (C_clean - C_zero),   C_v = mean_i cos(e_i^v, e_i),
                         C_clean = 1: 1 when the SAE changes nothing, 0 when it is as bad as
                         zeroing the site
    recovered_vs_mean  = the same with the mean ablation in place of the zero one

Causal LMs (SAEBench's formulas; CE over next-token predictions whose target is a real token,
averaged over all such tokens of the sample before the ratio):

    ce_score = (CE_zero - CE_sae) / (CE_zero - CE_clean)
    kl_score = (KL_zero - KL_sae) / KL_zero,   KL_v = mean over tokens of KL(p_clean || p_v)

Transcoders (docs/transcoders.md) replace the MLP instead: the site is the one they predict
(the MLP's output, `source.site_out` of the checkpoint) and x̂ = transcode(u), u the clean
value of the site they read (`site_in`, the MLP's input) in the same pass; everything else is
as above, so `fvu` is the transcoder's error on the MLP's output.

Both: `fvu = Σ ||x - x̂||² / Σ ||x - x̄||²` over the text tokens (x̄ their mean). Every figure
has a percentile bootstrap interval over sentences (a sentence is resampled with all its
tokens; the ratios are recomputed on each resample). A ratio whose denominator is 0 (zero
ablation changes nothing) is reported as None.

Files: `per_example.safetensors`, one row per sentence: `tokens` (text tokens), `sse`
(Σ||x - x̂||²), `sst` (Σ||x - x̄||²); encoders `cosine_sae`, `cosine_zero`, `cosine_mean`;
causal LMs `predicted` (next-token predictions scored), `ce_clean`, `ce_sae`, `ce_zero`,
`ce_mean` and `kl_sae`, `kl_zero`, `kl_mean` (sums over the sentence's predictions).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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
from polysemy.analysis.stats import Interval, bootstrap_ci, spearman
from polysemy.models.loading import LoadedModel
from polysemy.models.sites import Site, patch_site
from polysemy.progress import progress_bar
from polysemy.sae import distributed as dist_utils
from polysemy.validation import ParameterError, check_choice, check_int, configured

logger = logging.getLogger(__name__)

Objective = Literal["auto", "embedding", "next_token"]
OBJECTIVES = ("auto", "embedding", "next_token")


@dataclass(frozen=True)
class FidelityConfig:
    """Where to splice the SAE, on how many sentences, and how to report."""

    site: str | None = None
    """Site to splice the SAE into (None: the site its checkpoint was harvested from; for a
    transcoder, the site it predicts, `source.site_out`)."""
    site_in: str | None = None
    """Transcoders only: the site they read (None: their checkpoint's `source.site_in`)."""
    examples: int = 1000
    """Sentences (corpus documents, first `seq_len` tokens each) to run; fewer is an error."""
    seq_len: int = 128
    """Tokens per sentence, special tokens included (longer documents are cut)."""
    batch_size: int = 32
    """Sentences per clean pass; each replay runs three times as many rows."""
    keep_error: bool = False
    """Add the SAE's error term back (x̂ + (x - x̂)): a check that must score 1."""
    objective: Objective = "auto"
    """What to compare downstream: embedding (encoders), next_token (causal LMs), or auto
    (next_token when a later token cannot change an earlier one's output)."""
    similarity_sentences: int = 200
    """Sentences whose pairwise similarities the Spearman score compares (encoders)."""
    resamples: int = 1000
    """Bootstrap resamples behind every interval."""
    seed: int = 0
    """Seed of the bootstrap."""

    def __post_init__(self) -> None:
        for name in ("site", "site_in"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a site name or None; got {value!r}")
        check_int("examples", self.examples, least=2)
        check_int("seq_len", self.seq_len, least=2)
        check_int("batch_size", self.batch_size, least=1)
        check_choice("objective", self.objective, OBJECTIVES)
        check_int("similarity_sentences", self.similarity_sentences, least=3)
        check_int("resamples", self.resamples, least=100)
        check_int("seed", self.seed)


@dataclass(frozen=True)
class FidelityResult:
    """Downstream fidelity of an SAE spliced in at `site` (formulas: module docstring)."""

    site: str
    objective: Literal["embedding", "next_token"]
    n: int
    """Sentences run."""
    tokens: int
    """Text tokens spliced."""
    fvu: float
    embedding_cosine: float | None = None
    similarity_spearman: float | None = None
    recovered_vs_zero: float | None = None
    recovered_vs_mean: float | None = None
    ce_score: float | None = None
    kl_score: float | None = None
    ce_clean: float | None = None
    """Mean next-token cross-entropy of the clean model (nats per token)."""
    ce_sae: float | None = None
    ce_zero: float | None = None
    intervals: dict[str, Interval] = field(default_factory=dict)
    """Bootstrap interval over sentences of each figure that has one."""

    def summary(self) -> dict[str, Any]:
        """The figures as JSON: the objective's keys, `n`, and `intervals`."""
        keys = (
            ("fvu", "embedding_cosine", "similarity_spearman", "recovered_vs_zero",
             "recovered_vs_mean")
            if self.objective == "embedding"
            else ("fvu", "ce_score", "kl_score", "ce_clean", "ce_sae", "ce_zero")
        )  # fmt: skip
        out: dict[str, Any] = {k: getattr(self, k) for k in keys}
        out.update(
            site=self.site,
            objective=self.objective,
            n=self.n,
            tokens=self.tokens,
            intervals={k: v.to_dict() for k, v in self.intervals.items()},
        )
        return out


def _ratio_ci(
    n: int, statistic: Callable[[Tensor], Tensor], config: FidelityConfig
) -> Interval | None:
    """Bootstrap interval of a statistic of resampled sentence indices ([R, n] -> [R])."""
    estimate = float(statistic(torch.arange(n, dtype=torch.float64)[None])[0])
    if not math.isfinite(estimate):
        return None
    ci = bootstrap_ci(
        torch.arange(n, dtype=torch.float64),
        lambda idx: statistic(idx).nan_to_num(nan=estimate),
        resamples=config.resamples,
        seed=config.seed,
    )
    return ci


def _sum_ratio(num: Tensor, den: Tensor) -> Callable[[Tensor], Tensor]:
    def stat(idx: Tensor) -> Tensor:
        i = idx.long()
        return num[i].sum(-1) / den[i].sum(-1)

    return stat


@torch.inference_mode()
def analyze_fidelity(
    loaded: LoadedModel,
    sae: Any,
    documents: Any,
    config: FidelityConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = False,
    **options: Any,
) -> FidelityResult:
    """Splice `sae` into `loaded.model` at its site over the first `examples` documents of
    `documents` (a Corpus or strings) and measure the downstream change; with `out`, write a
    `fidelity` analysis folder. Raises ParameterError naming `site`, `sae` or `examples`.

    Under torchrun every process calls it alike (model and SAE on its own device): rank r
    runs batches r, r + N, ... of both phases, the site's mean is all_reduced and the
    per-sentence rows gathered, so every rank returns the one-process result (the mean equal
    to float64 rounding); rank 0 alone writes `out`. A rank that fails stops the others
    within `HEARTBEAT_BATCHES` of its batches (docs/scale.md)."""
    config = configured(FidelityConfig, config, options)
    model = loaded.model
    device = next(iter(model.parameters())).device
    info = dist_utils.init_from_env(device)
    transcoder = bool(getattr(getattr(sae, "config", None), "is_transcoder", False))
    site_in = None
    if transcoder:
        site = resolve_site(loaded, _recorded_site(sae, config.site, "site_out", "site"))
        site_in = resolve_site(loaded, _recorded_site(sae, config.site_in, "site_in", "site_in"))
        _check_transcoder_fits(sae, site_in, site)
    else:
        if config.site_in is not None:
            raise ParameterError(
                "site_in", "left out for an SAE (it applies to transcoders)", config.site_in
            )
        site = resolve_site(loaded, sae_site(sae, config.site))
        check_sae_fits(sae, site)
    folder = start_analysis_on_main(out, info, force=force)
    objective = config.objective
    if objective == "auto":
        objective = "next_token" if is_causal(loaded) else "embedding"
    causal = objective == "next_token"
    examples = take_examples(
        loaded.tokenizer,
        documents,
        config.examples,
        seq_len=config.seq_len,
        min_tokens=2 if causal else 1,
    )
    pad = pad_id(loaded.tokenizer)
    replay = SiteReplay(loaded, site)
    if hasattr(sae, "eval"):
        sae.eval()

    # Phase 1: clean passes (the only time layers below the site run) and the site's mean.
    # Under torchrun this rank runs every world-th batch (`own`), the same batches as in one
    # process, so its sentences are padded alike and give the same numbers.
    caches, texts = [], []
    total = torch.zeros(site.width, dtype=torch.float64, device=device)
    count = 0
    starts = range(0, len(examples), config.batch_size)
    own = [s for i, s in enumerate(starts) if i % info.world_size == info.rank]
    bar = progress_bar(
        2 * len(own), desc="fidelity", unit="batch", enabled=progress and info.is_main
    )
    inputs_in: list[Tensor] = []  # transcoders: the clean value of the site they read
    with dist_utils.reporting_failures(info):  # a failure here stops every rank
        for start in dist_utils.own_batches(info, starts, job=_JOB):
            bar.update(1)
            batch = pad_examples(examples[start : start + config.batch_size], pad, device)
            with contextlib.ExitStack() as stack:
                if site_in is not None:
                    seen: dict[str, Tensor] = {}

                    def read_in(value: Tensor, seen: dict[str, Tensor] = seen) -> Tensor:
                        seen["x"] = value.detach().clone()
                        return value

                    stack.enter_context(patch_site(model, site_in, read_in))
                cache = replay.record(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask
                )
            if site_in is not None:
                inputs_in.append(seen["x"])
            caches.append(cache)
            texts.append(batch.text)
            total += cache.site[batch.text].double().sum(0)
            count += int(batch.text.sum())
        if info.enabled:
            dist_utils.stop_if_a_rank_failed(info, job=_JOB)
            total = dist_utils.sum_tensor_over_ranks(total, info, job=_JOB)
            (count,) = dist_utils.sum_over_ranks(info, [count], job=_JOB)
        mean = (total / count).to(caches[0].site.dtype if caches else torch.float32)

        cols: dict[str, list[Tensor]] = {}

        def add(name: str, value: Tensor) -> None:
            cols.setdefault(name, []).append(value.detach().double().cpu())

        pooled_clean, pooled_sae = [], []
        unembed = unembedding(loaded) if causal else None
        for i, _ in enumerate(dist_utils.own_batches(info, starts, job=_JOB)):
            bar.update(1)
            cache, text = caches[i], texts[i]
            x = cache.site  # (B, seq, width)
            rows = x[text]  # (tokens, width)
            if site_in is not None:  # the MLP's output predicted from its input
                x_hat = sae.transcode(inputs_in[i][text].to(_sae_dtype(sae))).to(x.dtype)
            else:
                x_hat = sae.decode(sae.encode(rows.to(_sae_dtype(sae)))).to(x.dtype)
            if config.keep_error:
                x_hat = x_hat + (rows - x_hat)
            variants = x.repeat(3, 1, 1)  # (3B, seq, width): sae, zero, mean
            b = x.shape[0]
            variants[:b][text] = x_hat
            variants[b : 2 * b][text] = 0.0
            variants[2 * b :][text] = mean
            hidden = replay.replay(cache, variants)  # (3B, seq, d_model)
            per_row = text.sum(1)
            err = torch.zeros(x.shape[:2], dtype=torch.float64, device=x.device)
            err[text] = ((rows - x_hat).double() ** 2).sum(-1)
            dev = torch.zeros_like(err)
            dev[text] = ((rows.double() - mean.double()) ** 2).sum(-1)
            add("tokens", per_row)
            add("sse", err.sum(1))
            add("sst", dev.sum(1))
            mask = cache.inputs["attention_mask"]
            if not causal:
                clean = mean_pool(cache.last_hidden, mask)  # (B, d_model)
                pooled = mean_pool(hidden, mask.repeat(3, 1)).reshape(3, b, -1)
                for name, v in zip(("sae", "zero", "mean"), pooled, strict=True):
                    add(f"cosine_{name}", F.cosine_similarity(v.double(), clean.double(), dim=-1))
                pooled_clean.append(clean.double().cpu())
                pooled_sae.append(pooled[0].double().cpu())
            else:
                assert unembed is not None
                _next_token_sums(cache, hidden.reshape(3, b, *hidden.shape[1:]), unembed, add)
        if info.enabled:
            dist_utils.stop_if_a_rank_failed(info, job=_JOB)
    bar.close()
    n = len(examples)
    columns = _COLUMNS + (_NEXT_TOKEN if causal else _EMBEDDING)
    per = {k: torch.cat(cols[k]) if k in cols else torch.zeros(0) for k in columns}
    if info.enabled:  # every rank's rows in their one-process places
        width = None if causal else int(getattr(model.config, "hidden_size"))  # noqa: B009
        per, pooled_clean, pooled_sae = _gather_rows(
            info, per, own, config.batch_size, n, (pooled_clean, pooled_sae, width),
            min(config.similarity_sentences, n),
        )  # fmt: skip
    intervals: dict[str, Interval] = {}

    def figure(name: str, stat: Callable[[Tensor], Tensor]) -> float | None:
        ci = _ratio_ci(n, stat, config)
        if ci is None:
            return None
        intervals[name] = ci
        return ci.estimate

    fvu = figure("fvu", _sum_ratio(per["sse"], per["sst"]))
    values: dict[str, Any] = {}
    if not causal:
        cs, cz, cm = per["cosine_sae"], per["cosine_zero"], per["cosine_mean"]

        def recovered(ref: Tensor) -> Callable[[Tensor], Tensor]:
            def stat(idx: Tensor) -> Tensor:
                i = idx.long()
                r = ref[i].mean(-1)
                return (cs[i].mean(-1) - r) / (1.0 - r)

            return stat

        values["embedding_cosine"] = figure("embedding_cosine", lambda idx: cs[idx.long()].mean(-1))
        values["recovered_vs_zero"] = figure("recovered_vs_zero", recovered(cz))
        values["recovered_vs_mean"] = figure("recovered_vs_mean", recovered(cm))
        values["similarity_spearman"] = _similarity_spearman(
            torch.cat(pooled_clean), torch.cat(pooled_sae), config, intervals
        )
    else:
        pred = per["predicted"]
        ce = {v: per[f"ce_{v}"] for v in ("clean", "sae", "zero", "mean")}
        kl = {v: per[f"kl_{v}"] for v in ("sae", "zero", "mean")}

        def ce_score(idx: Tensor) -> Tensor:
            i = idx.long()
            tok = pred[i].sum(-1)
            c, s, z = (ce[v][i].sum(-1) / tok for v in ("clean", "sae", "zero"))
            return (z - s) / (z - c)

        def kl_score(idx: Tensor) -> Tensor:
            i = idx.long()
            z = kl["zero"][i].sum(-1)
            return (z - kl["sae"][i].sum(-1)) / z

        values["ce_score"] = figure("ce_score", ce_score)
        values["kl_score"] = figure("kl_score", kl_score)
        for v in ("clean", "sae", "zero"):
            values[f"ce_{v}"] = figure(f"ce_{v}", _sum_ratio(ce[v], pred))

    result = FidelityResult(
        site=site.name,
        objective=objective,
        n=n,
        tokens=int(per["tokens"].sum()),
        fvu=float("nan") if fvu is None else fvu,
        intervals=intervals,
        **values,
    )
    if folder is not None:
        inputs = {
            "model": loaded.name,
            "site": site.name,
            **({"site_in": site_in.name} if site_in is not None else {}),
            "sae": _sae_name(sae),
            "corpus": str(getattr(documents, "name", "documents")),
            "config": asdict(config),
        }
        files = {"per_example.safetensors": {k: v.contiguous() for k, v in per.items()}}
        summary = result.summary()
        if fvu is None:
            summary["fvu"] = None
        write_analysis(folder, "fidelity", inputs=inputs, summary=summary, files=files)
    return result


_JOB = "fidelity pass"
_COLUMNS = ("tokens", "sse", "sst")
_EMBEDDING = ("cosine_sae", "cosine_zero", "cosine_mean")
_NEXT_TOKEN = ("predicted", "ce_clean", "ce_sae", "kl_sae", "ce_zero", "kl_zero", "ce_mean",
               "kl_mean")  # fmt: skip


def _gather_rows(
    info: dist_utils.DistInfo,
    per: dict[str, Tensor],
    own: list[int],
    batch_size: int,
    n: int,
    pooled: tuple[list[Tensor], list[Tensor], int | None],
    m: int,
) -> tuple[dict[str, Tensor], list[Tensor], list[Tensor]]:
    """Every rank's per-sentence rows (and pooled embeddings of the first `m` sentences) in
    their one-process places: each rank fills its rows of zeros and one sum gathers them."""
    rows = torch.cat([torch.arange(s, min(s + batch_size, n)) for s in own] or [torch.zeros(0)])
    rows = rows.long()
    full = torch.zeros(n, len(per), dtype=torch.float64)
    for c, v in enumerate(per.values()):
        full[rows, c] = v
    full = dist_utils.sum_tensor_over_ranks(full, info, job=_JOB)
    gathered = {k: full[:, c].contiguous() for c, k in enumerate(per)}
    pooled_clean, pooled_sae, d = pooled
    if d is None:  # next-token objective: no embeddings
        return gathered, pooled_clean, pooled_sae
    both = torch.zeros(2, m, d, dtype=torch.float64)
    keep = rows < m
    both[0, rows[keep]] = torch.cat(pooled_clean)[keep]
    both[1, rows[keep]] = torch.cat(pooled_sae)[keep]
    both = dist_utils.sum_tensor_over_ranks(both, info, job=_JOB)
    return gathered, [both[0]], [both[1]]


def _next_token_sums(
    cache: Any, hidden: Tensor, unembed: Tensor, add: Callable[[str, Tensor], None]
) -> None:
    """Per sentence sums of next-token CE (clean and each variant) and KL(clean || variant)
    over the predictions whose target is a real token."""
    ids, mask = cache.inputs["input_ids"], cache.inputs["attention_mask"]
    scored = (mask[:, :-1] * mask[:, 1:]).bool()  # (B, seq-1)
    target = ids[:, 1:]
    clean_logp = next_token_logits(cache.last_hidden[:, :-1], unembed).float().log_softmax(-1)
    add("predicted", scored.sum(1))

    def ce(logp: Tensor) -> Tensor:
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, seq-1)
        return (nll.double() * scored).sum(1)

    add("ce_clean", ce(clean_logp))
    p_clean = clean_logp.exp()
    for name, h in zip(("sae", "zero", "mean"), hidden, strict=True):
        logp = next_token_logits(h[:, :-1], unembed).float().log_softmax(-1)
        add(f"ce_{name}", ce(logp))
        kl = (p_clean * (clean_logp - logp)).sum(-1)  # (B, seq-1)
        add(f"kl_{name}", (kl.double() * scored).sum(1))


def _similarity_spearman(
    clean: Tensor, spliced: Tensor, config: FidelityConfig, intervals: dict[str, Interval]
) -> float | None:
    m = min(config.similarity_sentences, clean.shape[0])
    a = F.normalize(clean[:m], dim=-1)
    b = F.normalize(spliced[:m], dim=-1)
    sim_a, sim_b = a @ a.T, b @ b.T  # (m, m)
    iu = torch.triu_indices(m, m, offset=1)
    estimate = spearman(sim_a[iu[0], iu[1]], sim_b[iu[0], iu[1]])
    # Bootstrap over sentences: resample m sentences, compare the pairs of distinct draws.
    g = torch.Generator().manual_seed(config.seed)
    stats = []
    for _ in range(min(config.resamples, 200)):  # each resample ranks ~m²/2 pairs
        idx = torch.randint(0, m, (m,), generator=g)
        i, j = idx[iu[0]], idx[iu[1]]
        keep = i != j
        stats.append(spearman(sim_a[i[keep], j[keep]], sim_b[i[keep], j[keep]]))
    dist = torch.tensor(stats, dtype=torch.float64)
    low, high = torch.quantile(dist, torch.tensor([0.025, 0.975], dtype=torch.float64))
    intervals["similarity_spearman"] = Interval(
        estimate, float(low), float(high), 0.95, m, "bootstrap"
    )
    return estimate


def _recorded_site(sae: Any, given: str | None, key: str, parameter: str) -> str:
    """`given`, or the site a transcoder's checkpoint records under `source[key]`."""
    if given is not None:
        return given
    meta = getattr(sae, "metadata", None) or {}
    found = (meta.get("source") or {}).get(key) if isinstance(meta, dict) else None
    if not found:
        raise ParameterError(
            parameter, f"given (the transcoder's checkpoint records no source.{key})", None
        )
    return str(found)


def _check_transcoder_fits(sae: Any, site_in: Site, site_out: Site) -> None:
    cfg = sae.config
    if cfg.d_in != site_in.width or cfg.d_out != site_out.width:
        raise ParameterError(
            "sae",
            f"a transcoder with d_in={site_in.width}, d_out={site_out.width} (the widths of "
            f"sites {site_in.name!r} and {site_out.name!r})",
            f"d_in={cfg.d_in}, d_out={cfg.d_out}",
        )


def _sae_dtype(sae: Any) -> torch.dtype:
    w = getattr(sae, "W_dec", None)
    return w.dtype if isinstance(w, Tensor) else torch.float32


def _sae_name(sae: Any) -> str | None:
    meta = getattr(sae, "metadata", None)
    if isinstance(meta, dict):
        return str(meta.get("path") or meta.get("arch") or "") or None
    return type(sae).__name__
