"""Error rates of the evidence tools where the truth is known (planted stores, toy models).

    python benchmarks/evidence_calibration.py [--only neurons|features] [--quick]

Each test is one library calibration routine; this script only prints its rates, each with
its exact binomial interval and sample size (docs/evidence.md quotes them).
"""

from __future__ import annotations

import argparse
import time


def _rate(name: str, interval) -> str:
    return (
        f"  {name:<34} {interval.estimate:6.1%}  [{interval.low:.1%}, {interval.high:.1%}]  "
        f"n={interval.n}"
    )


def neurons(quick: bool) -> None:
    from polysemy.analysis.chorus_calibration import calibrate_neurons

    size = (
        {"n_features": 128, "d_in": 64, "tokens": 50_000, "train_tokens": 300_000} if quick else {}
    )
    t0 = time.perf_counter()
    c = calibrate_neurons(**size)
    print(f"neurons (planted loadings, trained TopK SAE; {size or 'defaults'})")
    print(_rate("top feature right", c.top1))
    print(_rate("top-3 set right", c.top3))
    print(_rate("top feature right, if SAE has it", c.top1_recovered))
    print(
        f"  effective features: median {c.effective_median:.2f} "
        f"(truth {c.true_effective_median:.2f}, rotated basis {c.baseline_effective_median:.2f}); "
        f"Spearman vs truth {c.effective_spearman:.2f}; "
        f"verdict vs null: {c.verdict}"
    )
    print(f"  {time.perf_counter() - t0:.0f}s")


def features(quick: bool) -> None:
    from polysemy.analysis.chorus_calibration import calibrate_features

    size = (
        {"n_features": 128, "d_in": 64, "tokens": 50_000, "train_tokens": 300_000} if quick else {}
    )
    t0 = time.perf_counter()
    c = calibrate_features(**size)
    print(f"features (planted loadings on 3 neurons, trained TopK SAE; {size or 'defaults'})")
    print(f"  planted features recovered (cos > 0.9): {c.recovered}")
    print(_rate("participation ratio within 25%", c.pr_within_25pct))
    print(_rate("same neurons for 90% of mass", c.same_neurons_90))
    print(_rate("sparse feature called concentrated", c.concentrated_sparse))
    print(_rate("dense feature called concentrated", c.concentrated_dense))
    print(f"  random-direction null median PR {c.null_median:.1f}; {time.perf_counter() - t0:.0f}s")


TESTS = {"neurons": neurons, "features": features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(TESTS), help="run one test")
    parser.add_argument("--quick", action="store_true", help="smaller stores (a few minutes)")
    args = parser.parse_args()
    for name, test in TESTS.items():
        if args.only in (None, name):
            test(args.quick)


if __name__ == "__main__":
    main()
