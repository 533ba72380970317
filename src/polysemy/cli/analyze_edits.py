"""`polysemy analyze edits`: how a feature, neuron or direction changes under targeted edits
of a concept, against control edits and edits of other concepts.

polysemy analyze edits --sae saes/l3 --concept tense --targets feature:12,neuron:7 --out a/edits
"""

from __future__ import annotations

import argparse

from polysemy.cli._common import add_command, add_out_flags, emit, load_sae_arg
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    from polysemy.analysis.edits import EditsConfig

    p = add_command(
        subparsers,
        "edits",
        help="a target's change under a concept's edits vs control edits and other concepts",
        description="Run each sentence and its counterfactual twins (concepts corpus, or a "
        "--twins file of {text, twin, concept} lines) to the site and compare the target's "
        "change under the concept's edits with its change under control edits (sensitivity) "
        "and under other concepts' edits (specificity): bootstrap intervals, a permutation "
        "null, quantiles. docs/evidence.md, section 'Edits'.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument(
        "--model", default="minilm", help="minilm (bundled, default) or a local model folder"
    )
    p.add_argument("--sae", default=None, help="SAE checkpoint folder (for feature targets)")
    add_config_flags(p, EditsConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:

    from polysemy.analysis.edits import EditsConfig, analyze_edits
    from polysemy.analysis.folder import start_analysis
    from polysemy.models import load_model

    config = config_from_args(EditsConfig, args)
    start_analysis(args.out, force=args.force)
    sae = None
    if args.sae is not None:
        sae = load_sae_arg(args.sae, args.device)
    loaded = load_model(args.model, device=args.device)
    result = analyze_edits(loaded, config, sae=sae, out=args.out, force=args.force)
    summary = result.summary()
    summary["out"] = args.out
    lines = [f"edits of {result.concept} at {result.site}: {result.pairs.get(result.concept)} "
             f"pairs, {result.pairs['control']} control pairs -> {args.out}"]  # fmt: skip
    for r in result.results:
        e = r.sensitivity.effect
        spec = "n/a" if r.specificity is None else f"{r.specificity:.0%}"
        lines.append(f"{r.target:>14}  sensitivity {e.estimate:+.4g} [{e.low:+.4g}, {e.high:+.4g}] "
                     f"{r.sensitivity.verdict}; specificity {spec}; largest other: {r.leak}; "
                     f"control split {r.control_split.verdict}")  # fmt: skip
    emit(args, summary, "\n".join(lines))
    return 0
