"""Intervals, nulls and verdicts: the statistics every evidence figure is reported with.

An effect is never reported alone. It comes with an interval (a percentile bootstrap over
examples, or an exact binomial interval for a rate), with the sample size, and beside the same
statistic under a null (random directions, a rotated basis, shuffled co-occurrence). `verdict`
reads the two intervals and says "effect", "no effect" or "inconclusive" when they cannot
decide.

>>> import torch
>>> effects = torch.randn(1000, generator=torch.Generator().manual_seed(0)) + 0.5
>>> ci = bootstrap_ci(effects)
>>> round(ci.low, 2), round(ci.high, 2), ci.n
(0.47, 0.59, 1000)
>>> binomial_ci(3, 100).high < 0.09
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from polysemy.validation import check_float, check_int

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
"""The quantiles every distribution of per-example effects is summarised by."""

Verdict = Literal["effect", "no effect", "inconclusive"]


@dataclass(frozen=True)
class Interval:
    """A two-sided interval for a statistic, with what it was computed from."""

    estimate: float
    """The statistic on the whole sample."""
    low: float
    high: float
    level: float
    """Coverage the interval aims for, e.g. 0.95."""
    n: int
    """Sample size (examples, pairs or trials)."""
    method: str
    """How it was computed: `bootstrap`, `clopper-pearson`, `permutation`."""

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "n": self.n,
            "method": self.method,
        }


def _as_1d(values: Tensor | Sequence[float], name: str) -> Tensor:
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    if x.numel() == 0:
        raise ValueError(f"{name} must hold at least one value; got none")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite; got NaN or Inf")
    return x


def bootstrap_ci(
    values: Tensor | Sequence[float],
    statistic: Callable[[Tensor], Tensor] | None = None,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of `statistic` (default: the mean) over `values`.

    `statistic` maps a `[resamples, n]` batch of resampled rows to `[resamples]`, so the
    whole bootstrap is one tensor operation.
    """
    x = _as_1d(values, "values")
    check_int("resamples", resamples, least=100)
    check_float("level", level, above=0.0, most=0.999999)
    stat = statistic or (lambda t: t.mean(dim=-1))
    g = torch.Generator().manual_seed(seed)
    estimate = float(stat(x[None, :])[0])
    out = []
    for start in range(0, resamples, 500):  # bounded memory for large n
        idx = torch.randint(0, x.numel(), (min(500, resamples - start), x.numel()), generator=g)
        out.append(stat(x[idx]))
    dist = torch.cat(out)
    alpha = (1 - level) / 2
    low, high = torch.quantile(dist, torch.tensor([alpha, 1 - alpha], dtype=dist.dtype))
    return Interval(estimate, float(low), float(high), level, x.numel(), "bootstrap")


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _bisect(f: Callable[[float], float], target: float) -> float:
    """p in [0, 1] with f(p) = target, for f decreasing in p."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def binomial_ci(successes: int, trials: int, *, level: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) interval for a rate: false-positive and false-negative rates
    of the calibration runs are reported with it, so a rate from 20 trials looks as
    uncertain as it is."""
    check_int("trials", trials, least=1)
    check_int("successes", successes, least=0, most=trials)
    check_float("level", level, above=0.0, most=0.999999)
    alpha = (1 - level) / 2
    k, n = successes, trials
    # low: P(X >= k | p) = alpha, i.e. P(X <= k-1 | p) = 1 - alpha; high: P(X <= k | p) = alpha.
    low = 0.0 if k == 0 else _bisect(lambda p: _binomial_cdf(k - 1, n, p), 1 - alpha)
    high = 1.0 if k == n else _bisect(lambda p: _binomial_cdf(k, n, p), alpha)
    return Interval(k / n, low, high, level, n, "clopper-pearson")


def quantiles(
    values: Tensor | Sequence[float], qs: Sequence[float] = QUANTILES
) -> dict[str, float]:
    """`{"q05": ..., "q50": ...}`: a distribution in a few numbers, keys by percent."""
    x = _as_1d(values, "values")
    q = torch.quantile(x, torch.tensor(list(qs), dtype=x.dtype))
    return {f"q{round(p * 100):02d}": float(v) for p, v in zip(qs, q, strict=True)}


def ranks(x: Tensor) -> Tensor:
    """1-based ranks of a 1-D tensor, ties given their average rank."""
    order = x.argsort()
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    mean_rank = ends - (counts.to(torch.float64) - 1) / 2
    r = torch.empty(x.numel(), dtype=torch.float64)
    r[order] = mean_rank[inverse]
    return r


def spearman(x: Tensor | Sequence[float], y: Tensor | Sequence[float]) -> float:
    """Spearman rank correlation (Pearson correlation of the tie-averaged ranks)."""
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.numel() != b.numel():
        raise ValueError(f"x and y must have the same length; got {a.numel()} and {b.numel()}")
    return pearson(ranks(a), ranks(b))


def pearson(x: Tensor, y: Tensor) -> float:
    a, b = x.to(torch.float64) - x.double().mean(), y.to(torch.float64) - y.double().mean()
    denom = float(a.norm() * b.norm())
    return 0.0 if denom == 0.0 else float((a * b).sum()) / denom


def null_interval(
    null_values: Tensor | Sequence[float], *, level: float = 0.95, method: str = "permutation"
) -> Interval:
    """The central `level` range of a statistic's values under a null (permutations, random
    directions, rotated bases): where an effect must fall outside to count."""
    x = _as_1d(null_values, "null_values")
    alpha = (1 - level) / 2
    low, high = torch.quantile(x, torch.tensor([alpha, 1 - alpha], dtype=x.dtype))
    return Interval(float(x.median()), float(low), float(high), level, x.numel(), method)


def verdict(effect: Interval, null: Interval) -> Verdict:
    """`effect` when the effect's interval lies wholly outside the null's range, `no effect`
    when it lies wholly inside it, `inconclusive` when they overlap without either."""
    if effect.low > null.high or effect.high < null.low:
        return "effect"
    if null.low <= effect.low and effect.high <= null.high:
        return "no effect"
    return "inconclusive"
