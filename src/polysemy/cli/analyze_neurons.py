"""`polysemy analyze neurons`: each neuron of a site as a mixture of SAE features.

polysemy analyze neurons --sae saes/l3-mlp --acts acts/minilm-l3-mlp --out analyses/neurons --json
"""

from __future__ import annotations

import argparse

from polysemy.cli._common import add_command, add_out_flags, emit, load_sae_arg
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `neurons` to the `analyze` command group."""
    from polysemy.analysis.neurons import NeuronsConfig

    p = add_command(
        subparsers,
        "neurons",
        help="each neuron as a mixture of SAE features, against a randomly rotated basis",
        description="Share of each neuron's activation carried by each SAE feature (the "
        "SAE's error as its own line), the effective number of features (exp of the entropy "
        "of the shares) and the participation ratio, the top contexts grouped by the feature "
        "that dominates each, and the same statistics for a random rotation of the basis. "
        "Writes neurons.json, contexts.json and neurons.safetensors. Formulas, nulls and "
        "calibrated rates: docs/evidence.md.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument("--sae", required=True, help="SAE checkpoint folder trained at the site")
    p.add_argument("--acts", required=True, help="activation store of the site")
    add_config_flags(p, NeuronsConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    from polysemy.activations.store import ActivationStore
    from polysemy.analysis.neurons import NeuronsConfig, analyze_neurons
    from polysemy.sae.distributed import init_from_env, rank_device

    config = config_from_args(NeuronsConfig, args)
    store = ActivationStore(args.acts)
    # Under torchrun each rank reads its share of the rows on its own GPU; rank 0 reports.
    info = init_from_env(args.device)
    args.device = rank_device(args.device, info)
    sae = load_sae_arg(args.sae, args.device, store)
    result = analyze_neurons(
        sae, store, config, out=args.out, force=args.force, device=args.device,
        seed=args.seed, progress=not args.json,
    )  # fmt: skip
    if not info.is_main:
        return 0
    s = result.summary()
    b = s["baseline"]
    eff, null = result.effective_features_median, result.baseline_effective_features_median
    mono = result.monosemantic_fraction
    text = (
        f"{s['n_neurons']} neurons over {s['rows']} rows -> {args.out}\n"
        f"effective features, median {eff.estimate:.2f} [{eff.low:.2f}, {eff.high:.2f}] vs "
        f"rotated basis {null.estimate:.2f} [{null.low:.2f}, {null.high:.2f}]: {s['verdict']}\n"
        f"monosemantic (top share >= {config.monosemantic_threshold}): {mono.estimate:.1%} "
        f"[{mono.low:.1%}, {mono.high:.1%}] vs rotated {b['monosemantic_fraction']:.1%}\n"
        f"SAE error share, median {s['error_share_median']:.1%}"
    )
    if result.warning:
        text = f"warning: {result.warning}\n{text}"
    emit(args, s, text)
    return 0
