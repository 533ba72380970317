"""`polysemy organism ...`: train a small causal language model here, keeping its history.

    polysemy organism train --quick --out runs/organism          # a smoke test, under a minute
    polysemy organism train --out runs/organism                  # 3-10 minutes on 2 CPU cores

Every training flag comes from `OrganismConfig` (and --device/--threads/--seed from the shared
runtime options); the work is `polysemy.organism.train_organism`.
"""

from __future__ import annotations

import argparse
from typing import Any

from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.organism.config import OrganismConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "organism", help="model organisms: small causal LMs trained here, with snapshots"
    )
    sub = parser.add_subparsers(title="organism commands", metavar="COMMAND", required=True)
    p = add_command(
        sub,
        "train",
        help="train a small GPT-2 on a local corpus, saving log-spaced snapshots",
        description=(
            "Train a one-layer GPT-2 (deeper with --n-layer) on a local corpus with a BPE "
            "tokenizer learned from it; snapshots are Hugging Face folders under "
            "OUT/snapshots/ that `polysemy harvest --model` reads. Resumable with --resume. "
            "Reports held-out loss against unigram and bigram baselines of the same corpus."
        ),
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    add_config_flags(p, OrganismConfig)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    add_out_flags(p)


def run(args: argparse.Namespace) -> int:
    from polysemy.organism.train import train_organism

    config = config_from_args(OrganismConfig, args)
    result = train_organism(
        config,
        args.out,
        resume=args.resume,
        force=args.force,
        progress=True,
        device=args.device,
    )
    s = result.summary
    obj: dict[str, Any] = {
        "out": str(args.out),
        "status": s["status"],
        "corpus": s["corpus"],
        "steps": s["steps"],
        "tokens": s["tokens"],
        "parameters": s["model"]["parameters"],
        "train_seconds": round(s["train_seconds"], 3),
        "train_tokens_per_second": round(s["train_tokens_per_second"], 1),
        "heldout": s["heldout"],
        "baselines": s["baselines"],
        "versus": s["versus"],
        "snapshots": [{k: v for k, v in x.items()} for x in s["snapshots"]],
        "resumed_from_step": s["resumed_from_step"],
    }
    h, b = s["heldout"], s["baselines"]
    lines = [
        f"trained a {s['model']['parameters']:,}-parameter GPT-2 for {s['steps']} steps "
        f"({s['train_seconds']:.0f} s, {s['train_tokens_per_second']:.0f} tokens/s) on "
        f"{s['tokens']['train']:,} tokens of {s['corpus']}",
        f"held-out loss (nats/token, {h['tokens']:,} tokens, 95% CI):",
        f"  model    {h['loss']:.3f} [{h['ci95'][0]:.3f}, {h['ci95'][1]:.3f}]",
    ]
    for name in ("unigram", "bigram"):
        v = s["versus"][name]
        lines.append(
            f"  {name:<8} {b[name]['loss']:.3f} [{b[name]['ci95'][0]:.3f}, "
            f"{b[name]['ci95'][1]:.3f}]  model - {name} = {v['difference']:+.3f} "
            f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]: {v['verdict']}"
        )
    lines.append(f"{len(s['snapshots'])} snapshots in {args.out}/snapshots; wrote {args.out}")
    emit(args, obj, "\n".join(lines))
    return 0
