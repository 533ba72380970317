"""Neurons as choruses: each unit of a model's own basis as a mixture of SAE features.

With an SAE at the site, every row's activation splits into feature contributions, the
decoder bias and the SAE's error:

    x_j = sum_f z_f W_dec[f, j] + b_dec[j] + e_j

Over the rows analysed, neuron j's *share* of feature f, and of the error line, are

    C[f, j] = sum_rows |z_f W_dec[f, j]| = (sum_rows z_f) |W_dec[f, j]|     (z_f >= 0)
    E[j]    = sum_rows |e_j|
    share[f, j] = C[f, j] / (sum_g C[g, j] + E[j]),   error_share[j] = E[j] / (same)

(the constant b_dec is the neuron's baseline, not activation carried by anything). Among the
features alone, p_f = C[f, j] / sum_g C[g, j], the *effective number of features* is
exp(-sum_f p_f log p_f) (1 when one feature carries the neuron, n for n equal voices) and
the *participation ratio* 1 / sum_f p_f^2. A neuron is *monosemantic* when its top feature's
share (error in the denominator) is at least `monosemantic_threshold`.

Null: the same statistics for a random rotation of the basis (Haar orthogonal Q; the
"neurons" become random unit directions q_j, with C'[f, j] = (sum_rows z_f) |W_dec[f] . q_j|
and E'[j] = sum_rows |e . q_j|). A privileged basis (an MLP activation after its
nonlinearity) should have fewer effective features than random directions; a residual
stream's axes are arbitrary, and the analysis says so.

Context picks which meaning shows up: each neuron's top rows by activation are grouped by the
feature that contributes most to the neuron on that row, and traced to text.

>>> result = analyze_neurons(sae, store, out="analyses/neurons")   # doctest: +SKIP
>>> result.effective_features_median, result.baseline_effective_features_median  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.activations.store import SPLITS, ActivationStore, Split
from polysemy.analysis.contexts import TextWindows, require_traces
from polysemy.analysis.folder import start_analysis_on_main, write_analysis
from polysemy.analysis.stats import Interval, bootstrap_ci, quantiles, verdict
from polysemy.progress import progress_bar
from polysemy.sae import distributed as dist_utils
from polysemy.validation import ParameterError, check_choice, check_float, check_int, configured

logger = logging.getLogger(__name__)

Basis = Literal["auto", "privileged", "arbitrary"]
Share = Literal["squared", "abs"]
SHARE_POWER = {"abs": 1, "squared": 2}
ARBITRARY_WARNING = (
    "the site's basis is not privileged (a residual stream or similar): its 'neurons' are "
    "arbitrary axes, so their mixtures say nothing about the model's units"
)
# A whole layer's output (the residual stream of BERT/GPT-style blocks) or the embeddings.
_RESIDUAL_SITE = re.compile(r"(^|\.)(layer|layers|h|blocks?)\.\d+(\.output)?$|embeddings")


@dataclass(frozen=True)
class NeuronsConfig:
    """What `analyze_neurons` reads and reports."""

    split: Split = "all"
    """Rows of the store to analyse: train, heldout or all."""
    rows: int = 65_536
    """At most this many rows (the first of the split, in store order)."""
    batch_size: int = 2048
    """Rows encoded at a time (memory, not results)."""
    neurons: tuple[int, ...] = ()
    """Neurons to analyse (empty: every neuron of the site)."""
    top_features: int = 20
    """Features listed per neuron in neurons.json, by share."""
    top_contexts: int = 12
    """Top-activating rows kept per neuron, grouped by the feature that dominates each."""
    window: int = 8
    """Tokens shown on each side of a context's token."""
    texts: bool = True
    """Trace contexts to text (needs a store harvested from text, with its tokenizer)."""
    basis: Basis = "auto"
    """Whether the site's axes are privileged: auto reads the site name (a whole layer's
    output or the embeddings is a residual stream: arbitrary axes, reported with a warning)."""
    share: Share = "squared"
    """How a contribution is sized: squared (its energy, sum_rows (z_f W_dec[f, j])^2) or
    abs (sum_rows |z_f W_dec[f, j]|, which small decoder leakage of many features inflates)."""
    monosemantic_threshold: float = 0.8
    """Top feature share at or above which a neuron counts as monosemantic."""
    resamples: int = 2000
    """Bootstrap resamples of the intervals over neurons."""

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        check_int("rows", self.rows, least=1)
        check_int("batch_size", self.batch_size, least=1)
        if not isinstance(self.neurons, tuple):
            raise ParameterError("neurons", "a tuple of neuron indices", self.neurons)
        for j in self.neurons:
            check_int("neurons", j, least=0)
        check_int("top_features", self.top_features, least=1)
        check_int("top_contexts", self.top_contexts, least=1)
        check_int("window", self.window, least=0, most=512)
        check_choice("basis", self.basis, get_args(Basis))
        check_choice("share", self.share, get_args(Share))
        check_float("monosemantic_threshold", self.monosemantic_threshold, above=0.0, most=1.0)
        check_int("resamples", self.resamples, least=100)


