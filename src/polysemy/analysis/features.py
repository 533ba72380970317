"""Features: what every SAE feature does, from one streaming pass over a store.

Per feature f (formulas; arrays in `features.safetensors`, examples in `examples.json`):

- density: rows where z_f > 0, over rows analysed; mean activation over those rows;
- histogram: counts of z_f on fixed log-spaced bins shared by every feature (`hist_low` to
  `hist_high`; values outside go to the end bins);
- top examples: the `examples` rows of largest z_f, traced to a token window;
- quantile examples: a uniform sample of `sample_size` firings per feature (streaming top-k
  on random keys), from which `quantile_examples` rows at evenly spaced activation quantiles
  (q = (i + 1/2) / n) are shown: where the feature fires weakly, not only where it peaks;
- spread over neurons: with w = W_dec[f], the participation ratio (sum w_j^2)^2 / sum w_j^4
  (1: one neuron, d_in: all equally), and the fewest neurons holding 50% and 90% of
  ||w||^2. Null: the same for random Gaussian directions of equal norm (PR about d_in / 3);
  a feature is *concentrated* when its PR is below the null's 2.5% quantile;
- nearest features: the `neighbours` decoder rows of largest cosine with W_dec[f];
- co-occurrence partners: over the first `cooccurrence_rows` rows, the `partners` features
  g with the largest excess c_fg - n_f n_g / N over independence (the shuffled-rows null),
  with their lift c_fg N / (n_f n_g). Counts are dense [d_sae, d_sae] when they fit in
  `cooccurrence_bytes`, else a count-min sketch (never undercounts; see feature_pass).

>>> result = analyze_features(sae, store, out="analyses/features")   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.activations.store import SPLITS, ActivationStore, Split
from polysemy.analysis.contexts import TextWindows, require_traces
from polysemy.analysis.feature_pass import (
    Cooccurrence,
    SparseCodes,
    StreamingTop,
    bin_index,
    log_bins,
    sparse_code,
    top_per_row,
)
from polysemy.analysis.folder import start_analysis_on_main, write_analysis
from polysemy.analysis.stats import Interval, binomial_ci, bootstrap_ci, null_interval, quantiles
from polysemy.progress import progress_bar
from polysemy.sae import distributed as dist_utils
from polysemy.validation import ParameterError, check_choice, check_float, check_int, configured

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeaturesConfig:
    """What `analyze_features` reads and keeps."""

    split: Split = "all"
    """Rows of the store to analyse: train, heldout or all."""
    rows: int = 1_000_000
    """At most this many rows (the first of the split, in store order)."""
    batch_size: int = 4096
    """Rows encoded at a time (memory, not results)."""
    examples: int = 10
    """Top-activating examples kept per feature."""
    quantile_examples: int = 8
    """Examples per feature at evenly spaced activation quantiles."""
    sample_size: int = 64
    """Firings sampled uniformly per feature to place the quantile examples."""
    bins: int = 48
    """Log-spaced histogram bins (the same edges for every feature)."""
    hist_low: float = 1e-3
    """Lower edge of the first histogram bin."""
    hist_high: float = 1e3
    """Upper edge of the last histogram bin."""
    neighbours: int = 8
    """Nearest features kept per feature (decoder cosine)."""
    partners: int = 8
    """Co-occurrence partners kept per feature."""
    cooccurrence_rows: int = 262_144
    """Rows whose co-occurring feature pairs are counted (the first of those analysed)."""
    cooccurrence_bytes: int = 1 << 30
    """Largest dense [d_sae, d_sae] float32 count matrix; beyond it, a count-min sketch."""
    sketch_width: int = 4096
    """Buckets per feature and hash of the count-min sketch."""
    null_directions: int = 4096
    """Random directions of equal norm in the spread-over-neurons null."""
    window: int = 8
    """Tokens shown on each side of an example's token."""
    texts: bool = True
    """Trace examples to text (needs a store harvested from text, with its tokenizer)."""

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        for name in ("rows", "batch_size", "examples", "quantile_examples", "sample_size"):
            check_int(name, getattr(self, name), least=1)
        if self.quantile_examples > self.sample_size:
            raise ParameterError(
                "quantile_examples", f"at most sample_size ({self.sample_size})",
                self.quantile_examples,
            )  # fmt: skip
        check_int("bins", self.bins, least=1, most=4096)
        check_float("hist_low", self.hist_low, above=0.0)
        check_float("hist_high", self.hist_high, above=self.hist_low)
        for name in ("neighbours", "partners", "cooccurrence_rows", "sketch_width"):
            check_int(name, getattr(self, name), least=1)
        check_int("cooccurrence_bytes", self.cooccurrence_bytes, least=0)
        check_int("null_directions", self.null_directions, least=100)
        check_int("window", self.window, least=0, most=512)


