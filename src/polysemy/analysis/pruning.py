"""Magnitude pruning curves against downstream fidelity, on a real model and on toy models.

Pruning a fraction q of weights sets to 0 the q·N weights of smallest |w|: over all the
model's weight matrices at once (`global`), or q of each matrix (`per_layer`). The null is
`random` pruning of the same fraction (weights chosen uniformly; `random_draws` masks, whose
curves are averaged; the interval of its prunable fraction is that of one mask, so it holds
the mask-to-mask spread). Masks for increasing q are nested.

Real model (the weight matrices of its `nn.Linear` / `Conv1D` modules, the unused `pooler`
excepted): the fidelity of a pruned model on sentence i is cos(e_i^q, e_i) of its mean-pooled
last hidden state against the unpruned model's (as `analyze_fidelity` measures an SAE), and
its loss is L(q) = 1 - mean_i cos(e_i^q, e_i).

Toy models (`polysemy.toy`, trained here; the matrix W of each instance is pruned): the
importance-weighted reconstruction loss ℓ(x) of a sample, normalised between the unpruned
model and the fully pruned one, L(q) = (mean ℓ_q - mean ℓ_0) / (mean ℓ_1 - mean ℓ_0).
One toy instance per `toy_sparsity` value: sparsity 0 stores only as many features as it has
dimensions (no superposition), 0.99 stores all of them in superposition.

Headline: `prunable`, the largest fraction q with L(q') <= `tolerance` for every q' <= q (the
crossing linearly interpolated between grid points; the largest grid fraction when never
crossed), with a percentile bootstrap interval over sentences (toy: samples), for each scope
and for the random null. `verdict` is "effect" when magnitude pruning's whole interval lies
above the k-th largest of the random masks' prunable fractions, k = floor(0.05 (D + 1)) (a
one-sided 5% Monte-Carlo rank test; with D < 19 masks nothing is called an effect).

Files: `curves.safetensors`: `fractions [F]`; real model `<scope>.cosine [F, n]` per sentence
(`random.cosine [draws, F, n]`, one row per mask); toy `toy<i>.global.loss [F, samples]`,
`toy<i>.random.loss [draws, F, samples]`, `toy<i>.loss_0` and `toy<i>.loss_full [samples]`;
`layers.json`: per matrix, the fraction of its weights the global scope prunes at each q.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.replay import mean_pool, pad_examples, pad_id, take_examples
from polysemy.analysis.stats import Interval, Verdict, bootstrap_ci, verdict
from polysemy.models.loading import LoadedModel
from polysemy.progress import progress_bar
from polysemy.validation import ParameterError, check_choice, check_float, check_int, configured

logger = logging.getLogger(__name__)

SCOPES = ("global", "per_layer")
DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class PruningConfig:
    """Which fractions to prune, how, and what fidelity loss counts as small."""

    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    """Fractions of weights pruned, each in [0, 1], as a comma list (0 is always added)."""
    tolerance: float = 0.01
    """Fidelity loss L(q) still counted as a small hit (the `prunable` threshold)."""
    scopes: tuple[str, ...] = SCOPES
    """Magnitude pruning scopes, as a comma list: global, per_layer."""
    random_draws: int = 19
    """Random pruning masks (the null): the curve is their mean, the interval of the prunable
    fraction that of one mask; the verdict is a 5% rank test, which needs at least 19."""
    examples: int = 200
    """Sentences the real model's fidelity is measured on; fewer is an error (0: toy only)."""
    seq_len: int = 64
    """Tokens per sentence, special tokens included (longer documents are cut)."""
    batch_size: int = 32
    """Sentences per forward pass."""
    toy: bool = True
    """Prune toy models (one per `toy_sparsity` value) beside the real model."""
    toy_sparsity: tuple[float, ...] = (0.0, 0.99)
    """Sparsity of each toy model, as a comma list (0: no superposition; 0.99: superposition)."""
    toy_features: int = 20
    """Features n of the toy models."""
    toy_hidden: int = 5
    """Hidden dimensions m of the toy models."""
    toy_steps: int = 5000
    """Training steps of the toy models."""
    toy_samples: int = 10000
    """Fresh samples each toy model's loss is measured on."""
    resamples: int = 1000
    """Bootstrap resamples of every interval."""
    seed: int = 0
    """Seed of the random masks, the toy models and the bootstrap."""

    def __post_init__(self) -> None:
        for name in ("fractions", "scopes", "toy_sparsity"):
            value = getattr(self, name)
            if isinstance(value, str):  # a comma list, as the command line gives it
                value = tuple(v.strip() for v in value.split(",") if v.strip())
                if name != "scopes":
                    value = tuple(_number(name, v) for v in value)
            object.__setattr__(self, name, tuple(value))
        for q in self.fractions:
            check_float("fractions", q, least=0.0, most=1.0)
        if not self.fractions:
            raise ParameterError("fractions", "at least one fraction in [0, 1]", "")
        object.__setattr__(
            self, "fractions", tuple(sorted({0.0, *(float(q) for q in self.fractions)}))
        )
        check_float("tolerance", self.tolerance, above=0.0, most=1.0)
        for scope in self.scopes:
            check_choice("scopes", scope, SCOPES)
        if not self.scopes or len(set(self.scopes)) != len(self.scopes):
            raise ParameterError("scopes", "global and/or per_layer, without repeats", self.scopes)
        check_int("random_draws", self.random_draws, least=1)
        check_int("examples", self.examples, least=0)
        if self.examples == 1:
            raise ParameterError("examples", "0 (toy models only) or an int >= 2", 1)
        check_int("seq_len", self.seq_len, least=4)
        check_int("batch_size", self.batch_size, least=1)
        for sparsity in self.toy_sparsity:
            check_float("toy_sparsity", sparsity, least=0.0, most=1.0)
        if self.toy and not self.toy_sparsity:
            raise ParameterError("toy_sparsity", "at least one value when toy is set", ())
        if not self.toy and self.examples == 0:
            raise ParameterError(
                "examples", "an int >= 2 when toy models are off (nothing to prune)", 0
            )
        check_int("toy_features", self.toy_features, least=2)
        check_int("toy_hidden", self.toy_hidden, least=1)
        check_int("toy_steps", self.toy_steps, least=1)
        check_int("toy_samples", self.toy_samples, least=2)
        check_int("resamples", self.resamples, least=100)
        check_int("seed", self.seed)


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParameterError(name, "a comma list of numbers in [0, 1]", text) from None


