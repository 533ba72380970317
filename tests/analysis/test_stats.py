"""Intervals, nulls and verdicts, checked against known coverage and textbook values."""

from __future__ import annotations

import pytest
import torch

from polysemy.analysis.stats import (
    Interval,
    binomial_ci,
    bootstrap_ci,
    null_interval,
    quantiles,
    ranks,
    spearman,
    verdict,
)


def test_bootstrap_interval_covers_the_true_mean_at_about_its_level() -> None:
    g = torch.Generator().manual_seed(1)
    hits = 0
    for seed in range(200):
        sample = torch.randn(200, generator=g) * 2 + 1
        ci = bootstrap_ci(sample, resamples=400, seed=seed)
        assert ci.low < ci.estimate < ci.high and ci.n == 200
        hits += ci.contains(1.0)
    assert 0.88 <= hits / 200 <= 0.99  # nominal 0.95


def test_bootstrap_takes_any_batched_statistic() -> None:
    x = torch.arange(100.0)
    ci = bootstrap_ci(x, lambda t: t.median(dim=-1).values, resamples=500)
    assert ci.estimate == 49.0 and ci.low < 49 < ci.high
    with pytest.raises(ValueError, match="values must be finite"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="resamples must be an int >= 100"):
        bootstrap_ci(x, resamples=10)


def test_clopper_pearson_matches_published_values() -> None:
    # 5 of 20: (0.0866, 0.4910); 0 of 20: upper bound 0.1684 (the "rule of three" regime).
    ci = binomial_ci(5, 20)
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.0866, 0.4910)
    assert binomial_ci(0, 20).low == 0.0 and round(binomial_ci(0, 20).high, 4) == 0.1684
    assert binomial_ci(20, 20).high == 1.0
    with pytest.raises(ValueError, match="successes must be an int in"):
        binomial_ci(21, 20)


def test_ranks_average_ties_and_spearman_matches_the_formula() -> None:
    assert ranks(torch.tensor([3.0, 1.0, 1.0, 2.0])).tolist() == [4.0, 1.5, 1.5, 3.0]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # No ties: 1 - 6 sum d^2 / (n (n^2 - 1)) with d = (0, 1, -1, 0, 0) -> 0.9
    assert spearman(x, [1.0, 3.0, 2.0, 4.0, 5.0]) == pytest.approx(0.9)


def test_quantiles_and_null_range() -> None:
    q = quantiles(torch.arange(101.0))
    assert q == {"q05": 5.0, "q25": 25.0, "q50": 50.0, "q75": 75.0, "q95": 95.0}
    null = null_interval(torch.arange(1001.0) / 1000 - 0.5)
    assert null.low == pytest.approx(-0.475) and null.high == pytest.approx(0.475)


def test_verdict_says_inconclusive_when_intervals_cannot_decide() -> None:
    null = Interval(0.0, -0.1, 0.1, 0.95, 100, "permutation")

    def effect(low: float, high: float) -> Interval:
        return Interval((low + high) / 2, low, high, 0.95, 100, "bootstrap")

    assert verdict(effect(0.2, 0.4), null) == "effect"
    assert verdict(effect(-0.4, -0.2), null) == "effect"
    assert verdict(effect(-0.05, 0.05), null) == "no effect"
    assert verdict(effect(0.05, 0.3), null) == "inconclusive"
