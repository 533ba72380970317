"""`polysemy analyze probes`: logistic probes for a concept on a neuron, k neurons, the full
activation and SAE features, on held-out and shifted data, against a control task.

polysemy analyze probes --acts acts/concepts-l3 --concept tense --model minilm --out a/probes
"""

from __future__ import annotations

import argparse

from polysemy.cli._common import add_command, add_out_flags, emit, load_sae_arg
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    from polysemy.analysis.probes import ProbesConfig

    p = add_command(
        subparsers,
        "probes",
        help="probes for a concept: one neuron, k neurons, a direction, SAE features",
        description="Fit logistic probes for a concept of the concepts corpus on a store "
        "harvested from it, score them on held-out documents, on shifted data (template "
        "families never trained on, harvested with --model; --shifted stores) and against a "
        "control task of random labels per word type. Accuracy, selectivity and the "
        "in-distribution vs shifted gap, each with a bootstrap interval over sentences. "
        "docs/evidence.md, section 'Probes'.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument("--acts", required=True, help="store folder harvested from concepts")
    p.add_argument("--sae", default=None, help="SAE checkpoint folder (for feature probes)")
    p.add_argument(
        "--model",
        default=None,
        help="model to harvest concepts:heldout with at the store's site (minilm or a folder)",
    )
    add_config_flags(p, ProbesConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:

    from polysemy.analysis.folder import start_analysis
    from polysemy.analysis.probes import ProbesConfig, analyze_probes

    config = config_from_args(ProbesConfig, args)
    start_analysis(args.out, force=args.force)  # refuse a bad --out before loading anything
    sae = None
    if args.sae is not None:
        sae = load_sae_arg(args.sae, args.device)
    loaded = None
    if args.model is not None:
        from polysemy.models import load_model

        loaded = load_model(args.model, device=args.device)
    result = analyze_probes(
        args.acts, config, sae=sae, model=loaded, out=args.out, force=args.force,
        device=args.device, inputs={"acts_path": args.acts, "sae_path": args.sae},
    )  # fmt: skip
    summary = result.summary()
    summary["out"] = args.out
    sets = list(result.rows)[1:]
    lines = [f"probes for {result.concept}={result.value or 'default'} ({result.level} level), "
             f"rows {result.rows} -> {args.out}"]  # fmt: skip
    for p in result.probes:
        acc = "  ".join(f"{s} {p.accuracy[s].estimate:.3f} [{p.accuracy[s].low:.3f}, "
                        f"{p.accuracy[s].high:.3f}]" for s in sets)  # fmt: skip
        sel = p.selectivity
        lines.append(f"{p.kind:>10} units {list(p.units)[:8]}: {acc}; selectivity "
                     f"{sel.estimate:+.3f} [{sel.low:+.3f}, {sel.high:+.3f}]")  # fmt: skip
        for name, gap in p.gaps.items():
            lines.append(f"{'':>10} gap vs {name}: {gap.estimate:+.3f} [{gap.low:+.3f}, "
                         f"{gap.high:+.3f}] {p.gap_verdicts[name]}")  # fmt: skip
        for flag in p.chorus:
            voices = ", ".join(f"feature {f} ({s:.0%})" for f, s in flag.voices[:5])
            lines.append(f"{'':>10} neuron {flag.neuron} is a chorus "
                         f"({flag.effective_features:.1f} features): {voices}")  # fmt: skip
    if len(result.rows) == 2:
        lines.append("no shifted data: give --model to harvest concepts:heldout, or --shifted")
    if result.skipped:
        lines.append(f"skipped (no SAE): {', '.join(result.skipped)}")
    emit(args, summary, "\n".join(lines))
    return 0