# ---- masks ------------------------------------------------------------------------------------


def keep_masks(
    weights: Sequence[Tensor], fraction: float, scope: str, scores: Sequence[Tensor] | None = None
) -> list[Tensor]:
    """Bool masks (True = kept) pruning `fraction` of the weights of lowest score (default
    |w|), over all matrices at once (`global`) or within each (`per_layer`)."""
    scores = [w.detach().abs() for w in weights] if scores is None else list(scores)
    if fraction <= 0.0:
        return [torch.ones_like(s, dtype=torch.bool) for s in scores]
    if scope == "per_layer":
        return [_keep_lowest_out(s.flatten(), fraction).reshape(s.shape) for s in scores]
    flat = torch.cat([s.flatten().float() for s in scores])
    keep = _keep_lowest_out(flat, fraction)
    return [part.reshape(s.shape) for part, s in zip(keep.split([s.numel() for s in scores]),
                                                        scores, strict=True)]  # fmt: skip


def _keep_lowest_out(scores: Tensor, fraction: float) -> Tensor:
    k = round(fraction * scores.numel())
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        keep[scores.argsort()[:k]] = False  # exactly k pruned, ties broken by position
    return keep


@contextlib.contextmanager
def pruned(weights: Sequence[Tensor], masks: Sequence[Tensor]) -> Iterator[None]:
    """Zero the masked-out entries of `weights` in place inside the block; the original values
    are put back on exit, error or not."""
    saved = [w.detach().clone() for w in weights]
    try:
        with torch.no_grad():
            for w, m in zip(weights, masks, strict=True):
                w.mul_(m.to(w.dtype))
        yield
    finally:
        with torch.no_grad():
            for w, s in zip(weights, saved, strict=True):
                w.copy_(s)


def prunable_matrices(model: nn.Module) -> dict[str, Tensor]:
    """Module name -> weight of each `nn.Linear` / `Conv1D` module (the `pooler`, which the
    mean-pooled embedding never reads, excepted)."""
    out = {}
    for name, module in model.named_modules():
        if name.split(".")[0] == "pooler":
            continue
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            weight = getattr(module, "weight", None)
            if isinstance(weight, Tensor) and weight.dim() == 2:
                out[name] = weight
    return out