@dataclass(frozen=True)
class FeaturesResult:
    """Per-feature arrays (see the module docstring) and the summary."""

    arrays: dict[str, Tensor]
    """What features.safetensors holds, by name."""
    participation_ratio_median: Interval
    null_participation_ratio: Interval
    """Central 95% of the random-direction null's participation ratios."""
    concentrated_fraction: Interval
    """Features whose PR is below the null's 2.5% quantile (exact binomial interval)."""
    rows: int
    cooccurrence: str
    """`dense` or `count-min sketch`."""
    seconds: float
    """Wall time of the streaming pass."""
    path: str | None
    codes: SparseCodes | None = None
    """The first `keep_codes` rows' sparse codes when asked (`analyze_geometry(codes=...)`
    reuses them instead of encoding again); not written to the folder."""

    def summary(self) -> dict[str, Any]:
        density = self.arrays["density"]
        return {
            "n_features": int(density.numel()),
            "rows": self.rows,
            "dead_fraction": float((density == 0).double().mean()),
            "density_quantiles": quantiles(density),
            "participation_ratio_median": self.participation_ratio_median.estimate,
            "participation_ratio_median_ci": self.participation_ratio_median.to_dict(),
            "neurons_50_median": float(self.arrays["neurons_50"].double().median()),
            "neurons_90_median": float(self.arrays["neurons_90"].double().median()),
            "concentrated_fraction": self.concentrated_fraction.estimate,
            "concentrated_fraction_ci": self.concentrated_fraction.to_dict(),
            "baseline": {
                "kind": "random directions of equal norm",
                "participation_ratio_median": self.null_participation_ratio.estimate,
                "participation_ratio_range": self.null_participation_ratio.to_dict(),
            },
            "cooccurrence": self.cooccurrence,
            "seconds": self.seconds,
        }


def spread_over_neurons(W: Float[Tensor, "n d_in"]) -> tuple[Tensor, Tensor, Tensor]:
    """Participation ratio of each row's squared mass over the axes, and the fewest axes
    holding 50% and 90% of it: `(pr [n], n50 [n], n90 [n])`."""
    sq = W.double().pow(2)  # (n, d_in)
    total = sq.sum(1).clamp_min(1e-300)
    pr = total.pow(2) / sq.pow(2).sum(1).clamp_min(1e-300)
    cum = sq.sort(dim=1, descending=True).values.cumsum(1) / total[:, None]
    # Fewest axes reaching the level: count of prefixes still below it, plus one.
    n50 = (cum < 0.5 - 1e-12).sum(1) + 1
    n90 = (cum < 0.9 - 1e-12).sum(1) + 1
    return pr, n50, n90


def nearest_features(
    W: Float[Tensor, "d_sae d_in"], n: int, chunk: int = 2048
) -> tuple[Tensor, Tensor]:
    """The `n` other rows of largest cosine with each row: `(index, cosine)`, `[d_sae, n]`.

    Blocks of `chunk` rows against all rows, into one reused buffer (a fresh [2048, 24576]
    result page-faults), selected by `top_per_row` (exact, cheaper than `torch.topk`)."""
    U = W.float() / W.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    d = U.shape[0]
    n = min(n, d - 1) if d > 1 else 0
    index = torch.zeros(d, n, dtype=torch.int64)
    cosine = torch.zeros(d, n)
    sims = torch.empty(min(chunk, d), d, device=U.device)
    for a in range(0, d, chunk):
        b = min(a + chunk, d)
        block = torch.mm(U[a:b], U.t(), out=sims[: b - a])  # (chunk, d_sae)
        block.diagonal(offset=a).fill_(-torch.inf)  # not its own neighbour
        c, i = top_per_row(block, n)
        index[a:b], cosine[a:b] = i.cpu(), c.cpu()
    return index, cosine


