"""`polysemy analyze circuits`: edges from one SAE's features into a later SAE's.

polysemy analyze circuits --sae-up saes/l1 --sae-down saes/l3 --out analyses/circuits --json
"""

from __future__ import annotations

import argparse

from polysemy.analysis.circuits import CircuitsConfig
from polysemy.cli._common import add_command, add_out_flags, emit, load_sae_arg
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.cli.analyze_fidelity import add_model_flags


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `circuits` to the `analyze` command group."""
    p = add_command(
        subparsers,
        "circuits",
        help="edges between two SAEs' features: activation x frozen gradient, over contexts",
        description="Edge from upstream feature a to downstream feature b in a sentence: a's "
        "activation times the gradient of b's pre-activation (summed over the tokens where b "
        "fires) along a's decoder direction, with attention patterns and LayerNorm scales "
        "frozen; averaged over sentences, the top edges per downstream feature kept, the "
        "strongest reported with bootstrap intervals over sentences and the direct virtual "
        "weight beside them, and the braided fraction of those edges against shuffled "
        "contexts. With --ablate N, the N strongest edges are also ablated in the real model "
        "(a's contribution removed at the upstream site, b's pre-activation read) against "
        "random directions of the same size and random edges from equally active features: "
        "the causal check. Writes edges.json and "
        "edges.safetensors. Linearisation, braids, ablation and calibration: docs/circuits.md.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    add_model_flags(p)
    p.add_argument("--sae-up", required=True, help="SAE checkpoint at the earlier site")
    p.add_argument("--sae-down", required=True, help="SAE checkpoint at the later site")
    add_config_flags(p, CircuitsConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    from polysemy.analysis.circuits import analyze_circuits
    from polysemy.corpora import open_corpus
    from polysemy.models import load_model

    config = config_from_args(CircuitsConfig, args)
    sae_up = load_sae_arg(args.sae_up, args.device)
    sae_down = load_sae_arg(args.sae_down, args.device)
    corpus = open_corpus(args.corpus, seed=args.seed, text_field=args.text_field)
    loaded = load_model(args.model, device=args.device)
    result = analyze_circuits(
        loaded, sae_up, sae_down, corpus, config, out=args.out, force=args.force,
        progress=not args.json,
    )  # fmt: skip
    s = result.summary()
    lines = [
        f"edges {s['site_up']}"
        + (f" (transcoder latents read at {s['site_up_in']})" if "site_up_in" in s else "")
        + f" -> {s['site_down']} over {s['contexts']} sentences, "
        f"{s['n_down']} downstream features, top {s['top_k']} each ({s['method']}) -> "
        f"{args.out}",
        f"null: |weight| over all pairs, q95 {s['null']['quantiles']['q95']:.4g}",
    ]
    br = s["braids"]
    lines.append(
        f"braided: {br['braided_fraction']:.1%} of {br['n_edges']} top edges "
        f"[{br['ci']['low']:.1%}, {br['ci']['high']:.1%}], shuffled contexts "
        f"[{br['null_ci']['low']:.1%}, {br['null_ci']['high']:.1%}]"
    )
    ab = s.get("ablation")
    if ab is not None:
        agree = (ab["agreement"] or {}).get("spearman_edges")
        rho = (
            "n/a"
            if agree is None
            else f"{agree['estimate']:.2f} [{agree['low']:.2f}, {agree['high']:.2f}]"
        )
        lines.append(
            f"ablated: {ab['causal_fraction']:.1%} of {ab['n_edges']} top edges causal "
            f"[{ab['ci']['low']:.1%}, {ab['ci']['high']:.1%}] against {ab['random']} random "
            f"directions ({ab['random_edges']['causal_fraction']:.1%} against random edges); "
            f"Spearman(weight, effect) {rho}"
        )
        for e in ab["edges"][:10]:
            ci = e["ci"]
            lines.append(
                f"  ablate {e['up']:>6} -> {e['down']:<6} effect {e['effect']:.4g} "
                f"[{ci['low']:.4g}, {ci['high']:.4g}]  null band +-{e['null']['band']:.3g}  "
                f"{e['verdict']} (random edges: {e['verdict_edges']})"
            )
    for e in s["edges"][:10]:
        ci = e["ci"]
        virtual = "n/a" if e["virtual"] is None else f"{e['virtual']:.3g}"
        lines.append(
            f"  {e['up']:>6} -> {e['down']:<6} {e['weight']:.4g} [{ci['low']:.4g}, "
            f"{ci['high']:.4g}]  virtual {virtual}  in {e['contexts']} sentences, "
            f"{e['clusters']} clusters  {e['verdict']}"
        )
    emit(args, s, "\n".join(lines))
    return 0
