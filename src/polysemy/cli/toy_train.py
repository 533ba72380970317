"""`polysemy toy train`: train a sweep of toy models and write a toy run folder."""

from __future__ import annotations

import argparse
from typing import Any

from polysemy import runfolder
from polysemy.cli._common import (
    add_json_flag,
    add_out_flags,
    emit,
    float_list,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_float_list,
)
from polysemy.toy.model import (
    FEATURE_KINDS,
    LR_SCHEDULES,
    MODEL_KINDS,
    OPTIMIZERS,
    ToyConfig,
    importance_decay,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `toy train` to the `toy` command group."""
    p = subparsers.add_parser(
        "train",
        help="train toy models of superposition (one instance per sparsity value)",
        description=(
            "Train one toy model per --sparsity value, all at once, and write result.json + "
            "weights.safetensors to --out. Example: polysemy toy train --model relu-output "
            "--n-features 20 --n-hidden 5 --sparsity 0,0.7,0.9,0.97,0.99,0.997,0.999 "
            "--importance-decay 0.7 --out runs/tms20"
        ),
    )
    p.add_argument("--model", choices=MODEL_KINDS, default="relu-output", help="toy model kind")
    p.add_argument("--n-features", type=positive_int, default=20, help="input features n")
    p.add_argument("--n-hidden", type=positive_int, default=5, help="hidden dimensions m")
    p.add_argument(
        "--sparsity",
        type=unit_float_list,
        default=[0.0],
        help="S = P(feature is 0): one value or a comma list, one instance per value, in order",
    )
    imp = p.add_mutually_exclusive_group()
    imp.add_argument(
        "--importance-decay",
        type=positive_float,
        default=None,
        help="importance I_i = r**i (default 1: uniform)",
    )
    imp.add_argument(
        "--importance",
        type=float_list,
        default=None,
        help="explicit importances, a comma list of n-features values >= 0",
    )
    p.add_argument(
        "--feature-kind",
        choices=FEATURE_KINDS,
        default="independent",
        help="independent features, or correlated / anticorrelated pairs",
    )
    p.add_argument("--steps", type=positive_int, default=10_000, help="optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="samples per step")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant", help="lr schedule")
    p.add_argument(
        "--warmup-steps", type=nonnegative_int, default=0, help="linear lr warm-up steps"
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="adam or adamw")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay on weights")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    p.add_argument(
        "--best-of",
        type=positive_int,
        default=1,
        help="train K seeds per sparsity value, keep the lowest final loss",
    )
    p.add_argument(
        "--snapshot-every",
        type=positive_int,
        default=None,
        help="keep a copy of W every N steps (for drift)",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads while training (default 1: measured fastest for these small matmuls)",
    )
    add_out_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> ToyConfig:
    """The ToyConfig the parsed options describe (raises ValueError naming the option)."""
    n = args.n_features
    if args.importance is not None:
        if len(args.importance) != n:
            raise ValueError(
                f"--importance must list n_features={n} values; got {len(args.importance)}"
            )
        if any(v < 0 for v in args.importance):
            raise ValueError(f"--importance values must be >= 0; got {args.importance}")
        row = tuple(float(v) for v in args.importance)
    else:
        row = importance_decay(args.importance_decay or 1.0, n)
    sparsity = tuple(float(s) for s in args.sparsity)
    return ToyConfig(
        model=args.model,
        n_features=n,
        n_hidden=args.n_hidden,
        sparsity=sparsity,
        importance=tuple(row for _ in sparsity),
        feature_kind=args.feature_kind,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        best_of=args.best_of,
        seed=args.seed,
        snapshot_every=args.snapshot_every,
    )


def run(args: argparse.Namespace) -> int:
    from polysemy.cli._common import parse_device
    from polysemy.toy.result import save_toy_run, summarize
    from polysemy.toy.train import train_toy

    config = build_config(args)
    out = runfolder.check_out(args.out, runfolder.TOY, force=args.force)
    device = parse_device(args.device)
    result = train_toy(config, device=device, progress=True, num_threads=args.threads)
    save_toy_run(result, out, force=args.force)
    instances = summarize(result)
    obj: dict[str, Any] = {
        "out": str(out),
        "model": config.model,
        "n_features": config.n_features,
        "n_hidden": config.n_hidden,
        "seconds": round(result.seconds, 3),
        "instances": instances,
    }
    lines = [f"trained {config.n_instances} {config.model} toy models in {result.seconds:.1f} s"]
    lines.append(f"{'sparsity':>9} {'loss':>11} {'represented':>11} {'dims/feature':>12}")
    for it in instances:
        dpf = it["dimensions_per_feature"]
        loss = it["loss"] if it["loss"] is not None else float("nan")
        lines.append(
            f"{it['sparsity']:>9.4g} {loss:>11.4e} {it['represented']:>11d}"
            f" {dpf if dpf is not None else float('inf'):>12.3f}"
        )
    lines.append(f"wrote {out}")
    emit(args, obj, "\n".join(lines))
    return 0