@torch.no_grad()
def analyze_features(
    sae: Any,
    store: ActivationStore,
    config: FeaturesConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = False,
    keep_codes: int = 0,
    **options: Any,
) -> FeaturesResult:
    """Per-feature statistics of `sae` on `store` in one streaming pass (module docstring);
    writes `features.safetensors` and `examples.json` to `out` when given. `keep_codes` > 0
    keeps which latents fired on the first that many rows in `result.codes` (4 bytes per
    firing), for `analyze_geometry(codes=...)` on the same split.

    Under torchrun every process calls it alike: rank r reads batches r, r + N, ... of the
    pass; counts, sums, histograms and co-occurrence counts are all_reduced and the top-k
    buffers (examples and the uniform sample, whose random keys are drawn per batch, not per
    rank) gathered and merged, so every rank returns the one-process result (sums equal to
    float64 rounding); rank 0 alone writes `out`. A rank that fails stops the others within
    `HEARTBEAT_BATCHES` batches (docs/scale.md). `keep_codes` is one process only.
    """
    config = configured(FeaturesConfig, config, options)
    check_int("keep_codes", keep_codes, least=0)
    if keep_codes and dist_utils.env_world_size() > 1:
        raise ParameterError(
            "keep_codes", "0 under torchrun (codes stay in one process)", keep_codes
        )
    if store.d_in != sae.d_in:
        raise ParameterError(
            "sae", f"an SAE with d_in={store.d_in} (the store's width)", f"d_in={sae.d_in}"
        )
    if config.texts:
        require_traces(store, "feature examples")
    lo, hi = store.split_range(config.split)
    n_rows = min(config.rows, hi - lo)
    if n_rows == 0:
        raise ParameterError("split", "a split with rows", config.split)
    info = dist_utils.init_from_env(device)
    device = dist_utils.rank_device(device, info)
    folder = start_analysis_on_main(out, info, force=force)
    sae = sae.to(device).eval()
    d_sae = sae.d_sae

    fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
    act_sum = torch.zeros(d_sae, dtype=torch.float64, device=device)
    hist = torch.zeros(d_sae * config.bins, dtype=torch.int64, device=device)
    top = StreamingTop(d_sae, config.examples, device)
    sample = StreamingTop(d_sae, config.sample_size, device)
    cooc = Cooccurrence(
        d_sae, max_bytes=config.cooccurrence_bytes, width=config.sketch_width, device=device
    )
    cooc_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
    g = torch.Generator(device=device)
    kept: list[tuple[Tensor, Tensor]] = []
    world, beat = info.world_size, dist_utils.HEARTBEAT_BATCHES * info.world_size
    t0 = time.perf_counter()
    bar = progress_bar(n_rows, desc="features", unit="row", enabled=progress and info.is_main)
    # a failure here is told to the other ranks before it is raised
    with dist_utils.reporting_failures(info), contextlib.closing(bar):
        for i, a in enumerate(range(0, n_rows, config.batch_size)):
            if info.enabled and i and i % beat == 0:
                dist_utils.stop_if_a_rank_failed(info, job="features pass")
            if i % world != info.rank:
                continue  # another rank's batch
            b = min(a + config.batch_size, n_rows)
            x = store.read(a, b, split=config.split, device=device)  # (batch, d_in)
            idx, val = sparse_code(sae, x)  # (batch, m) each
            if a < keep_codes:
                take = min(b, keep_codes) - a
                kept.append(SparseCodes.part(idx[:take], val[:take]))
            if a < config.cooccurrence_rows:
                take = min(b, config.cooccurrence_rows) - a
                cooc.update(idx[:take], val[:take])
                cooc_fired += torch.bincount(idx[:take][val[:take] > 0], minlength=d_sae)
            on = val > 0
            f, v = idx[on], val[on]  # (nnz,)
            row = (torch.arange(lo + a, lo + b, device=device)[:, None].expand_as(idx))[on]
            fired += torch.bincount(f, minlength=d_sae)
            act_sum.index_add_(0, f, v.double())
            hb = bin_index(v, config.hist_low, config.hist_high, config.bins)
            hist += torch.bincount(f * config.bins + hb, minlength=d_sae * config.bins)
            top.update(f, v, row, v)
            # Keys seeded by the batch, not drawn from one stream: whichever rank reads a
            # batch draws the same keys, so the sample does not depend on the number of ranks.
            g.manual_seed((seed * 1_000_003 + i) % (1 << 63))
            keys = torch.rand(v.shape, generator=g, device=device)
            sample.update(f, keys, row, v)
            bar.update(min((b - a) * world, n_rows - bar.n))
    if info.enabled:
        dist_utils.stop_if_a_rank_failed(info, job="features pass")
        _reduce_over_ranks(info, [fired, act_sum, hist, cooc.counts, cooc_fired], [top, sample])
        (cooc.rows,) = dist_utils.sum_over_ranks(info, [cooc.rows], job="features pass")
    seconds = time.perf_counter() - t0
    if hasattr(sae, "release_scratch_"):
        sae.release_scratch_()  # sparse_code's [batch, d_sae] buffer

    W_dec = sae.W_dec.detach().float().cpu()
    pr, n50, n90 = spread_over_neurons(W_dec)
    gnull = torch.Generator().manual_seed(seed + 1)
    null_pr, _, _ = spread_over_neurons(
        torch.randn(config.null_directions, sae.d_in, generator=gnull)
    )
    null = null_interval(null_pr, method="random directions")
    concentrated = int((pr < null.low).sum())
    neighbour, neighbour_cos = nearest_features(W_dec, config.neighbours)
    partner, partner_count, partner_lift = cooc.partners(
        cooc_fired, min(config.partners, max(d_sae - 1, 1))
    )
    q_rows, q_vals = _quantile_picks(sample, config.quantile_examples)
    arrays = {
        "density": (fired.double() / n_rows).cpu(),
        "mean_activation": (act_sum / fired.clamp_min(1)).cpu(),
        "histogram": hist.view(d_sae, config.bins).cpu(),
        "histogram_edges": log_bins(config.hist_low, config.hist_high, config.bins),
        "participation_ratio": pr,
        "neurons_50": n50,
        "neurons_90": n90,
        "null_participation_ratio": null_pr,
        "top_rows": top.row.cpu(),
        "top_values": top.value.cpu(),
        "quantile_rows": q_rows,
        "quantile_values": q_vals,
        "neighbours": neighbour,
        "neighbour_cosine": neighbour_cos,
        "partners": partner,
        "partner_count": partner_count,
        "partner_lift": partner_lift,
    }
    result = FeaturesResult(
        arrays=arrays,
        participation_ratio_median=bootstrap_ci(pr, lambda t: t.median(dim=-1).values, seed=seed),
        null_participation_ratio=null,
        concentrated_fraction=binomial_ci(concentrated, d_sae),
        rows=n_rows,
        cooccurrence=cooc.method,
        seconds=seconds,
        path=str(folder) if folder is not None else None,
        codes=SparseCodes.stack(kept, config.split, d_sae) if keep_codes else None,
    )
    if folder is None:
        return result
    write_analysis(
        folder,
        "features",
        inputs={
            "sae": str(getattr(sae, "path", "")) or None,
            "acts": str(store.path),
            "site": store.source.get("site"),
            "rows": n_rows,
            "seed": seed,
            "config": asdict(config),
        },
        summary=result.summary(),
        files={
            "features.safetensors": arrays,
            "examples.json": _examples(store, config, arrays),
        },
    )
    return result