# ---- the prunable fraction --------------------------------------------------------------------


def prunable_fraction(fractions: Tensor, loss: Tensor, tolerance: float) -> Tensor:
    """Largest q with L(q') <= tolerance for all q' <= q, linearly interpolated at the first
    crossing; `loss [..., F]` over increasing `fractions [F]` -> `[...]`."""
    out = torch.full(loss.shape[:-1], float(fractions[-1]), dtype=torch.float64)
    done = torch.zeros(loss.shape[:-1], dtype=torch.bool)
    for i in range(1, fractions.numel()):
        crossing = ~done & (loss[..., i] > tolerance)
        lo, hi = loss[..., i - 1], loss[..., i]
        t = ((tolerance - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)
        q = fractions[i - 1] + t * (fractions[i] - fractions[i - 1])
        out = torch.where(crossing, q.double(), out)
        done |= crossing
    first_bad = loss[..., 0] > tolerance
    return torch.where(first_bad, torch.zeros_like(out), out)


@dataclass(frozen=True)
class PruningCurve:
    """One pruning scheme's loss curve and how much it can prune within the tolerance."""

    scheme: str
    """`global`, `per_layer` or `random`."""
    loss: tuple[float, ...]
    """L(q) at each fraction."""
    loss_ci: tuple[tuple[float, float], ...]
    """Bootstrap interval of each L(q)."""
    prunable: Interval
    """Largest fraction within the tolerance, with its bootstrap interval."""
    verdict: Verdict | None = None
    """Magnitude scopes: the prunable interval against the random masks' (`random_mask_range`)."""
    null: Interval | None = None
    """Magnitude scopes: the range of random masks' prunable fractions the verdict reads."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": list(self.loss),
            "loss_ci": [list(c) for c in self.loss_ci],
            "prunable": self.prunable.to_dict(),
            "verdict_vs_random": self.verdict,
            "null_range": None if self.null is None else [self.null.low, self.null.high],
        }


@dataclass(frozen=True)
class ToyPruning:
    """The pruning curves of one toy model."""

    sparsity: float
    loss: float
    """Unpruned loss (importance-weighted MSE)."""
    loss_full: float
    """Loss with every weight pruned (the normaliser of L)."""
    represented: int
    """Features with ||W_i|| > 0.5: above `toy_hidden`, the model is in superposition."""
    curves: tuple[PruningCurve, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sparsity": self.sparsity,
            "loss": self.loss,
            "loss_full": self.loss_full,
            "represented": self.represented,
            "curves": {c.scheme: c.to_dict() for c in self.curves},
        }


@dataclass(frozen=True)
class PruningResult:
    """Pruning curves of the real model (when examples > 0) and of each toy model."""

    fractions: tuple[float, ...]
    tolerance: float
    model: str | None
    n: int
    """Sentences (real model)."""
    weights: int
    """Weights in the real model's prunable matrices."""
    curves: tuple[PruningCurve, ...]
    toys: tuple[ToyPruning, ...]
    per_example: dict[str, Tensor] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "fractions": list(self.fractions),
            "tolerance": self.tolerance,
            "model": self.model,
            "n": self.n,
            "weights": self.weights,
            "curves": {c.scheme: c.to_dict() for c in self.curves},
            "toy": [t.to_dict() for t in self.toys],
        }


def resample_weights(idx: Tensor, n: int) -> Tensor:
    """`[R, n]` weights (summing to 1 per row) of bootstrap resamples given as indices
    `[R, n]`: a resampled mean is then one matrix product, with no `[R, n, ...]` gather."""
    counts = torch.zeros(idx.shape[0], n, dtype=torch.float64)
    counts.scatter_add_(1, idx.long(), torch.ones_like(idx, dtype=torch.float64))
    return counts / n


