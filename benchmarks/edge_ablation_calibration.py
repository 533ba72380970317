"""Edge ablation on known truth: planted edges called causal, non-edges not
(`polysemy.analysis.edge_ablation_calibration`, the planted circuit of `circuits_calibration`).

Every (a, b) pair of the planted circuit (12 x 12, 24 planted) is ablated through
`analyze_circuits --ablate`, against random directions; rates pooled over seeds with
Clopper-Pearson intervals, at each width d of the site (random directions overlap a 16-dim
site's dictionary far more than a 64-dim one's).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/edge_ablation_calibration.py --seeds 5
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from polysemy.analysis.edge_ablation_calibration import calibrate_edge_ablation
from polysemy.analysis.stats import Interval, binomial_ci


def _count(interval: Interval) -> int:
    return round(interval.estimate * interval.n)


def _rate(name: str, k: int, n: int) -> str:
    ci = binomial_ci(k, n)
    return f"  {name:<34} {ci.estimate:6.1%}  [{ci.low:6.1%}, {ci.high:6.1%}]  ({k}/{n})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--contexts", type=int, default=64)
    parser.add_argument("--random", type=int, default=20)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for d in args.widths:
        t0 = time.perf_counter()
        tp = n_true = fp = n_false = inconclusive = fp_raised = tp_edges = fp_edges = 0
        rhos, gaps = [], []
        for seed in range(args.seeds):
            cal = calibrate_edge_ablation(
                seed=seed, contexts=args.contexts, random=args.random, d=d
            )
            tp += _count(cal.true_positive)
            n_true += cal.true_positive.n
            fp += _count(cal.false_positive)
            n_false += cal.false_positive.n
            inconclusive += cal.inconclusive
            tp_edges += _count(cal.true_positive_edges)
            fp_edges += _count(cal.false_positive_edges)
            truth = cal.result.ablation["edges"] if cal.result.ablation else []
            fp_raised += sum(
                e["verdict"] == "causal" and e["effect"] < 0 and abs(e["weight"]) < 1e-4
                for e in truth
            )  # non-edges (linear weight ~ 0) whose removal raised b
            rhos.append(cal.spearman_planted)
            gaps.append(cal.relative_gap_planted)
        seconds = time.perf_counter() - t0
        print(f"edge ablation, planted circuit d={d} (12 x 12 pairs, 24 planted), seeds "
              f"0-{args.seeds - 1}, {args.contexts} contexts of 8 tokens, {args.random} "
              f"random directions")  # fmt: skip
        print(_rate("planted edges called causal", tp, n_true))
        print(_rate("planted edges inconclusive", inconclusive, n_true))
        print(_rate("non-edges called causal", fp, n_false))
        print(f"    of which removing a raised b (effect < 0): {fp_raised}/{fp}")
        print(_rate("planted causal, random-edge null", tp_edges, n_true))
        print(_rate("non-edges causal, random-edge null", fp_edges, n_false))
        print(f"  Spearman(linear weight, ablation effect) over planted edges, per seed: "
              f"{', '.join(f'{r:.3f}' for r in rhos)}")  # fmt: skip
        print(f"  relative gap sum|effect - weight| / sum|weight| over planted edges: "
              f"{', '.join(f'{g:.3f}' for g in gaps)}")  # fmt: skip
        print(f"  {seconds:.1f} s, {args.threads} thread(s), {platform.machine()}")


if __name__ == "__main__":
    main()
