"""Verdict rates of `polysemy check` on claims whose truth is known (planted word neurons in
a tiny random BERT; `polysemy.analysis.claims_calibration`). Targets (issue 10): true claims
supported >= 90%, false claims refuted or inconclusive >= 95%, false supported <= 2%.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/claims_calibration.py --trials 40
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from polysemy.analysis.claims_calibration import calibrate_claims
from polysemy.analysis.stats import Interval


def _rate(name: str, interval: Interval) -> str:
    k = round(interval.estimate * interval.n)
    return (f"  {name:<40} {interval.estimate:6.1%}  [{interval.low:6.1%}, {interval.high:6.1%}]"
            f"  ({k}/{interval.n})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--precision", type=float, default=None, help="precision threshold")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    extra = {} if args.precision is None else {"precision": args.precision}
    cal = calibrate_claims(trials=args.trials, sentences=args.sentences,
                           shifted=args.sentences // 2, seed=args.seed, **extra)  # fmt: skip
    seconds = time.perf_counter() - t0
    print(f"claims: planted word neurons, tiny random BERT, {cal.trials} trials x 20 claims "
          f"(5 true, 5 cross-concept, 5 random-neuron, 5 two-concept), {cal.sentences} train + "
          f"{cal.sentences // 2} shifted sentences, 300 edit sentences")  # fmt: skip
    print(_rate("true claims supported", cal.true_supported))
    print(_rate("false claims refuted or inconclusive", cal.false_rejected))
    print(_rate("false claims supported", cal.false_supported))
    print(_rate("two-concept neuron: supported", cal.mixed_supported))
    print("  verdicts:", json.dumps(cal.verdicts))
    print(f"  {seconds:.0f} s, {args.threads} thread(s), {platform.machine()}")


if __name__ == "__main__":
    main()