def _curves(
    fractions: Tensor,
    per_example: dict[str, Tensor],
    loss_of: Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]],
    n: int,
    config: PruningConfig,
) -> tuple[PruningCurve, ...]:
    """Curves with bootstrap intervals over examples; `loss_of(per_example, w)` gives each
    magnitude scheme's `[R, F]` loss curve under resample weights `w [R, n]`
    (`resample_weights`), and random pruning's `[draws, R, F]`, one curve per mask.

    Random pruning's curve is the mean over masks; its `prunable` interval is that of ONE
    random mask: each resample also draws one of the masks, so the interval holds the
    mask-to-mask spread as well as the sampling noise (a null narrower than that would call
    one random mask better than another)."""
    index = torch.arange(n, dtype=torch.float64)
    schemes = list(loss_of(per_example, torch.full((1, n), 1.0 / n, dtype=torch.float64)))
    out: dict[str, tuple[list[float], list[tuple[float, float]], Interval]] = {}
    for scheme in schemes:

        def curve(idx: Tensor, scheme: str = scheme) -> Tensor:
            c = loss_of(per_example, resample_weights(idx, n))[scheme]
            return c.mean(0) if c.dim() == 3 else c  # (R, F)

        if scheme == "random":
            g = torch.Generator().manual_seed(config.seed + 1)

            def one_mask(idx: Tensor, g: torch.Generator = g) -> Tensor:
                per_mask = loss_of(per_example, resample_weights(idx, n))["random"]  # (D, R, F)
                q = prunable_fraction(fractions, per_mask, config.tolerance)  # (D, R)
                pick = torch.randint(0, q.shape[0], (q.shape[1],), generator=g)
                return q.gather(0, pick[None])[0]

            spread = bootstrap_ci(index, one_mask, resamples=config.resamples, seed=config.seed)
            whole = loss_of(per_example, torch.full((1, n), 1.0 / n, dtype=torch.float64))
            estimate = float(prunable_fraction(fractions, whole["random"], config.tolerance).mean())
            prunable = dataclasses.replace(spread, estimate=estimate, method="bootstrap+masks")
        else:
            prunable = bootstrap_ci(
                index, lambda idx: prunable_fraction(fractions, curve(idx), config.tolerance),
                resamples=config.resamples, seed=config.seed,
            )  # fmt: skip
        points, cis = [], []
        for f in range(fractions.numel()):

            def point(idx: Tensor, f: int = f) -> Tensor:
                return curve(idx)[:, f]

            ci = bootstrap_ci(index, point, resamples=config.resamples, seed=config.seed)
            points.append(ci.estimate)
            cis.append((ci.low, ci.high))
        out[scheme] = (points, cis, prunable)
    masks = loss_of(per_example, torch.full((1, n), 1.0 / n, dtype=torch.float64))["random"]
    null, decidable = random_mask_range(prunable_fraction(fractions, masks, config.tolerance)[:, 0])

    def judged(q: Interval) -> Verdict:
        v = verdict(q, null)
        return v if decidable or v == "no effect" else "inconclusive"

    curves = []
    for s, (p, c, q) in out.items():
        magnitude = s != "random"
        curves.append(PruningCurve(s, tuple(p), tuple(c), q, judged(q) if magnitude else None,
                                   null if magnitude else None))  # fmt: skip
    return tuple(curves)


def random_mask_range(per_mask: Tensor) -> tuple[Interval, bool]:
    """What magnitude pruning's prunable interval must lie above to count, as a one-sided
    Monte-Carlo rank test at 5%: with D random masks and k = floor(0.05 (D + 1)), the range
    [0, k-th largest mask's prunable fraction]; a mask exchangeable with the random ones ends
    above it with probability <= k / (D + 1) <= 5%. Also whether the test can decide (k >= 1,
    i.e. D >= 19)."""
    d = int(per_mask.numel())
    k = int(0.05 * (d + 1))
    ordered = per_mask.double().sort().values
    high = float(ordered[d - max(k, 1)])
    interval = Interval(float(per_mask.double().median()), 0.0, high, 0.95, d,
                        "random masks (rank test)")  # fmt: skip
    return interval, k >= 1


# ---- real model -------------------------------------------------------------------------------