@dataclass(frozen=True)
class NeuronsResult:
    """Per-neuron mixtures and their summary against the rotated-basis null."""

    neurons: Tensor
    """`[n]` int64: the neurons analysed."""
    shares: Tensor
    """`[n, top_features]` float64: shares of each neuron's top features (error included in
    the denominator), descending."""
    top_features: Tensor
    """`[n, top_features]` int64: those features."""
    error_share: Tensor
    """`[n]`: share of the SAE's error line."""
    effective_features: Tensor
    """`[n]`: exp of the entropy of the feature shares (error excluded)."""
    participation_ratio: Tensor
    """`[n]`: 1 / sum of squared feature shares (error excluded)."""
    baseline_effective_features: Tensor
    """`[d_in]`: the same for the directions of a random rotation of the basis."""
    baseline_top_share: Tensor
    """`[d_in]`: top feature share of each rotated direction."""
    effective_features_median: Interval
    monosemantic_fraction: Interval
    baseline_effective_features_median: Interval
    baseline_monosemantic_fraction: Interval
    verdict: str
    """`effect` when the median effective number differs from the rotated basis's."""
    privileged: bool
    """False for a residual stream (its neurons are arbitrary axes)."""
    warning: str | None
    rows: int
    """Rows analysed."""
    path: str | None
    """The analysis folder written, if any."""

    def summary(self) -> dict[str, Any]:
        """The `--json` object: headline figures, each interval beside it, the null."""
        return {
            "n_neurons": int(self.neurons.numel()),
            "rows": self.rows,
            "effective_features_median": self.effective_features_median.estimate,
            "effective_features_median_ci": self.effective_features_median.to_dict(),
            "effective_features_quantiles": quantiles(self.effective_features),
            "participation_ratio_median": float(self.participation_ratio.median()),
            "monosemantic_fraction": self.monosemantic_fraction.estimate,
            "monosemantic_fraction_ci": self.monosemantic_fraction.to_dict(),
            "error_share_median": float(self.error_share.median()),
            "baseline": {
                "kind": "random rotation of the basis",
                "effective_features_median": self.baseline_effective_features_median.estimate,
                "effective_features_median_ci": self.baseline_effective_features_median.to_dict(),
                "effective_features_quantiles": quantiles(self.baseline_effective_features),
                "monosemantic_fraction": self.baseline_monosemantic_fraction.estimate,
                "monosemantic_fraction_ci": self.baseline_monosemantic_fraction.to_dict(),
            },
            "verdict": self.verdict,
            "privileged": self.privileged,
            "warning": self.warning,
        }


def is_privileged(site: str, basis: Basis = "auto") -> bool:
    """Whether a site's axes are the model's own units (see `NeuronsConfig.basis`)."""
    if basis != "auto":
        return basis == "privileged"
    return _RESIDUAL_SITE.search(site) is None


