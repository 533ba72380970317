"""`polysemy analyze pruning`: magnitude pruning curves against downstream fidelity, on a real
model and on toy models with and without superposition, against random pruning.

polysemy analyze pruning --corpus concepts:heldout --out analyses/pruning --json
polysemy analyze pruning --examples 0 --toy-sparsity 0,0.9,0.99 --out analyses/pruning-toy
"""

from __future__ import annotations

import argparse

from polysemy.analysis.pruning import PruningConfig
from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.cli.analyze_fidelity import add_model_flags


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pruning` to the `analyze` command group."""
    p = add_command(
        subparsers,
        "pruning",
        help="magnitude pruning curves vs fidelity (real and toy models), against random",
        description="Prune the smallest-magnitude fraction of the weight matrices (globally "
        "and per layer) and of toy models' W, and measure the loss of fidelity (1 - cosine of "
        "pooled embeddings; toy: normalised reconstruction loss) at each fraction, beside "
        "random pruning of the same fraction. Reports the fraction prunable within "
        "--tolerance with a bootstrap interval. The model's weights are restored after each "
        "fraction. docs/evidence.md, 'Pruning'.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    add_model_flags(p)
    add_config_flags(p, PruningConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    from polysemy.analysis.folder import start_analysis
    from polysemy.analysis.pruning import analyze_pruning

    config = config_from_args(PruningConfig, args)
    start_analysis(args.out, force=args.force)  # refuse a bad --out before loading anything
    loaded = corpus = None
    if config.examples > 0:
        from polysemy.corpora import open_corpus
        from polysemy.models import load_model

        corpus = open_corpus(args.corpus, seed=args.seed, text_field=args.text_field)
        loaded = load_model(args.model, device=args.device)
    result = analyze_pruning(
        loaded, corpus, config, out=args.out, force=args.force, progress=not args.json
    )
    summary = result.summary()
    lines = [f"pruning (tolerance {result.tolerance:g}) -> {args.out}"]

    def curve_lines(title: str, curves: dict) -> None:
        lines.append(title)
        for scheme, c in curves.items():
            q = c["prunable"]
            judged = f"  {c['verdict_vs_random']} vs random" if c["verdict_vs_random"] else ""
            lines.append(
                f"  {scheme:<10} prunable {q['estimate']:.3f} [{q['low']:.3f}, {q['high']:.3f}]"
                f"{judged};  loss " + " ".join(f"{v:.3g}" for v in c["loss"])
            )

    if result.curves:
        curve_lines(f"{result.model} ({result.n} sentences, {result.weights:,} weights), "
                    f"fractions {','.join(f'{q:g}' for q in result.fractions)}",
                    summary["curves"])  # fmt: skip
    for toy in summary["toy"]:
        curve_lines(f"toy relu-output, sparsity {toy['sparsity']:g} ({toy['represented']} "
                    f"features with ||W_i|| > 0.5)", toy["curves"])  # fmt: skip
    emit(args, summary, "\n".join(lines))
    return 0