@torch.inference_mode()
def _prune_model(
    loaded: LoadedModel, documents: Any, config: PruningConfig, progress: bool
) -> tuple[dict[str, Tensor], dict[str, list[float]], int]:
    model = loaded.model
    matrices = prunable_matrices(model)
    if not matrices:
        raise ValueError(f"model {type(model).__name__} has no Linear or Conv1D weights to prune")
    weights = list(matrices.values())
    examples = take_examples(loaded.tokenizer, documents, config.examples, seq_len=config.seq_len)
    device = weights[0].device
    pad = pad_id(loaded.tokenizer)
    batches = [
        pad_examples(examples[i : i + config.batch_size], pad, device)
        for i in range(0, len(examples), config.batch_size)
    ]

    def pooled() -> Tensor:
        out = []
        for b in batches:
            hidden = model(input_ids=b.input_ids, attention_mask=b.attention_mask)
            h = hidden if isinstance(hidden, Tensor) else hidden[0]
            out.append(mean_pool(h, b.attention_mask).double())
        return torch.cat(out)  # (n, d_model)

    clean = pooled()
    g = torch.Generator().manual_seed(config.seed)
    random_scores = [[torch.rand(w.shape, generator=g).to(device) for w in weights]
                     for _ in range(config.random_draws)]  # fmt: skip
    schemes = [(s, None) for s in config.scopes] + [("random", r) for r in random_scores]
    bar = progress_bar(len(schemes) * len(config.fractions), desc="pruning", enabled=progress)
    draws: dict[str, list[Tensor]] = {}
    layers: dict[str, list[float]] = {name: [] for name in matrices}
    for scheme, scores in schemes:
        rows = []
        for q in config.fractions:
            bar.update(1)
            masks = keep_masks(weights, q, "global" if scores is not None else scheme, scores)
            if scheme == "global":
                for name, m in zip(matrices, masks, strict=True):
                    layers[name].append(1.0 - float(m.float().mean()))
            with pruned(weights, masks):
                rows.append(F.cosine_similarity(pooled(), clean, dim=-1).cpu())
        draws.setdefault(scheme, []).append(torch.stack(rows))  # (F, n)
    bar.close()
    cosine = {f"{s}.cosine": v[0] for s, v in draws.items() if s != "random"}
    cosine["random.cosine"] = torch.stack(draws["random"])  # (draws, F, n)
    return cosine, layers, sum(w.numel() for w in weights)


# ---- toy models -------------------------------------------------------------------------------


def toy_losses(
    W: Tensor, b_final: Tensor, x: Tensor, importance: Tensor, masks: Sequence[Tensor]
) -> Tensor:
    """Per-sample loss ℓ(x) of a ReLU-output toy model (`W [m, n]`, `b_final [n]`) for each
    mask `[m, n]` (True = kept) on samples `x [samples, n]` -> `[masks, samples]`."""
    Wm = torch.stack([W * m for m in masks])  # (M, m, n)
    h = torch.einsum("sn,Mhn->Msh", x, Wm)  # (M, samples, m)
    y = torch.relu(torch.einsum("Msh,Mhn->Msn", h, Wm) + b_final)  # (M, samples, n)
    return (((y - x) ** 2) * importance).mean(-1).double()


def prune_toy(
    W: Tensor,
    b_final: Tensor,
    importance: Tensor,
    x: Tensor,
    config: PruningConfig,
    *,
    sparsity: float = float("nan"),
    scores: Tensor | None = None,
) -> tuple[ToyPruning, dict[str, Tensor]]:
    """Pruning curves of one ReLU-output toy model (`W [m, n]`) on samples `x [samples, n]`:
    magnitude (global) against random masks; also the per-sample losses. `scores` ([m, n])
    replace |W| as what the `global` scheme keeps the largest of (calibration judges a random
    mask exactly as magnitude pruning is judged)."""
    fractions = torch.tensor(config.fractions, dtype=torch.float64)
    g = torch.Generator().manual_seed(config.seed)
    randoms = [torch.rand(W.shape, generator=g) for _ in range(config.random_draws)]
    ones = torch.ones_like(W, dtype=torch.bool)
    base = toy_losses(W, b_final, x, importance, [ones, ~ones])  # unpruned, fully pruned
    by = None if scores is None else [scores]
    mag = toy_losses(W, b_final, x, importance,
                     [keep_masks([W], q, "global", by)[0] for q in config.fractions])  # fmt: skip
    rnd = torch.stack(
        [
            toy_losses(
                W,
                b_final,
                x,
                importance,
                [keep_masks([W], q, "global", [r])[0] for q in config.fractions],
            )
            for r in randoms
        ]
    )  # fmt: skip  (draws, F, samples)
    per = {"global.loss": mag, "random.loss": rnd, "loss_0": base[0], "loss_full": base[1]}

    def loss_of(p: dict[str, Tensor], w: Tensor) -> dict[str, Tensor]:
        l0, l1 = w @ p["loss_0"], w @ p["loss_full"]  # (R,) resampled mean losses
        scale = (l1 - l0).clamp_min(1e-12)[:, None]
        return {s: (torch.einsum("rn,...fn->...rf", w, p[f"{s}.loss"]) - l0[:, None]) / scale
                for s in ("global", "random")}  # fmt: skip

    curves = _curves(fractions, per, loss_of, x.shape[0], config)
    toy = ToyPruning(
        sparsity=sparsity,
        loss=float(base[0].mean()),
        loss_full=float(base[1].mean()),
        represented=int((W.norm(dim=0) > 0.5).sum()),
        curves=curves,
    )
    return toy, per