def random_rotation(d: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    """A Haar-random orthogonal `[d, d]` matrix (QR of a Gaussian, signs fixed by R's
    diagonal so the distribution is uniform; Mezzadri 2007)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


def effective_numbers(mass: Float[Tensor, "n_features d"]) -> Tensor:
    """exp of the entropy of each column's shares p_f = mass[f, j] / sum_g mass[g, j]: `[d]`."""
    p = mass.double() / mass.double().sum(0).clamp_min(1e-300)
    return (-(p * torch.log(p.clamp_min(1e-300))).sum(0)).exp()


class _Mixtures:
    """Effective numbers and top shares from C = mass[:, None] * |W| and the error line."""

    def __init__(
        self, mass: Tensor, W: Tensor, error: Tensor, top: int, power: int, chunk: int = 256
    ):
        d_sae, d = W.shape
        self.effective = torch.empty(d, dtype=torch.float64)
        self.participation = torch.empty(d, dtype=torch.float64)
        self.error_share = torch.empty(d, dtype=torch.float64)
        self.shares = torch.empty(d, min(top, d_sae), dtype=torch.float64)
        self.features = torch.empty(d, min(top, d_sae), dtype=torch.int64)
        for a in range(0, d, chunk):  # bounded memory: [d_sae, chunk] at a time
            c = mass.double()[:, None] * W[:, a : a + chunk].double().abs() ** power
            feat_total = c.sum(0)  # (chunk,)
            total = (feat_total + error[a : a + chunk]).clamp_min(1e-300)
            p = c / feat_total.clamp_min(1e-300)
            entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(0)
            self.effective[a : a + chunk] = entropy.exp()
            self.participation[a : a + chunk] = 1.0 / (p * p).sum(0).clamp_min(1e-300)
            self.error_share[a : a + chunk] = error[a : a + chunk] / total
            vals, idx = c.topk(self.shares.shape[1], dim=0)  # (top, chunk)
            self.shares[a : a + chunk] = (vals / total).t()
            self.features[a : a + chunk] = idx.t()


def _check_inputs(sae: Any, store: ActivationStore, config: NeuronsConfig) -> None:
    if store.d_in != sae.d_in:
        raise ParameterError(
            "sae", f"an SAE with d_in={store.d_in} (the store's width)", f"d_in={sae.d_in}"
        )
    bad = [j for j in config.neurons if j >= store.d_in]
    if bad:
        raise ParameterError("neurons", f"indices in [0, {store.d_in})", bad[0])
    if store.split_rows(config.split) == 0:
        raise ParameterError("split", "a split with rows", config.split)


@torch.no_grad()
def analyze_neurons(
    sae: Any,
    store: ActivationStore,
    config: NeuronsConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> NeuronsResult:
    """Each neuron of `store`'s site as a mixture of `sae`'s features (module docstring),
    against a random rotation of the basis; writes an analysis folder to `out` when given
    (`neurons.json`, `contexts.json`, `neurons.safetensors`).

    Under torchrun every process calls it alike: rank r reads batches r, r + N, ... of the
    pass, the sums are all_reduced and the top rows merged, so every rank returns the
    one-process result (sums equal to float64 rounding); rank 0 alone writes `out`. A rank
    that fails stops the others within `HEARTBEAT_BATCHES` batches (docs/scale.md).
    """
    config = configured(NeuronsConfig, config, options)
    _check_inputs(sae, store, config)
    if config.texts:
        require_traces(store, "neuron contexts")
    info = dist_utils.init_from_env(device)
    device = dist_utils.rank_device(device, info)
    folder = start_analysis_on_main(out, info, force=force)
    d = store.d_in
    neurons = torch.tensor(config.neurons or range(d), dtype=torch.int64)
    sae = sae.to(device).eval()
    W_dec = sae.W_dec.detach().float()  # (d_sae, d)
    Q = random_rotation(d, seed=seed).to(device)

    # One pass: feature mass sum_rows z_f, error lines in both bases, top rows per neuron.
    lo, hi = store.split_range(config.split)
    n_rows = min(config.rows, hi - lo)
    p = SHARE_POWER[config.share]
    mass = torch.zeros(sae.d_sae, dtype=torch.float64, device=device)
    error = torch.zeros(d, dtype=torch.float64, device=device)
    error_rot = torch.zeros(d, dtype=torch.float64, device=device)
    n_top = min(config.top_contexts, n_rows)
    best = torch.full((d, n_top), -torch.inf, device=device)
    best_row = torch.zeros((d, n_top), dtype=torch.int64, device=device)
    world, beat = info.world_size, dist_utils.HEARTBEAT_BATCHES * info.world_size
    bar = progress_bar(n_rows, desc="neurons", unit="row", enabled=progress and info.is_main)
    # a failure here is told to the other ranks before it is raised
    with dist_utils.reporting_failures(info), contextlib.closing(bar):
        for i, a in enumerate(range(0, n_rows, config.batch_size)):
            if info.enabled and i and i % beat == 0:
                dist_utils.stop_if_a_rank_failed(info, job="neurons pass")
            if i % world != info.rank:
                continue  # another rank's batch
            b = min(a + config.batch_size, n_rows)
            x = store.read(a, b, split=config.split, device=device)  # (batch, d)
            z = sae.encode(x)  # (batch, d_sae)
            e = x - sae.decode(z)  # (batch, d)
            mass += z.abs().pow(p).sum(0, dtype=torch.float64)
            error += e.abs().pow(p).sum(0, dtype=torch.float64)
            error_rot += (e @ Q).abs().pow(p).sum(0, dtype=torch.float64)
            # Streaming top rows: topk over the running best and this batch, per neuron.
            vals = torch.cat([best, x.t()], dim=1)  # (d, n_top + batch)
            rows = torch.cat(
                [best_row, torch.arange(lo + a, lo + b, device=device).expand(d, -1)], 1
            )
            best, pick = vals.topk(n_top, dim=1)
            best_row = rows.gather(1, pick)
            bar.update(min((b - a) * world, n_rows - bar.n))
    if info.enabled:
        dist_utils.stop_if_a_rank_failed(info, job="neurons pass")
        for t in (mass, error, error_rot):
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        # Top rows: every rank's best n_top per neuron, merged into the overall best n_top.
        best_all = [torch.empty_like(best) for _ in range(world)]
        rows_all = [torch.empty_like(best_row) for _ in range(world)]
        torch.distributed.all_gather(best_all, best)
        torch.distributed.all_gather(rows_all, best_row)
        best, pick = torch.cat(best_all, dim=1).topk(n_top, dim=1)
        best_row = torch.cat(rows_all, dim=1).gather(1, pick)

    mass, error, error_rot = mass.cpu(), error.cpu(), error_rot.cpu()
    own = _Mixtures(mass, W_dec.cpu()[:, neurons], error[neurons], config.top_features, p)
    rotated = _Mixtures(mass, (W_dec @ Q).cpu(), error_rot, config.top_features, p)
    mono = (own.shares[:, 0] >= config.monosemantic_threshold).double()
    mono_null = (rotated.shares[:, 0] >= config.monosemantic_threshold).double()
    median = lambda t: t.median(dim=-1).values  # noqa: E731  (a [resamples, n] statistic)
    eff_ci = bootstrap_ci(own.effective, median, resamples=config.resamples, seed=seed)
    null_ci = bootstrap_ci(rotated.effective, median, resamples=config.resamples, seed=seed)
    privileged = is_privileged(str(store.source.get("site", "")), config.basis)
    warning = None if privileged else ARBITRARY_WARNING
    if warning:
        logger.warning("%s", warning)
    result = NeuronsResult(
        neurons=neurons,
        shares=own.shares,
        top_features=own.features,
        error_share=own.error_share,
        effective_features=own.effective,
        participation_ratio=own.participation,
        baseline_effective_features=rotated.effective,
        baseline_top_share=rotated.shares[:, 0],
        effective_features_median=eff_ci,
        monosemantic_fraction=bootstrap_ci(mono, resamples=config.resamples, seed=seed),
        baseline_effective_features_median=null_ci,
        baseline_monosemantic_fraction=bootstrap_ci(
            mono_null, resamples=config.resamples, seed=seed
        ),
        verdict=verdict(eff_ci, null_ci),
        privileged=privileged,
        warning=warning,
        rows=n_rows,
        path=str(folder) if folder is not None else None,
    )
    if folder is None:
        return result
    contexts = _contexts(sae, store, config, neurons, best[neurons], best_row[neurons], W_dec)
    write_analysis(
        folder,
        "neurons",
        inputs={
            "sae": str(getattr(sae, "path", "")) or None,
            "acts": str(store.path),
            "site": store.source.get("site"),
            "split": config.split,
            "rows": n_rows,
            "seed": seed,
            "config": {**asdict(config), "neurons": list(config.neurons)},
        },
        summary=result.summary(),
        files={
            "neurons.json": _records(result),
            "contexts.json": contexts,
            "neurons.safetensors": {
                "neuron": neurons,
                "effective_features": own.effective,
                "participation_ratio": own.participation,
                "error_share": own.error_share,
                "top_share": own.shares[:, 0].contiguous(),
                "baseline_effective_features": rotated.effective,
                "baseline_participation_ratio": rotated.participation,
                "baseline_top_share": rotated.shares[:, 0].contiguous(),
                "feature_mass": mass,
            },
        },
    )
    return result


def _records(result: NeuronsResult) -> list[dict[str, Any]]:
    """neurons.json: per neuron `{"neuron", "effective_features", "features": [[f, share]]}`
    plus the participation ratio and the error line's share."""
    return [
        {
            "neuron": int(j),
            "effective_features": float(eff),
            "participation_ratio": float(pr),
            "error_share": float(err),
            "features": [[int(f), float(s)] for f, s in zip(feats, shares, strict=True)],
        }
        for j, eff, pr, err, feats, shares in zip(
            result.neurons.tolist(),
            result.effective_features.tolist(),
            result.participation_ratio.tolist(),
            result.error_share.tolist(),
            result.top_features.tolist(),
            result.shares.tolist(),
            strict=True,
        )
    ]


def dominant_features(
    sae: Any,
    x: Float[Tensor, "rows d_in"],
    neuron: Tensor,
    W_dec: Float[Tensor, "d_sae d_in"],
) -> tuple[Tensor, Tensor]:
    """For row i and its neuron `neuron[i]`: the feature whose contribution z_f W_dec[f, j]
    is largest, and that contribution."""
    z = sae.encode(x)  # (rows, d_sae)
    contribution = z * W_dec[:, neuron].t()  # (rows, d_sae)
    value, feature = contribution.max(dim=1)
    return feature, value


def _contexts(
    sae: Any,
    store: ActivationStore,
    config: NeuronsConfig,
    neurons: Tensor,
    best: Tensor,
    best_row: Tensor,
    W_dec: Tensor,
) -> list[dict[str, Any]]:
    """contexts.json: per neuron, its top rows grouped by the feature dominating each."""
    device = best.device
    windows = TextWindows(store, window=config.window) if config.texts else None
    flat_rows = best_row.flatten().cpu()  # (n * n_top,)
    flat_neuron = neurons.repeat_interleave(best.shape[1])
    feature = torch.empty_like(flat_rows)
    contribution = torch.empty(flat_rows.numel())
    for a in range(0, flat_rows.numel(), 512):  # (512, d_sae) dense codes at a time
        rows = flat_rows[a : a + 512]
        x = torch.stack([store.read(int(r), int(r) + 1)[0] for r in rows]).to(device)
        f, v = dominant_features(sae, x, flat_neuron[a : a + 512].to(device), W_dec)
        feature[a : a + 512], contribution[a : a + 512] = f.cpu(), v.cpu()
    texts = windows.text(flat_rows) if windows is not None else [None] * flat_rows.numel()
    out, n_top = [], best.shape[1]
    for i, j in enumerate(neurons.tolist()):
        groups: dict[int, list[dict[str, Any]]] = {}
        for t in range(i * n_top, (i + 1) * n_top):
            entry: dict[str, Any] = {
                "row": int(flat_rows[t]),
                "activation": float(best.flatten()[t]),
                "contribution": float(contribution[t]),
            }
            if texts[t] is not None:
                entry["text"] = texts[t]
            groups.setdefault(int(feature[t]), []).append(entry)
        ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
        out.append({"neuron": j, "groups": [{"feature": f, "contexts": c} for f, c in ordered]})
    return out
