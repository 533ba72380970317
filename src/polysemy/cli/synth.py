"""`polysemy synth`: write a store of planted-dictionary activations with its ground truth."""

from __future__ import annotations

import argparse

from polysemy import runfolder
from polysemy.activations.store import DEFAULT_SHARD_ROWS, DTYPES
from polysemy.cli._common import (
    add_json_flag,
    add_out_flags,
    emit,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_float,
)
from polysemy.synth.planted import MAGNITUDES, SynthConfig, write_synth_store


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `synth` to `subparsers`."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic activations with planted features (ground truth for SAEs)",
        description=(
            "Plant N_FEATURES random unit directions in D_IN dimensions and write TOKENS rows, "
            "each a sparse nonnegative combination of them (ACTIVE features per row on "
            "average), as an activation store with the truth in truth.safetensors."
        ),
    )
    p.add_argument("--n-features", type=positive_int, default=4096, help="planted features")
    p.add_argument("--d-in", type=positive_int, default=256, help="activation width")
    p.add_argument(
        "--active", type=positive_float, default=16.0, help="mean active features per row"
    )
    p.add_argument("--tokens", type=positive_int, default=1_000_000, help="rows to write")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    p.add_argument(
        "--frequency-decay",
        type=nonnegative_float,
        default=0.0,
        help="Zipf exponent of feature frequencies (0: all features equally frequent)",
    )
    p.add_argument(
        "--group-size",
        type=positive_int,
        default=1,
        help="features per correlated group (1: independent features)",
    )
    p.add_argument(
        "--correlation",
        type=unit_float,
        default=0.0,
        help="how often a group fires as a whole, as a share of its rarest member's rate",
    )
    p.add_argument(
        "--magnitude",
        choices=MAGNITUDES,
        default="uniform",
        help="coefficient of an active feature: U(0,1], |N(0,1)|, Exp(1) or 1",
    )
    p.add_argument(
        "--noise", type=nonnegative_float, default=0.0, help="std of added Gaussian noise"
    )
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="stored dtype")
    p.add_argument(
        "--shard-rows", type=positive_int, default=DEFAULT_SHARD_ROWS, help="rows per shard"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_out_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = SynthConfig(
        n_features=args.n_features,
        d_in=args.d_in,
        active=args.active,
        tokens=args.tokens,
        seed=args.seed,
        frequency_decay=args.frequency_decay,
        group_size=args.group_size,
        correlation=args.correlation,
        magnitude=args.magnitude,
        noise=args.noise,
    )
    out = runfolder.check_out(args.out, runfolder.ACTIVATIONS, force=args.force)
    result = write_synth_store(
        out,
        config,
        dtype=args.dtype,
        shard_rows=args.shard_rows,
        progress=not args.no_progress,
    )
    emit(
        args,
        {
            "out": str(result.path),
            "rows": result.rows,
            "d_in": config.d_in,
            "n_features": config.n_features,
            "dtype": args.dtype,
            "shards": result.shards,
            "mean_active": result.mean_active,
            "seconds": round(result.seconds, 3),
        },
        f"wrote {result.rows} rows x {config.d_in} ({args.dtype}, {result.shards} shards, "
        f"{result.mean_active:.2f} active features per row, {config.n_features} planted) "
        f"to {result.path} in {result.seconds:.1f}s",
    )
    return 0
