"""`polysemy analyze features`: per-feature statistics and examples from one streaming pass.

polysemy analyze features --sae saes/l3-mlp --acts acts/minilm-l3-mlp --out analyses/features
"""

from __future__ import annotations

import argparse

from polysemy.cli._common import add_command, add_out_flags, emit, load_sae_arg
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `features` to the `analyze` command group."""
    from polysemy.analysis.features import FeaturesConfig

    p = add_command(
        subparsers,
        "features",
        help="density, histograms, examples, spread over neurons, neighbours, co-occurrence",
        description="One streaming pass over the store, vectorised over all features: density, "
        "a log-spaced activation histogram, top examples and examples at evenly spaced "
        "activation quantiles (traced to text), spread of each decoder row over the neurons "
        "against random directions of equal norm, nearest features by decoder cosine and "
        "co-occurrence partners against independence. Writes features.safetensors and "
        "examples.json. Formulas and calibrated rates: docs/evidence.md.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument("--sae", required=True, help="SAE checkpoint folder")
    p.add_argument("--acts", required=True, help="activation store the SAE reads")
    add_config_flags(p, FeaturesConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    from polysemy.activations.store import ActivationStore
    from polysemy.analysis.features import FeaturesConfig, analyze_features
    from polysemy.sae.distributed import init_from_env, rank_device

    config = config_from_args(FeaturesConfig, args)
    store = ActivationStore(args.acts)
    # Under torchrun each rank reads its share of the rows on its own GPU; rank 0 reports.
    info = init_from_env(args.device)
    args.device = rank_device(args.device, info)
    sae = load_sae_arg(args.sae, args.device, store)
    result = analyze_features(
        sae, store, config, out=args.out, force=args.force, device=args.device,
        seed=args.seed, progress=not args.json,
    )  # fmt: skip
    if not info.is_main:
        return 0
    s = result.summary()
    pr, null = result.participation_ratio_median, result.null_participation_ratio
    conc = result.concentrated_fraction
    text = (
        f"{s['n_features']} features over {s['rows']} rows in {s['seconds']:.1f}s -> {args.out}\n"
        f"dead {s['dead_fraction']:.1%}, median density {s['density_quantiles']['q50']:.3g}\n"
        f"spread over neurons: median participation ratio {pr.estimate:.1f} "
        f"[{pr.low:.1f}, {pr.high:.1f}] vs random directions {null.estimate:.1f} "
        f"(95% range {null.low:.1f}-{null.high:.1f}); concentrated {conc.estimate:.1%} "
        f"[{conc.low:.1%}, {conc.high:.1%}]\n"
        f"co-occurrence: {s['cooccurrence']}"
    )
    emit(args, s, text)
    return 0
