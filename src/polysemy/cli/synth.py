"""`polysemy synth`: write a store of planted-dictionary activations with its ground truth.

Every flag but --out/--force/--progress comes from `SynthConfig`.
"""

from __future__ import annotations

import argparse

from polysemy import runfolder
from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.synth.planted import SynthConfig, write_synth_store


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `synth` to `subparsers`."""
    p = add_command(
        subparsers,
        "synth",
        help="write synthetic activations with planted features (ground truth for SAEs)",
        description=(
            "Plant N_FEATURES random unit directions in D_IN dimensions and write TOKENS rows, "
            "each a sparse nonnegative combination of them (ACTIVE features per row on "
            "average), as an activation store with the truth in truth.safetensors."
        ),
        handler=run,
        runtime=("seed",),
    )
    add_config_flags(p, SynthConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(SynthConfig, args)
    out = runfolder.check_out(args.out, runfolder.ACTIVATIONS, force=args.force)
    result = write_synth_store(out, config, progress=not args.no_progress)
    emit(
        args,
        {
            "out": str(result.path),
            "rows": result.rows,
            "d_in": config.d_in,
            "n_features": config.n_features,
            "dtype": config.dtype,
            "shards": result.shards,
            "mean_active": result.mean_active,
            "seconds": round(result.seconds, 3),
        },
        f"wrote {result.rows} rows x {config.d_in} ({config.dtype}, {result.shards} shards, "
        f"{result.mean_active:.2f} active features per row, {config.n_features} planted) "
        f"to {result.path} in {result.seconds:.1f}s",
    )
    return 0
