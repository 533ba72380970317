"""`polysemy analyze ablate`: per-example effects of ablating features and neurons, against
random directions of equal norm.

polysemy analyze ablate --sae saes/l3 --targets feature:12,neuron:7 --random 40 --out a/abl
"""

from __future__ import annotations

import argparse

from polysemy.analysis.ablation import AblateConfig
from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.cli.analyze_fidelity import add_model_flags, open_inputs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "ablate",
        help="ablate features and neurons on many examples, against random directions",
        description="Remove each target (feature:F from the SAE, neuron:N of the site) on "
        "every example and measure the downstream effect per example (embedding shift, loss "
        "change, or a readout). Each target is compared with random directions of the same "
        "per-token norm: quantiles, the mean with a bootstrap interval, fires vs silent, and "
        "the fraction of examples above the null's 95th percentile. docs/evidence.md.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    add_model_flags(p)
    p.add_argument("--sae", default=None, help="SAE checkpoint folder (for feature targets)")
    add_config_flags(p, AblateConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    from polysemy.analysis.ablation import ablate
    from polysemy.sae.distributed import init_from_env, rank_device

    config = config_from_args(AblateConfig, args)
    # Under torchrun each rank runs its share of the examples on its own GPU; rank 0 reports.
    info = init_from_env(args.device)
    args.device = rank_device(args.device, info)
    loaded, corpus, sae = open_inputs(args, sae=True)
    result = ablate(loaded, corpus, config, sae=sae, out=args.out, force=args.force, progress=True)
    if not info.is_main:
        return 0
    summary = result.summary()
    lines = [f"ablation at {result.site}, effect {result.effect}, {result.n} examples -> "
             f"{args.out}"]  # fmt: skip
    lines.append(f"{'target':>12}  {'mean':>10}  {'95% CI':>23}  {'>null':>6}  verdict")
    for r in summary["results"]:
        lo, hi = r["ci"]
        lines.append(
            f"{r['target']:>12}  {r['mean_effect']:>10.4g}  [{lo:>10.4g}, {hi:>10.4g}]  "
            f"{r['frac_above_null']:>6.1%}  {r['verdict']}"
        )
    fp = summary["null"]["false_positive_rate"]
    if fp is not None:
        lines.append(
            f"random directions flagged: {fp['estimate']:.1%} "
            f"[{fp['low']:.1%}, {fp['high']:.1%}] of {fp['n']}"
        )
    emit(args, summary, "\n".join(lines))
    return 0
