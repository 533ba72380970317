"""`polysemy analyze fidelity`: splice an SAE into a model and measure what changes downstream.

polysemy analyze fidelity --sae saes/l3 --corpus concepts:heldout --out analyses/fid --json
"""

from __future__ import annotations

import argparse
from typing import Any

from polysemy.analysis.fidelity import FidelityConfig
from polysemy.cli._common import add_command, add_out_flags, emit, load_sae_arg
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "fidelity",
        help="splice an SAE into the model at its site and measure the downstream change",
        description="Replace the site's activation by the SAE's reconstruction and run the "
        "model on from the site (lower layers run once). Encoders: fvu, embedding_cosine, "
        "similarity_spearman, recovered_vs_zero, recovered_vs_mean; causal LMs: fvu, "
        "ce_score, kl_score. Every figure has a bootstrap interval over sentences. "
        "Formulas and calibration: docs/evidence.md.",
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    add_model_flags(p)
    p.add_argument("--sae", required=True, help="SAE checkpoint folder")
    add_config_flags(p, FidelityConfig)
    add_out_flags(p)


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="minilm", help="minilm (bundled, default) or a local model folder"
    )
    p.add_argument(
        "--corpus",
        default="concepts:heldout",
        help="pydocs, concepts[:split[:N]], a .txt/.jsonl/.parquet file or folder "
        "(default concepts:heldout)",
    )
    p.add_argument(
        "--text-field", default="text", help="JSON field / column holding the text (files)"
    )


def open_inputs(args: argparse.Namespace, *, sae: bool) -> tuple[Any, Any, Any]:
    """(model, corpus, SAE or None) named by the flags; FileNotFoundError naming `sae`."""

    from polysemy.corpora import open_corpus
    from polysemy.models import load_model

    loaded_sae = None
    if sae and args.sae is not None:
        loaded_sae = load_sae_arg(args.sae, args.device)
    corpus = open_corpus(args.corpus, seed=args.seed, text_field=args.text_field)
    loaded = load_model(args.model, device=args.device)
    return loaded, corpus, loaded_sae


def run(args: argparse.Namespace) -> int:
    from polysemy.analysis.fidelity import analyze_fidelity
    from polysemy.sae.distributed import init_from_env, rank_device

    config = config_from_args(FidelityConfig, args)
    # Under torchrun each rank runs its share of the examples on its own GPU; rank 0 reports.
    info = init_from_env(args.device)
    args.device = rank_device(args.device, info)
    loaded, corpus, sae = open_inputs(args, sae=True)
    result = analyze_fidelity(
        loaded, sae, corpus, config, out=args.out, force=args.force, progress=True
    )
    if not info.is_main:
        return 0
    summary = result.summary()
    lines = [f"fidelity of {args.sae} at {result.site} ({result.n} sentences, {result.tokens} "
             f"tokens) -> {args.out}"]  # fmt: skip
    for key, value in summary.items():
        if isinstance(value, float):
            ci = summary["intervals"].get(key)
            band = f"  [{ci['low']:.4g}, {ci['high']:.4g}]" if ci else ""
            lines.append(f"{key:>20}  {value:.4g}{band}")
        elif value is None and key not in ("site",):
            lines.append(f"{key:>20}  undefined (zero ablation changes nothing)")
    emit(args, summary, "\n".join(lines))
    return 0
