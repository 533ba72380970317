"""`polysemy toy train`: train a sweep of toy models and write a toy run folder.

Every flag but --out/--force comes from `ToySweepConfig` (and --device/--threads/--seed from
the shared runtime options); the work is `polysemy.toy.runs.train`.
"""

from __future__ import annotations

import argparse
from typing import Any

from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.toy.runs import ToySweepConfig

# Given together, they would disagree about the importance: argparse refuses the pair.
_EXCLUSIVE = ("importance_decay", "importance")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `toy train` to the `toy` command group."""
    p = add_command(
        subparsers,
        "train",
        help="train toy models of superposition (one instance per sparsity value)",
        description=(
            "Train one toy model per --sparsity value, all at once, and write result.json + "
            "weights.safetensors to --out. Example: polysemy toy train --model relu-output "
            "--n-features 20 --n-hidden 5 --sparsity 0,0.7,0.9,0.97,0.99,0.997,0.999 "
            "--importance-decay 0.7 --out runs/tms20"
        ),
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    add_config_flags(p, ToySweepConfig)
    group = p.add_mutually_exclusive_group()
    for action in p._actions:
        if action.dest in _EXCLUSIVE:
            group._group_actions.append(action)
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    from polysemy.toy.result import summarize
    from polysemy.toy.runs import train

    config = config_from_args(ToySweepConfig, args)
    result = train(
        config,
        args.out,
        force=args.force,
        progress=True,
        device=args.device,
        threads=args.threads,
    )
    instances = summarize(result)
    obj: dict[str, Any] = {
        "out": str(args.out),
        "model": config.model,
        "n_features": config.n_features,
        "n_hidden": config.n_hidden,
        "seconds": round(result.seconds, 3),
        "instances": instances,
    }
    lines = [
        f"trained {len(config.sparsity)} {config.model} toy models in {result.seconds:.1f} s",
        f"{'sparsity':>9} {'loss':>11} {'represented':>11} {'dims/feature':>12}",
    ]
    for it in instances:
        dpf = it["dimensions_per_feature"]
        loss = it["loss"] if it["loss"] is not None else float("nan")
        lines.append(
            f"{it['sparsity']:>9.4g} {loss:>11.4e} {it['represented']:>11d}"
            f" {dpf if dpf is not None else float('inf'):>12.3f}"
        )
    lines.append(f"wrote {args.out}")
    emit(args, obj, "\n".join(lines))
    return 0
