"""Input attributions to a target at a site, and how brittle their token rankings are.

The target is a scalar of a sentence: the site's value summed over the sentence's text tokens
along one of three readings, f(x) = Σ_t a_t with

    feature:F    a_t = encode(h_t)[F]          (an SAE latent)
    neuron:N     a_t = h_t[N]                  (a unit of the site)
    direction    a_t = h_t · d                 (a given direction d of the site)

Attributions go from f to the input token embeddings e_t (the word embeddings the model adds
position and type embeddings to), computed by captum and summed over the embedding dimension
into one score per token:

    saliency               Σ_i |∂f/∂e_ti|
    gradient_x_input       Σ_i e_ti ∂f/∂e_ti
    integrated_gradients   Σ_i (e_ti - b_ti) ∫_0^1 ∂f/∂e_ti(b + α(e - b)) dα   (`steps` points)
    smoothgrad             Σ_i |∂f/∂e_ti| averaged over `noise_samples` copies of e with
                           Gaussian noise of std `noise_std` × the embedding table's std

Integration baselines b (only text tokens move; special tokens keep their embeddings): `zero`
(the zero vector), `pad` and `mask` (the pad / [MASK] token's embedding at every text token),
`noise` (uniform noise of the embedding table's variance, U(-√3 σ, √3 σ), one draw per seed).

Brittleness is the agreement of two token rankings, per sentence, by Spearman's ρ of the
scores and the top-k overlap |top_k(a) ∩ top_k(b)| / k:

    control/<method>     the sentence vs its control twin (the `concepts` corpus's edit of one
                         unlabelled word): the scores of the tokens the edit leaves in place
    baselines/<b1>~<b2>  integrated gradients from two baselines, same sentence
    seeds/<method>       integrated gradients from the noise baseline, and smoothgrad, under
                         `seeds` seeds: the mean over seed pairs

The null is the same statistic for two independent random rankings of the sentence's tokens
(ρ near 0, top-k overlap near k / n): each comparison's mean has a bootstrap interval over
sentences, and a `verdict` against the range of the null's mean over `resamples` draws.

Files: `stability.safetensors`, one row per sentence for each `<comparison>.spearman` and
`<comparison>.top_k` (and `target`, `tokens`); `attributions.json`, per sentence its tokens
and each method's scores on the original sentence.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.replay import Example, encode_examples, pad_id, resolve_site, sae_site
from polysemy.analysis.stats import (
    QUANTILES,
    Interval,
    Verdict,
    bootstrap_ci,
    null_interval,
    quantiles,
    spearman,
    verdict,
)
from polysemy.analysis.targets import parse_target
from polysemy.models.loading import LoadedModel
from polysemy.models.sites import Site, read_sites
from polysemy.progress import progress_bar
from polysemy.validation import ParameterError, check_choice, check_float, check_int, configured

logger = logging.getLogger(__name__)

METHODS = ("saliency", "gradient_x_input", "integrated_gradients", "smoothgrad")
BASELINES = ("zero", "pad", "mask", "noise")
Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class AttributionsConfig:
    """What to attribute, with which methods and baselines, on how many sentences."""

    target: str = ""
    """What to attribute: feature:F (needs an SAE), neuron:N, or direction (needs a direction
    file or tensor)."""
    direction: str | None = None
    """A .npy or .safetensors file holding a direction [width] of the site (target direction)."""
    site: str | None = None
    """Site of the target (None: the site the SAE's checkpoint was harvested from)."""
    methods: tuple[str, ...] = METHODS
    """Attribution methods, as a comma list: saliency, gradient_x_input, integrated_gradients,
    smoothgrad."""
    baselines: tuple[str, ...] = ("zero", "mask", "noise")
    """Integration baselines of integrated gradients (the first is the one compared under
    control edits), as a comma list: zero, pad, mask, noise."""
    examples: int = 100
    """Sentences of the `concepts` corpus (each with a control twin) where the target is
    non-zero; fewer is an error."""
    split: Split = "heldout"
    """Split of the `concepts` corpus the sentences come from."""
    scan: int = 2000
    """Sentences looked at, at most, to find `examples` where the target is non-zero."""
    steps: int = 32
    """Integration points of integrated gradients."""
    seeds: int = 4
    """Seeds of the noise baseline and of smoothgrad (stability compares every pair)."""
    noise_samples: int = 10
    """Noisy copies smoothgrad averages over."""
    noise_std: float = 0.5
    """Smoothgrad's noise std, in units of the embedding table's std."""
    top_k: int = 3
    """k of the top-k overlap; sentences with fewer than k + 2 compared tokens are skipped."""
    seq_len: int = 64
    """Tokens per sentence, special tokens included (longer sentences are cut)."""
    batch_size: int = 32
    """Rows per forward pass inside captum (integration points, noisy copies)."""
    resamples: int = 1000
    """Bootstrap resamples of every interval, and draws of the random-ranking null."""
    seed: int = 0
    """Seed of the corpus, the noise, the null and the bootstrap."""

    def __post_init__(self) -> None:
        for name in ("methods", "baselines"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(v for v in value.split(",") if v)
            object.__setattr__(self, name, tuple(value))
        if self.target:
            parse_target(self.target, parameter="target", direction=True)
        for m in self.methods:
            check_choice("methods", m, METHODS)
        for b in self.baselines:
            check_choice("baselines", b, BASELINES)
        for name in ("methods", "baselines"):
            value = getattr(self, name)
            if len(set(value)) != len(value):
                raise ParameterError(name, "a list without repeats", ",".join(value))
        if not self.methods:
            raise ParameterError("methods", f"at least one of {', '.join(METHODS)}", "")
        if "integrated_gradients" in self.methods and not self.baselines:
            raise ParameterError("baselines", "at least one baseline for integrated_gradients", "")
        if self.site is not None and (not isinstance(self.site, str) or not self.site):
            raise ParameterError("site", "a site name or None", self.site)
        check_int("examples", self.examples, least=2)
        check_choice("split", self.split, ("train", "heldout"))
        check_int("scan", self.scan, least=self.examples)
        check_int("steps", self.steps, least=2)
        check_int("seeds", self.seeds, least=2)
        check_int("noise_samples", self.noise_samples, least=1)
        check_float("noise_std", self.noise_std, above=0.0)
        check_int("top_k", self.top_k, least=1)
        check_int("seq_len", self.seq_len, least=4)
        check_int("batch_size", self.batch_size, least=1)
        check_int("resamples", self.resamples, least=100)
        check_int("seed", self.seed)


def require_captum() -> None:
    """ImportError with the install line when captum (the `attributions` extra) is missing."""
    import importlib.util

    if importlib.util.find_spec("captum") is None:
        raise ImportError(
            "attributions need captum: pip install 'polysemy[attributions]' (or captum>=0.9)"
        )


@dataclass(frozen=True)
class Stability:
    """Agreement of two token rankings over sentences, against random rankings."""

    comparison: str
    statistic: Literal["spearman", "top_k"]
    ci: Interval
    """Mean over sentences with its bootstrap interval."""
    quantiles: dict[str, float]
    null: Interval
    """Range of the mean under random rankings of the same sentences."""
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.ci.estimate,
            "ci": [self.ci.low, self.ci.high],
            "n": self.ci.n,
            "quantiles": self.quantiles,
            "null_mean": self.null.estimate,
            "null_range": [self.null.low, self.null.high],
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class AttributionsResult:
    """Token attributions to one target and the stability of their rankings."""

    site: str
    target: str
    n: int
    """Sentences attributed."""
    stability: tuple[Stability, ...]
    per_example: dict[str, Tensor] = field(repr=False)
    """Per sentence: `<comparison>.spearman`, `<comparison>.top_k` (NaN where skipped),
    `target` (f on the sentence) and `tokens` (text tokens)."""
    ig_delta: float | None = None
    """Median relative completeness error of integrated gradients, |Σ_t s_t - (f(e) - f(b))| /
    |f(e) - f(b)| (first baseline): how well `steps` points integrate."""

    def summary(self) -> dict[str, Any]:
        comparisons: dict[str, dict[str, Any]] = {}
        for s in self.stability:
            comparisons.setdefault(s.comparison, {})[s.statistic] = s.to_dict()
        return {
            "site": self.site,
            "target": self.target,
            "n": self.n,
            "comparisons": comparisons,
            "ig_delta": self.ig_delta,
        }


# ---- the target and its attributions -------------------------------------------------------


class TargetFunction:
    """f(embeddings) for one sentence: the model run to the site (early exit) and the target
    read off its text tokens. Callable on `[rows, seq, d_model]` word embeddings -> `[rows]`."""

    def __init__(
        self,
        loaded: LoadedModel,
        site: Site,
        reading: Callable[[Tensor], Tensor],
        attention_mask: Tensor,
        text: Tensor,
    ) -> None:
        self.loaded, self.site, self.reading = loaded, site, reading
        self.mask, self.text = attention_mask, text  # (1, seq), (seq,) bool

    def __call__(self, embeds: Tensor) -> Tensor:
        rows = embeds.shape[0]
        with read_sites(self.loaded, [self.site], early_exit=True, select=lambda t: t) as r:
            h = r.run(inputs_embeds=embeds, attention_mask=self.mask.expand(rows, -1))
        values = h[self.site.name][:, self.text]  # (rows, text tokens, width)
        return self.reading(values).sum(-1)  # (rows,)


def target_reading(
    kind: str, index: int, sae: Any, direction: Tensor | None
) -> Callable[[Tensor], Tensor]:
    """a_t from `[rows, tokens, width]` site values -> `[rows, tokens]` (module docstring)."""
    if kind == "neuron":
        return lambda h: h[..., index]
    if kind == "direction":
        assert direction is not None
        d = direction
        return lambda h: h @ d.to(h)

    def feature(h: Tensor) -> Tensor:
        flat = h.reshape(-1, h.shape[-1]).to(sae.W_dec.dtype)
        return sae.encode(flat)[:, index].reshape(h.shape[:-1]).to(h.dtype)

    return feature


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """captum draws noise from torch's global generator: seed it and restore it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def token_scores(
    f: TargetFunction,
    embeds: Tensor,
    method: str,
    *,
    baseline: Tensor | None = None,
    steps: int = 32,
    batch_size: int = 32,
    noise_samples: int = 10,
    stdev: float = 0.01,
    seed: int = 0,
) -> tuple[Tensor, float | None]:
    """One score per token (`[seq]`) of `method` on `embeds` (`[1, seq, d_model]`), computed by
    captum; for integrated gradients also the relative completeness error."""
    from captum.attr import (
        InputXGradient,
        IntegratedGradients,
        NoiseTunnel,
        Saliency,
    )

    x = embeds.detach().clone().requires_grad_(True)
    delta = None
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore", UserWarning)  # captum on inputs it sets to need grad
        if method == "saliency":
            attr = Saliency(f).attribute(x, abs=True)
        elif method == "gradient_x_input":
            attr = InputXGradient(f).attribute(x)
        elif method == "smoothgrad":
            with _seeded(seed):
                attr = NoiseTunnel(Saliency(f)).attribute(
                    x, nt_type="smoothgrad", nt_samples=noise_samples, stdevs=stdev,
                    nt_samples_batch_size=batch_size,
                )  # fmt: skip
        else:
            assert baseline is not None
            attr, err = IntegratedGradients(f).attribute(
                x, baselines=baseline, n_steps=steps, internal_batch_size=batch_size,
                return_convergence_delta=True,
            )  # fmt: skip
            with torch.no_grad():
                gap = float((f(x) - f(baseline)).abs()[0])
            delta = float(err.abs()[0]) / gap if gap > 0 else None
    return attr.detach().sum(-1)[0].double(), delta


def make_baseline(
    kind: str, embeds: Tensor, text: Tensor, table: Tensor, tokenizer: Any, seed: int
) -> Tensor:
    """The integration baseline `kind` for `embeds [1, seq, d_model]`: text tokens replaced,
    special tokens kept (module docstring)."""
    base = embeds.detach().clone()
    if kind == "zero":
        base[0, text] = 0.0
    elif kind in ("pad", "mask"):
        token = pad_id(tokenizer) if kind == "pad" else getattr(tokenizer, "mask_token_id", None)
        if token is None:
            raise ParameterError("baselines", "baselines the tokenizer has a token for", kind)
        base[0, text] = table[int(token)].to(base)
    else:
        g = torch.Generator().manual_seed(seed)
        half = 3**0.5 * float(table.float().std())
        noise = (torch.rand(int(text.sum()), base.shape[-1], generator=g) * 2 - 1) * half
        base[0, text] = noise.to(base)
    return base


# ---- stability --------------------------------------------------------------------------------


def top_k_overlap(a: Tensor, b: Tensor, k: int) -> float:
    """|top_k(a) ∩ top_k(b)| / k for two score vectors over the same tokens."""
    ta, tb = set(a.topk(k).indices.tolist()), set(b.topk(k).indices.tolist())
    return len(ta & tb) / k


def shared_positions(a: Example, b: Example) -> tuple[list[int], list[int]]:
    """Positions of text tokens that an edit of one word leaves in place: the common prefix and
    common suffix of the two id lists (as positions in `a` and in `b`)."""
    n = min(len(a.ids), len(b.ids))
    p = 0
    while p < n and a.ids[p] == b.ids[p]:
        p += 1
    s = 0
    while s < n - p and a.ids[-1 - s] == b.ids[-1 - s]:
        s += 1
    pa = list(range(p)) + list(range(len(a.ids) - s, len(a.ids)))
    pb = list(range(p)) + list(range(len(b.ids) - s, len(b.ids)))
    keep = [i for i, pos in enumerate(pa) if a.text[pos]]
    return [pa[i] for i in keep], [pb[i] for i in keep]


def random_ranking_null(sizes: Sequence[int], k: int, draws: int, seed: int) -> dict[str, Tensor]:
    """`{"spearman": [draws], "top_k": [draws]}`: the mean over sentences (of `sizes` tokens)
    of each statistic for two independent random rankings, `draws` times."""
    g = torch.Generator().manual_seed(seed)
    rho = torch.zeros(draws, dtype=torch.float64)
    top = torch.zeros(draws, dtype=torch.float64)
    for n in sizes:
        a = torch.rand(draws, n, generator=g).argsort(-1).argsort(-1).double()  # ranks (draws, n)
        b = torch.rand(draws, n, generator=g).argsort(-1).argsort(-1).double()
        top += ((a >= n - k) & (b >= n - k)).sum(-1) / k
        a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
        rho += (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return {"spearman": rho / len(sizes), "top_k": top / len(sizes)}


def _summarise(
    comparison: str, statistic: Literal["spearman", "top_k"], values: Tensor, null: Tensor,
    config: AttributionsConfig,
) -> Stability:  # fmt: skip
    ci = bootstrap_ci(values, resamples=config.resamples, seed=config.seed)
    null_range = null_interval(null, method="random rankings")
    return Stability(comparison, statistic, ci, quantiles(values), null_range,
                     verdict(ci, null_range))  # fmt: skip


# ---- the analysis -----------------------------------------------------------------------------


def _resolve_target(
    config: AttributionsConfig, sae: Any, site: Site, direction: Tensor | None
) -> tuple[str, int, Tensor | None]:
    if not config.target:
        raise ParameterError("target", "feature:F, neuron:N or direction", "")
    kind, index = parse_target(config.target, parameter="target", direction=True)
    if kind == "feature":
        if sae is None:
            raise ParameterError("sae", "given to attribute to a feature", None)
        d_sae = int(sae.W_dec.shape[0])
        if index >= d_sae:
            raise ParameterError("target", f"a feature below d_sae={d_sae}", config.target)
    elif kind == "neuron":
        if index >= site.width:
            raise ParameterError(
                "target", f"a neuron below the site's width {site.width}", config.target
            )
    else:
        if direction is None and config.direction is not None:
            from polysemy.analysis.ablation import load_readout

            direction = load_readout(config.direction)
        if direction is None:
            raise ParameterError("direction", "a file (or tensor) for the direction target", None)
        direction = direction.reshape(-1).float()
        if direction.numel() != site.width:
            raise ParameterError(
                "direction", f"a direction of {site.width} numbers (the site's width)",
                f"{direction.numel()} numbers",
            )  # fmt: skip
    return kind, index, direction


def analyze_attributions(
    loaded: LoadedModel,
    config: AttributionsConfig | None = None,
    *,
    sae: Any = None,
    direction: Tensor | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = False,
    **options: Any,
) -> AttributionsResult:
    """Attribute `config.target` at its site to the input tokens of `examples` sentences of
    the `concepts` corpus and measure how stable the token rankings are under control edits,
    baselines and seeds; with `out`, write an `attributions` analysis folder. `direction`
    ([width]) overrides `config.direction`. Raises ParameterError naming `target`, `site`,
    `sae`, `direction`, `baselines` or `examples`."""
    from polysemy.corpora import generate_concepts

    config = configured(AttributionsConfig, config, options)
    require_captum()
    if sae is not None or config.target.startswith("feature"):
        site = resolve_site(loaded, sae_site(sae, config.site) if sae is not None else config.site)
    else:
        site = resolve_site(loaded, config.site)
    if not site.per_token:
        raise ParameterError("site", "a per-token site (e.g. a layer's output)", site.name)
    kind, index, direction = _resolve_target(config, sae, site, direction)
    if sae is not None:
        from polysemy.analysis.replay import check_sae_fits

        check_sae_fits(sae, site)
        if hasattr(sae, "eval"):
            sae.eval()
    model, tokenizer = loaded.model, loaded.tokenizer
    if tokenizer is None:
        raise ValueError("model has no tokenizer; attributions need one")
    table = _embedding_table(model)  # (vocab, d_model)
    for b in config.baselines:  # refuse a baseline the tokenizer lacks before any work
        if b == "mask" and getattr(tokenizer, "mask_token_id", None) is None:
            raise ParameterError("baselines", "baselines the tokenizer has a token for", b)
    if out is not None:
        start_analysis(out, force=force)
    device = table.device
    reading = target_reading(kind, index, sae, direction)

    # Sentences with a control twin where the target is non-zero (a silent feature has no
    # gradient to attribute).
    chosen: list[tuple[Example, Example, str]] = []
    sentences = generate_concepts(config.scan, seed=config.seed, split=config.split)
    for sentence in sentences:
        control = sentence.control.text
        if not control:
            continue
        pair = encode_examples(tokenizer, [sentence.text, control], seq_len=config.seq_len)
        if len(pair) != 2:
            continue
        if _target_value(loaded, site, reading, pair[0], device) != 0.0:
            chosen.append((pair[0], pair[1], sentence.text))
        if len(chosen) == config.examples:
            break
    if len(chosen) < config.examples:
        raise ParameterError(
            "examples",
            f"at most {len(chosen)}, the sentences among the first {config.scan} where "
            f"{config.target} is non-zero",
            config.examples,
        )

    methods = config.methods
    ig_base = config.baselines[0] if config.baselines else None
    cols: dict[str, list[float]] = {}
    sizes: list[int] = []
    records, deltas = [], []
    bar = progress_bar(len(chosen), desc="attributions", unit="sentence", enabled=progress)

    def put(name: str, a: Tensor, b: Tensor, row: int) -> None:
        for stat, value in (("spearman", spearman(a, b)), ("top_k", top_k_overlap(a, b, k))):
            cols.setdefault(f"{name}.{stat}", [float("nan")] * len(chosen))[row] = value

    k = config.top_k
    for row, (orig, twin, text) in enumerate(chosen):
        bar.update(1)
        scores: dict[str, Tensor] = {}
        per_twin: dict[str, Tensor] = {}
        by_base: dict[str, Tensor] = {}
        seeds_ig: list[Tensor] = []
        seeds_sg: list[Tensor] = []
        value = 0.0
        for which, ex in (("orig", orig), ("twin", twin)):
            one = _Sentence(loaded, site, reading, ex, table, tokenizer, config)
            target = {m: one.run(m, ig_base if m == "integrated_gradients" else None)
                      for m in methods}  # fmt: skip
            if which == "twin":
                per_twin = target
                continue
            scores = target
            if one.ig_delta is not None:
                deltas.append(one.ig_delta)
            if "integrated_gradients" in methods:
                by_base[config.baselines[0]] = scores["integrated_gradients"]
                for b in config.baselines[1:]:
                    by_base[b] = one.run("integrated_gradients", b)
                seeds_ig = (
                    [one.run("integrated_gradients", "noise", config.seed + i)
                     for i in range(config.seeds)]
                    if "noise" in config.baselines else []
                )  # fmt: skip
            if "smoothgrad" in methods:
                seeds_sg = [one.run("smoothgrad", None, config.seed + i)
                            for i in range(config.seeds)]  # fmt: skip
            value = one.value()
        txt_pos = [i for i, t in enumerate(orig.text) if t]
        sizes.append(len(txt_pos))
        pa, pb = shared_positions(orig, twin)
        if len(pa) >= k + 2:
            for m in methods:
                put(f"control/{m}", scores[m][pa], per_twin[m][pb], row)
        if len(txt_pos) >= k + 2:
            if "integrated_gradients" in methods:
                for b1, b2 in itertools.combinations(config.baselines, 2):
                    put(f"baselines/{b1}~{b2}", by_base[b1][txt_pos], by_base[b2][txt_pos], row)
                if seeds_ig:
                    _put_seed_pairs(cols, "seeds/integrated_gradients(noise)", seeds_ig,
                                    txt_pos, k, row, len(chosen))  # fmt: skip
            if "smoothgrad" in methods:
                _put_seed_pairs(cols, "seeds/smoothgrad", seeds_sg, txt_pos, k, row, len(chosen))
        cols.setdefault("target", [0.0] * len(chosen))[row] = value
        cols.setdefault("tokens", [0.0] * len(chosen))[row] = float(len(txt_pos))
        records.append(
            {
                "text": text,
                "tokens": tokenizer.convert_ids_to_tokens([orig.ids[i] for i in txt_pos]),
                "target": value,
                "scores": {m: [float(scores[m][i]) for i in txt_pos] for m in methods},
            }
        )
    bar.close()

    per_example = {name: torch.tensor(v, dtype=torch.float64) for name, v in cols.items()}
    stability = []
    for name, values in per_example.items():
        if name in ("target", "tokens"):
            continue
        comparison, stat = name.rsplit(".", 1)
        kept = ~values.isnan()
        if int(kept.sum()) < 2:
            continue
        sizes_kept = [n for n, keep in zip(sizes, kept.tolist(), strict=True) if keep]
        if comparison.startswith("control/"):  # compared over the tokens the edit left
            sizes_kept = [
                len(shared_positions(o, t)[0])
                for (o, t, _), keep in zip(chosen, kept.tolist(), strict=True)
                if keep
            ]
        null = random_ranking_null(sizes_kept, k, config.resamples, config.seed)
        stability.append(_summarise(comparison, stat, values[kept], null[stat], config))  # type: ignore[arg-type]
    result = AttributionsResult(
        site=site.name,
        target=config.target,
        n=len(chosen),
        stability=tuple(stability),
        per_example=per_example,
        ig_delta=float(torch.tensor(deltas).median()) if deltas else None,
    )
    if out is not None:
        inputs = {
            "model": loaded.name,
            "site": site.name,
            "target": config.target,
            "sae": None if sae is None else str((getattr(sae, "metadata", None) or {}).get("path")),
            "corpus": f"concepts:{config.split}",
            "quantiles": list(QUANTILES),
            "config": asdict(config),
        }
        files = {
            "stability.safetensors": {k2: v.contiguous() for k2, v in per_example.items()},
            "attributions.json": records,
        }
        write_analysis(out, "attributions", inputs=inputs, summary=result.summary(), files=files)
    return result


class _Sentence:
    """One sentence's target function and embeddings, and its attributions by any method."""

    def __init__(
        self, loaded: LoadedModel, site: Site, reading: Callable[[Tensor], Tensor],
        ex: Example, table: Tensor, tokenizer: Any, config: AttributionsConfig,
    ) -> None:  # fmt: skip
        ids = torch.tensor([ex.ids], device=table.device)
        self.text = torch.tensor(ex.text, device=table.device)
        self.f = TargetFunction(loaded, site, reading, torch.ones_like(ids), self.text)
        self.embeds = table[ids].detach()  # (1, seq, d_model)
        self.table, self.tokenizer, self.config = table, tokenizer, config
        self.stdev = config.noise_std * float(table.float().std())
        self.ig_delta: float | None = None

    def run(self, method: str, baseline: str | None = None, seed: int = 0) -> Tensor:
        """`[seq]` token scores of `method` (from `baseline` for integrated gradients)."""
        base = None
        if baseline is not None:
            base = make_baseline(baseline, self.embeds, self.text, self.table, self.tokenizer,
                                 seed)  # fmt: skip
        c = self.config
        scores, delta = token_scores(
            self.f, self.embeds, method, baseline=base, steps=c.steps, batch_size=c.batch_size,
            noise_samples=c.noise_samples, stdev=self.stdev, seed=seed,
        )  # fmt: skip
        if delta is not None and self.ig_delta is None:  # the first baseline's, seed 0
            self.ig_delta = delta
        return scores

    @torch.no_grad()
    def value(self) -> float:
        return float(self.f(self.embeds)[0])


def _put_seed_pairs(
    cols: dict[str, list[float]], name: str, runs: list[Tensor], pos: list[int], k: int,
    row: int, n: int,
) -> None:  # fmt: skip
    """Mean over seed pairs of each statistic, for one sentence."""
    pairs = list(itertools.combinations(runs, 2))
    rho = sum(spearman(a[pos], b[pos]) for a, b in pairs) / len(pairs)
    top = sum(top_k_overlap(a[pos], b[pos], k) for a, b in pairs) / len(pairs)
    cols.setdefault(f"{name}.spearman", [float("nan")] * n)[row] = rho
    cols.setdefault(f"{name}.top_k", [float("nan")] * n)[row] = top


def _embedding_table(model: Any) -> Tensor:
    """The word-embedding table `[vocab, d_model]` (what `inputs_embeds` replaces)."""
    weight = model.get_input_embeddings().weight
    assert isinstance(weight, Tensor)
    return weight.detach()


@torch.no_grad()
def _target_value(
    loaded: LoadedModel, site: Site, reading: Callable, ex: Example, device: Any
) -> float:
    ids = torch.tensor([ex.ids], device=device)
    text = torch.tensor(ex.text, device=device)
    with read_sites(loaded, [site], early_exit=True) as r:
        h = r.run(input_ids=ids, attention_mask=torch.ones_like(ids))[site.name]
    return float(reading(h[:, text]).sum())