def _train_toys(config: PruningConfig) -> list[tuple[float, ToyPruning, dict[str, Tensor]]]:
    from polysemy.toy import ToyConfig, sample_features, train_toy

    sparsity = list(config.toy_sparsity)
    toy_config = ToyConfig.sweep(
        "relu-output", config.toy_features, config.toy_hidden, sparsity, decay=0.7,
        steps=config.toy_steps, seed=config.seed,
    )  # fmt: skip
    run = train_toy(toy_config)
    g = torch.Generator().manual_seed(config.seed + 1)
    x = sample_features(sparsity, config.toy_features, config.toy_samples, generator=g)
    out = []
    for i, s in enumerate(sparsity):
        importance = torch.tensor(toy_config.importance[i])
        toy, per = prune_toy(run.W[i], run.b_final[i], importance, x[i], config, sparsity=s)
        out.append((s, toy, per))
    return out


# ---- the analysis -----------------------------------------------------------------------------


def analyze_pruning(
    loaded: LoadedModel | None,
    documents: Any = None,
    config: PruningConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = False,
    **options: Any,
) -> PruningResult:
    """Magnitude-prune `loaded.model` (first `examples` documents of `documents`) and toy
    models at each fraction and measure the loss of fidelity against random pruning; with
    `out`, write a `pruning` analysis folder. The model's weights are restored after each
    fraction. Raises ParameterError naming `fractions`, `scopes`, `tolerance` or `examples`."""
    config = configured(PruningConfig, config, options)
    if config.examples > 0 and (loaded is None or documents is None):
        raise ParameterError("examples", "0 when no model and documents are given",
                             config.examples)  # fmt: skip
    if out is not None:
        start_analysis(out, force=force)
    fractions = torch.tensor(config.fractions, dtype=torch.float64)
    per_example: dict[str, Tensor] = {"fractions": fractions}
    curves: tuple[PruningCurve, ...] = ()
    layers: dict[str, list[float]] = {}
    weights = n = 0
    if config.examples > 0:
        assert loaded is not None
        cosine, layers, weights = _prune_model(loaded, documents, config, progress)
        per_example.update(cosine)
        n = config.examples

        def loss_of(p: dict[str, Tensor], w: Tensor) -> dict[str, Tensor]:
            # w @ cos^T: resampled mean cosine, (R, F), or (draws, R, F) for random masks
            return {k.split(".")[0]: 1.0 - torch.einsum("rn,...fn->...rf", w, p[k])
                    for k in p if k.endswith(".cosine")}  # fmt: skip

        curves = _curves(fractions, cosine, loss_of, n, config)
    toys = []
    for i, (_, toy, per) in enumerate(_train_toys(config) if config.toy else []):
        toys.append(toy)
        per_example.update({f"toy{i}.{k}": v for k, v in per.items()})
    result = PruningResult(
        fractions=config.fractions,
        tolerance=config.tolerance,
        model=None if config.examples == 0 or loaded is None else loaded.name,
        n=n,
        weights=weights,
        curves=curves,
        toys=tuple(toys),
        per_example=per_example,
    )
    if out is not None:
        inputs = {
            "model": result.model,
            "corpus": None if documents is None else str(getattr(documents, "name", "documents")),
            "config": asdict(config),
        }
        files: dict[str, Any] = {
            "curves.safetensors": {k: v.contiguous() for k, v in per_example.items()}
        }
        if layers:
            files["layers.json"] = layers
        write_analysis(out, "pruning", inputs=inputs, summary=result.summary(), files=files)
    return result
