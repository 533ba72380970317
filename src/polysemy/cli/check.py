"""`polysemy check`: test interpretations written in a claims file and give each a verdict.

polysemy check claims.toml --model minilm --sae mlp=runs/demo/saes/mlp \
    --neurons runs/demo/analyses/neurons-mlp --out runs/demo/analyses/claims --json
polysemy check minilm --out runs/claims           # the claims file shipped for MiniLM
"""

from __future__ import annotations

import argparse

from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    from polysemy.analysis.claims import ClaimsConfig

    p = add_command(
        subparsers,
        "check",
        help="check claims (neuron N / feature F / a direction means concept C) with verdicts",
        description="Run each claim of a claims file (TOML, or YAML) through the battery: "
        "held-out and shifted detection (AUROC, precision, recall with intervals), edit "
        "sensitivity and specificity, ablation on a concept readout against random "
        "directions, a neuron's chorus; then a verdict (supported, partial, refuted, "
        "inconclusive) and one sentence. Thresholds: the claim's own > the file's > these "
        "flags > the defaults. docs/claims.md.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument("claims", help="a claims file, or `minilm` for the one shipped for MiniLM")
    p.add_argument(
        "--model", default="minilm", help="minilm (bundled, default) or a local model folder"
    )
    p.add_argument(
        "--sae",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="an SAE checkpoint the claims file names (repeat for several)",
    )
    p.add_argument("--neurons", default=None, help="a neurons analysis folder (a neuron's chorus)")
    add_config_flags(p, ClaimsConfig)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    from polysemy.analysis.claims import MINILM_CLAIMS, ClaimsConfig, check_claims
    from polysemy.analysis.folder import start_analysis
    from polysemy.validation import ParameterError

    config = config_from_args(ClaimsConfig, args)
    saes = {}
    for item in args.sae:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ParameterError("sae", "NAME=PATH", item)
        saes[name] = path
    start_analysis(args.out, force=args.force)
    claims = MINILM_CLAIMS if args.claims == "minilm" else args.claims
    result = check_claims(claims, config, model=args.model, saes=saes, neurons=args.neurons,
                          out=args.out, force=args.force, device=args.device)  # fmt: skip
    counts = result.counts()
    lines = [f"{len(result.claims)} claims -> {args.out}: "
             + ", ".join(f"{n} {v}" for v, n in counts.items())]  # fmt: skip
    lines += [f"{c.verdict:>12}  {c.sentence}" for c in result.claims]
    emit(args, result.to_dict(), "\n".join(lines))
    return 0
