"""The SAE-based drift score (organism_drift's switch and score) on toy ReLU-hidden neurons
whose roles are known (`polysemy.analysis.drift_calibration`): false positives between two
SAE seeds on one snapshot, and true/false-positive rates on consecutive snapshots of training
and on planted row swaps, with exact 95% intervals.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/drift_calibration.py --seeds 8
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from polysemy.analysis.drift_calibration import DriftRates, calibrate_drift
from polysemy.analysis.stats import Interval


def _rate(interval: Interval | None) -> str:
    if interval is None:
        return "n/a"
    k = round(interval.estimate * interval.n)
    return f"{interval.estimate:.0%} [{interval.low:.0%}, {interval.high:.0%}] ({k}/{interval.n})"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _row(name: str, r: DriftRates) -> str:
    return (
        f"| {name} | {r.changed} / {r.kept} / {r.ambiguous} | {_rate(r.tpr)} | {_rate(r.fpr)} "
        f"| {_rate(r.tpr_score)} | {_rate(r.fpr_score)} | {_num(r.auc)} "
        f"| {_num(r.score_changed)} / {_num(r.score_kept)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="toy models")
    parser.add_argument("--snapshots", type=int, default=4)
    parser.add_argument("--sae-tokens", type=int, default=200_000)
    parser.add_argument("--sae-lr", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="first toy seed")
    parser.add_argument("--json", action="store_true", help="also print the full result")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cal = calibrate_drift(
        seeds=args.seeds,
        snapshots=args.snapshots,
        sae_tokens=args.sae_tokens,
        sae_lr=args.sae_lr,
        seed=args.seed,
    )
    c = cal.config
    print(
        f"toy relu-hidden {c['n_features']} features -> {c['n_hidden']} neurons, "
        f"S={c['sparsity']}, {args.seeds} seeds, snapshots at steps {cal.steps}; TopK SAEs of "
        f"{c['expansion'] * c['n_hidden']} latents, k {c['k']}, {c['sae_tokens']} rows, "
        f"lr {c['sae_lr']}; FVU min/median/max {', '.join(f'{v:.3f}' for v in cal.sae_fvu)}"
    )
    print(
        f"same snapshot, two SAE seeds: switch {_rate(cal.null_switch)}; among neurons with a "
        f"clear dominant feature {_rate(cal.null_switch_clear)}; mean score "
        f"{cal.null_score_mean:.3f}; score threshold ({c['level']:.0%} quantile) "
        f"{cal.threshold:.3f}"
    )
    print()
    print(
        "| comparison | changed / kept / ambiguous | switch TPR | switch FPR "
        "| score TPR | score FPR | AUC | mean score changed / kept |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(_row("consecutive snapshots", cal.natural))
    print(_row(f"planted: {c['swaps']} row swaps", cal.planted))
    for name, r in (("consecutive snapshots", cal.natural), ("planted", cal.planted)):
        print(
            f"{name}: changed neurons whose true chorus moved >= {c['large_drift']}: switch "
            f"{_rate(r.tpr_large)}, score {_rate(r.tpr_score_large)}"
        )
    print()
    print(f"{cal.seconds:.0f} s, {args.threads} thread(s), {platform.machine()}")
    if args.json:
        print(json.dumps(cal.to_dict(), indent=1, default=str))


if __name__ == "__main__":
    main()
