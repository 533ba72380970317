"""`polysemy sae train`: train a sparse autoencoder on an activation store.

    polysemy sae train --acts acts/minilm-l3 --arch topk --expansion 8 --k 32 \\
        --tokens 20000000 --batch-size 4096 --lr 4e-4 --seed 0 --out saes/minilm-l3-topk
    polysemy sae train --arch transcoder --acts stores/mlp_in --target stores/mlp_out \\
        --expansion 8 --k 32 --out saes/l3-transcoder

Every training flag comes from `SAEConfig` (less d_in, read from the data, and d_sae) and
`TrainConfig`; by hand are only where the data and the SAE live, the width (`--expansion` or
`--d-sae`, resolved by `resolve_d_sae`) and the architecture-worded spellings of
`--sparsity-coefficient`, and a transcoder's `--target` store (d_out is its width). Runs
data-parallel under `torchrun --nproc-per-node N -m polysemy sae train ...` (only rank 0
prints and writes).
"""

from __future__ import annotations

import argparse
import os

from polysemy.cli._common import add_command, add_out_flags, emit, positive_float, positive_int
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.sae.config import TRANSCODERS, SAEConfig, TrainConfig, resolve_d_sae


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sae train` to the `sae` group."""
    p = add_command(
        subparsers,
        "train",
        help="train an SAE on activations (a store folder, .npy or .safetensors)",
        description="Train a sparse autoencoder on activations; resumable, data-parallel "
        "under torchrun. Saved weights work in the original units of the activations; the "
        "figures printed are theirs, on the store's held-out rows.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument("--acts", required=True, help="activation store folder, .npy or .safetensors")
    p.add_argument(
        "--target",
        default=None,
        help="transcoders: the store to predict (same rows as --acts, e.g. the MLP's output "
        "harvested in the same pass); its width is d_out",
    )
    width = p.add_mutually_exclusive_group()
    width.add_argument(
        "--expansion",
        type=positive_float,
        default=None,
        help="d_sae = expansion x d_in (default 8)",
    )
    width.add_argument("--d-sae", type=positive_int, default=None, help="dictionary size")
    add_config_flags(
        p,
        SAEConfig,
        exclude=("d_in", "d_sae", "d_out"),
        flags={"k": {"help": "TopK family: active latents per row (default 32)"}},
    )
    # The names these coefficients had before they were one field; kept so scripts still run.
    p.add_argument(
        "--l1-coefficient",
        type=positive_float,
        default=None,
        help="relu: L1 coefficient (= --sparsity-coefficient)",
    )
    p.add_argument(
        "--l0-coefficient",
        type=positive_float,
        default=None,
        help="jumprelu: L0 coefficient (= --sparsity-coefficient)",
    )
    add_config_flags(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue from <out>/state if present")
    add_out_flags(p)


def _sparsity_coefficient(args: argparse.Namespace) -> float | None:
    """`--sparsity-coefficient`, or its architecture-worded spelling (refused elsewhere)."""
    given = {}
    if args.sparsity_coefficient is not None:
        given["--sparsity-coefficient"] = args.sparsity_coefficient
    for flag, value, arch in (
        ("--l1-coefficient", args.l1_coefficient, "relu"),
        ("--l0-coefficient", args.l0_coefficient, "jumprelu"),
    ):
        if value is None:
            continue
        if args.arch != arch:
            raise ValueError(f"{flag} applies to {arch}; got --arch {args.arch}")
        given[flag] = value
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(given)}; they set the same coefficient")
    return next(iter(given.values()), None)


def run(args: argparse.Namespace) -> int:
    from polysemy.activations.store import ActivationStore
    from polysemy.sae.distributed import env_world_size
    from polysemy.sae.trainer import train_sae

    store = ActivationStore(args.acts)
    target = None
    if args.arch in TRANSCODERS:
        if args.target is None:
            raise ValueError(f"--target is required for --arch {args.arch}; got none")
        target = ActivationStore(args.target)
    elif args.target is not None:
        raise ValueError(
            f"--target applies to {', '.join(TRANSCODERS)}; got --arch {args.arch} "
            "(an SAE reconstructs --acts)"
        )
    d_sae = resolve_d_sae(store.d_in, expansion=args.expansion, d_sae=args.d_sae)
    config = config_from_args(
        SAEConfig,
        args,
        d_in=store.d_in,
        d_sae=d_sae,
        d_out=None if target is None else target.d_in,
        sparsity_coefficient=_sparsity_coefficient(args),
    )
    train = config_from_args(TrainConfig, args)
    is_main = int(os.environ.get("RANK", "0")) == 0 or env_world_size() == 1
    result = train_sae(
        store,
        config,
        train,
        out=args.out,
        resume=args.resume,
        force=args.force,
        device=args.device,
        progress=is_main,
        target=target,
    )
    if not is_main:
        return 0
    window = result.train_window
    emit(
        args,
        result.summary(),
        f"trained {config.arch} SAE (d_in {config.d_in}, d_sae {config.d_sae}"
        + (f", d_out {config.d_out}" if config.is_transcoder else "")
        + (f", k {config.k}" if config.k else "")
        + f") on {result.tokens} tokens at {result.tokens_per_s:.0f} tok/s; saved weights on "
        f"{result.evaluated_on} rows: FVU {result.fvu:.4f}, L0 {result.l0:.1f}, dead "
        f"{result.dead_fraction:.1%} (last training window: FVU {window['fvu']:.4f}, dead "
        f"{window['dead_fraction']:.1%}); saved to {args.out}",
    )
    return 0
