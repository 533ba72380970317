"""`polysemy sae train`: train a sparse autoencoder on an activation store.

    polysemy sae train --acts acts/minilm-l3 --arch topk --expansion 8 --k 32 \\
        --tokens 20000000 --batch-size 4096 --lr 4e-4 --seed 0 --out saes/minilm-l3-topk

Runs data-parallel under `torchrun --nproc-per-node N -m polysemy sae train ...`
(only rank 0 prints and writes).
"""

from __future__ import annotations

import argparse
import logging
import os

from polysemy.cli._common import (
    add_json_flag,
    add_out_flags,
    emit,
    nonnegative_int,
    positive_float,
    positive_int,
)
from polysemy.sae.config import ARCH_NAMES, OPTIMIZERS, SELECTION_DTYPES

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sae train` to the `sae` group."""
    p = subparsers.add_parser(
        "train",
        help="train an SAE on activations (a store folder, .npy or .safetensors)",
        description="Train a sparse autoencoder on activations; resumable, data-parallel "
        "under torchrun. Saved weights work in the original units of the activations.",
    )
    p.add_argument("--acts", required=True, help="activation store folder, .npy or .safetensors")
    p.add_argument(
        "--arch", default="topk", help=f"architecture: {', '.join(ARCH_NAMES)} (default topk)"
    )
    width = p.add_mutually_exclusive_group()
    width.add_argument(
        "--expansion",
        type=positive_float,
        default=None,
        help="d_sae = expansion x d_in (default 8)",
    )
    width.add_argument("--d-sae", type=positive_int, default=None, help="dictionary size")
    p.add_argument(
        "--k", type=int, default=None, help="topk/batchtopk: active latents per row (default 32)"
    )
    p.add_argument(
        "--k-aux",
        type=positive_int,
        default=None,
        help="topk family: AuxK latents (default d_in/2)",
    )
    p.add_argument(
        "--l1-coefficient",
        type=positive_float,
        default=None,
        help="relu: L1 coefficient (default 5)",
    )
    p.add_argument(
        "--l0-coefficient",
        type=positive_float,
        default=None,
        help="jumprelu: L0 penalty coefficient (default 1e-3, or 1 with --target-l0)",
    )
    p.add_argument("--target-l0", type=positive_float, default=None, help="jumprelu: target L0")
    p.add_argument(
        "--tokens", type=positive_int, default=20_000_000, help="training rows (default 2e7)"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=4096, help="global batch (default 4096)"
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="peak learning rate (default: 4e-4 for adam; 5e-3/sqrt(d_sae/2^14) for the sign "
        "optimizers, sparsify's rule)",
    )
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adam",
        help="default adam; schedule-free-signum reaches a lower FVU on short budgets",
    )
    p.add_argument(
        "--selection-dtype",
        choices=SELECTION_DTYPES,
        default="auto",
        help="TopK family: precision of the matmul that only chooses the active latents "
        "(values and gradients stay float32); auto = bfloat16 on CPUs with AMX",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of init and data order")
    p.add_argument(
        "--dead-window",
        type=positive_int,
        default=None,
        help="rows without firing that make a latent dead",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        help="write resumable state to <out>/state every N steps",
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>/state if present")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device (default cpu; cuda under torchrun picks its GPU)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    add_out_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=run)


def _sae_config(args: argparse.Namespace, d_in: int):  # type: ignore[no-untyped-def]
    from polysemy.sae.config import TOPK_FAMILY, SAEConfig

    if args.arch not in ARCH_NAMES:
        raise ValueError(f"--arch must be one of {', '.join(ARCH_NAMES)}; got {args.arch!r}")
    if args.d_sae is not None:
        d_sae = args.d_sae
    else:
        expansion = 8.0 if args.expansion is None else args.expansion
        d_sae = round(expansion * d_in)
        if d_sae < 1:
            raise ValueError(f"--expansion {expansion} gives d_sae = {d_sae}; it must be >= 1")
    topk = args.arch in TOPK_FAMILY
    if not topk and args.k is not None:
        raise ValueError(f"--k applies to {', '.join(TOPK_FAMILY)}; got --arch {args.arch}")
    k = (32 if args.k is None else args.k) if topk else None
    if k is not None and not 1 <= k <= d_sae:
        raise ValueError(f"--k must be in [1, d_sae={d_sae}]; got {k}")
    if args.l1_coefficient is not None and args.arch != "relu":
        raise ValueError(f"--l1-coefficient applies to relu; got --arch {args.arch}")
    if (args.l0_coefficient is not None or args.target_l0 is not None) and args.arch != "jumprelu":
        raise ValueError(f"--l0-coefficient/--target-l0 apply to jumprelu; got --arch {args.arch}")
    coefficient = args.l1_coefficient if args.arch == "relu" else args.l0_coefficient
    return SAEConfig(
        arch=args.arch,
        d_in=d_in,
        d_sae=d_sae,
        k=k,
        k_aux=args.k_aux if topk else None,
        sparsity_coefficient=coefficient,
        target_l0=args.target_l0,
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from polysemy.activations.store import ActivationStore
    from polysemy.sae.config import TrainConfig, default_lr
    from polysemy.sae.distributed import env_world_size
    from polysemy.sae.trainer import train_sae

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    store = ActivationStore(args.acts)
    config = _sae_config(args, store.d_in)
    train = TrainConfig(
        tokens=args.tokens,
        batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else default_lr(args.optimizer, config.d_sae),
        optimizer=args.optimizer,
        seed=args.seed,
        dead_window=args.dead_window,
        checkpoint_every=args.checkpoint_every,
        selection_dtype=args.selection_dtype,
    )
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
    )
    if not is_main:
        return 0
    summary = result.summary()
    held = result.heldout or {}
    held_text = f", held-out FVU {held['fvu']:.4f}" if "fvu" in held else ""
    emit(
        args,
        summary,
        f"trained {config.arch} SAE (d_in {config.d_in}, d_sae {config.d_sae}"
        + (f", k {config.k}" if config.k else "")
        + f") on {result.tokens} tokens at {result.tokens_per_s:.0f} tok/s: "
        f"train FVU {result.fvu:.4f}, L0 {result.l0:.1f}, dead {result.dead_fraction:.1%}"
        + held_text
        + f"; saved to {args.out}",
    )
    return 0
