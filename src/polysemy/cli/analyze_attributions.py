"""`polysemy analyze attributions`: saliency, gradient x input, integrated gradients and
smoothgrad from the input tokens to a feature, neuron or direction, and how stable their
token rankings are.

polysemy analyze attributions --sae saes/l3 --target feature:12 --out analyses/attr --json
"""

from __future__ import annotations

import argparse

from polysemy.analysis.attributions import AttributionsConfig
from polysemy.cli._common import add_command, add_out_flags, emit, load_sae_arg
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `attributions` to the `analyze` command group."""
    p = add_command(
        subparsers,
        "attributions",
        help="token attributions to a feature, neuron or direction, and their brittleness",
        description="Attribute a target at a site (feature:F of an SAE, neuron:N, or a "
        "direction) to the input tokens of sentences of the concepts corpus with captum "
        "(saliency, gradient x input, integrated gradients, smoothgrad), then measure how "
        "stable the token rankings are under control edits, across integration baselines and "
        "across seeds (Spearman and top-k overlap, bootstrap intervals, against random "
        "rankings). Formulas and calibrated recovery rates: docs/evidence.md, 'Attributions'.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument(
        "--model", default="minilm", help="minilm (bundled, default) or a local model folder"
    )
    p.add_argument("--sae", default=None, help="SAE checkpoint folder (for feature targets)")
    add_config_flags(p, AttributionsConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:

    from polysemy.analysis.attributions import analyze_attributions, require_captum
    from polysemy.analysis.folder import start_analysis
    from polysemy.models import load_model

    config = config_from_args(AttributionsConfig, args)
    try:
        require_captum()
    except ImportError as exc:  # a missing extra is the user's to fix: one line, exit 2
        raise ValueError(str(exc)) from None
    start_analysis(args.out, force=args.force)  # refuse a bad --out before loading anything
    sae = None
    if args.sae is not None:
        sae = load_sae_arg(args.sae, args.device)
    loaded = load_model(args.model, device=args.device)
    result = analyze_attributions(
        loaded, config, sae=sae, out=args.out, force=args.force, progress=not args.json
    )
    summary = result.summary()
    lines = [f"attributions to {result.target} at {result.site} ({result.n} sentences) -> "
             f"{args.out}"]  # fmt: skip
    if result.ig_delta is not None:
        lines.append(f"integrated gradients: median completeness error {result.ig_delta:.2%}")
    lines.append(f"{'comparison':<44}{'stat':>9}{'mean':>9}  {'95% CI':<18}{'null':>8}  verdict")
    for name, stats in summary["comparisons"].items():
        for stat, s in stats.items():
            lo, hi = s["ci"]
            lines.append(
                f"{name:<44}{stat:>9}{s['mean']:>9.3f}  [{lo:6.3f}, {hi:6.3f}]  "
                f"{s['null_mean']:>8.3f}  {s['verdict']}"
            )
    emit(args, summary, "\n".join(lines))
    return 0