def _reduce_over_ranks(
    info: dist_utils.DistInfo, sums: list[Tensor], tops: list[StreamingTop]
) -> None:
    """Sum `sums` over ranks in place; merge each rank's top-k buffers into the overall
    best, in place (every rank's best n per feature holds the overall best n)."""
    for t in sums:  # each in its own dtype: int64 counts stay exact at any size
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    for top in tops:
        gathered = []
        for t in (top.score, top.row, top.value):
            parts = [torch.empty_like(t) for _ in range(info.world_size)]
            torch.distributed.all_gather(parts, t)
            gathered.append(torch.cat(parts, dim=1))  # (d_sae, world * n)
        score, row, value = gathered
        top.score, pick = score.topk(top.n, dim=1)
        top.row, top.value = row.gather(1, pick), value.gather(1, pick)


def _quantile_picks(sample: StreamingTop, n: int) -> tuple[Tensor, Tensor]:
    """Rows and values at activation quantiles (i + 1/2) / n of each feature's sample."""
    valid = sample.row >= 0  # (d_sae, s)
    count = valid.sum(1)  # (d_sae,)
    vals = torch.where(valid, sample.value, torch.inf)
    order = vals.argsort(dim=1)  # valid ones first, ascending
    q = (torch.arange(n, device=vals.device) + 0.5) / n
    pick = (q[None, :] * count[:, None]).floor().long().clamp_max(sample.n - 1)
    cols = order.gather(1, pick)
    rows = torch.where(count[:, None] > 0, sample.row.gather(1, cols), -1)
    values = torch.where(count[:, None] > 0, sample.value.gather(1, cols), 0.0)
    return rows.cpu(), values.cpu()


def _examples(
    store: ActivationStore, config: FeaturesConfig, arrays: dict[str, Tensor]
) -> list[dict[str, Any]]:
    """examples.json: per feature, its top and quantile examples (row, activation, text)."""
    top_rows, q_rows = arrays["top_rows"], arrays["quantile_rows"]
    texts: dict[int, str] = {}
    if config.texts:
        wanted = torch.cat([top_rows.flatten(), q_rows.flatten()])
        wanted = wanted[wanted >= 0].unique()
        windows = TextWindows(store, window=config.window)
        texts = dict(zip(wanted.tolist(), windows.text(wanted), strict=True))

    def entries(rows: list[int], values: list[float]) -> list[dict[str, Any]]:
        return [
            {"row": r, "activation": v, **({"text": texts[r]} if r in texts else {})}
            for r, v in zip(rows, values, strict=True)
            if r >= 0
        ]

    return [
        {
            "feature": f,
            "top": entries(tr, tv),
            "quantiles": entries(qr, qv),
        }
        for f, (tr, tv, qr, qv) in enumerate(
            zip(
                top_rows.tolist(),
                arrays["top_values"].tolist(),
                q_rows.tolist(),
                arrays["quantile_values"].tolist(),
                strict=True,
            )
        )
    ]
