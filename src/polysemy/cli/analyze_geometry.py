"""`polysemy analyze geometry`: the geometry of an SAE's dictionary, and whether features that
overlap are the ones that rarely fire together.

polysemy analyze geometry --sae saes/l3 --acts acts/minilm-l3 --out analyses/geometry --json
"""

from __future__ import annotations

import argparse

from polysemy.cli._common import add_command, add_out_flags, emit, load_sae_arg
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `geometry` to the `analyze` command group."""
    from polysemy.analysis.geometry import GeometryConfig

    p = add_command(
        subparsers,
        "geometry",
        help="dimensionality and interference of decoder rows; overlap vs co-occurrence",
        description="Feature dimensionality D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 of every "
        "decoder row; the |cos| histogram of decoder-row pairs against random unit vectors and "
        "the Welch bound; and the Spearman correlation, across pairs of frequent latents, of "
        "|cos| with co-occurrence (phi or PMI) on the store's rows, with a bootstrap interval "
        "and a permutation null over features. Formulas and calibrated error rates: "
        "docs/evidence.md, section 'Dictionary geometry'.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument("--sae", required=True, help="SAE checkpoint folder")
    p.add_argument(
        "--acts", required=True, help="activation store folder, or a 2-D .npy/.safetensors file"
    )
    add_out_flags(p)
    add_config_flags(p, GeometryConfig)


def run(args: argparse.Namespace) -> int:
    from polysemy.activations.store import ActivationStore
    from polysemy.analysis.folder import start_analysis
    from polysemy.analysis.geometry import GeometryConfig, analyze_geometry
    from polysemy.sae.distributed import init_from_env, rank_device

    config = config_from_args(GeometryConfig, args)
    start_analysis(args.out, force=args.force)  # refuse a bad --out before loading anything
    store = ActivationStore(args.acts)
    # Under torchrun each rank encodes its share of the rows on its own GPU; rank 0 reports.
    info = init_from_env(args.device)
    args.device = rank_device(args.device, info)
    sae = load_sae_arg(args.sae, args.device, store)
    result = analyze_geometry(
        sae,
        store,
        config,
        out=args.out,
        force=args.force,
        seed=args.seed,
        device=args.device,
        progress=not args.json,
        inputs={"sae_path": args.sae, "acts": args.acts},
    )
    if not info.is_main:
        return 0
    summary = result.summary()
    summary["out"] = args.out
    test = result.cooccurrence
    text = (
        f"dimensionality mean {result.dimensionality_mean.estimate:.4f} "
        f"[{result.dimensionality_mean.low:.4f}, {result.dimensionality_mean.high:.4f}] "
        f"(random directions {result.dimensionality_null_mean:.4f})\n"
        f"|cos| p50 {result.interference['q50']:.4f} p99 {result.interference['q99']:.4f} "
        f"max {result.interference['max']:.4f} over {result.interference_pairs} pairs "
        f"(random: p50 {result.interference_null['q50']:.4f} "
        f"p99 {result.interference_null['q99']:.4f}); Welch bound {result.welch_bound:.4f}\n"
        f"overlap vs co-occurrence ({test.measure}, {test.features} latents, {test.pairs} pairs, "
        f"{result.rows} rows): rho {test.rho.estimate:+.4f} "
        f"[{test.rho.low:+.4f}, {test.rho.high:+.4f}], null [{test.null.low:+.4f}, "
        f"{test.null.high:+.4f}]: {test.verdict}\n"
        f"written to {args.out}"
    )
    emit(args, summary, text)
    return 0
