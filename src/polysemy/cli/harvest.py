"""`polysemy sites` and `polysemy harvest`: name a model's activations, store them from text."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from polysemy.activations.harvest import HarvestConfig
from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sites` and `harvest` to `subparsers`."""
    p = add_command(
        subparsers,
        "sites",
        help="list every hookable activation of a model, with its width",
        description=(
            "List every hookable activation (site) of a model: the module path plus .input or "
            ".output, its width, and whether it has one vector per token (harvestable). "
            "Widths come from a dry run on a tiny input."
        ),
        handler=_sites,
        runtime=("device",),
    )
    _add_model_flags(p)
    p.add_argument(
        "--grep", default=None, help="only sites whose name contains this text (e.g. layer.3.)"
    )

    h = add_command(
        subparsers,
        "harvest",
        help="run text through a model and store activations at one or more sites",
        description=(
            "Run a corpus through a model held fixed and store the activations of each --site "
            "as an activation store (one row per text token; special tokens and padding are "
            "skipped). One --site: --out is the store. Several: one store each in "
            "--out/<site>/, all from one forward pass. Under torchrun (--nproc-per-node N) "
            "each rank runs every N-th batch and writes its own shards; rank 0 writes the "
            "manifest once all are done (rows as one process would store them, ordered by rank)."
        ),
        handler=_harvest,
        runtime=("device", "threads", "seed"),
    )
    _add_model_flags(h)
    h.add_argument(
        "--corpus",
        required=True,
        help="pydocs, concepts, a .txt/.jsonl/.parquet file, folder or glob, or hf:NAME[:split]",
    )
    add_config_flags(
        h,
        HarvestConfig,
        flags={
            "sites": {
                "flag": "--site",
                "action": "append",
                "type": str,
                "metavar": "SITE",
                "help": "site to store, e.g. encoder.layer.3.output (repeatable; see "
                "`polysemy sites`)",
            }
        },
    )
    h.add_argument(
        "--model-dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="dtype the model runs in (float16/bfloat16 for GPUs; --dtype is the store's)",
    )
    h.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted harvest in --out (same settings) to the same result",
    )
    add_out_flags(h)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="minilm",
        help="minilm (bundled, default), a local model folder, or a Hugging Face name",
    )
    p.add_argument(
        "--allow-download",
        action="store_true",
        help="let a Hugging Face name be downloaded (default: local cache only)",
    )


def _sites(args: argparse.Namespace) -> int:
    from polysemy.models import list_sites, load_model

    loaded = load_model(args.model, device=args.device, allow_download=args.allow_download)
    sites = list_sites(loaded)
    if args.grep:
        sites = [s for s in sites if args.grep in s.name]
    rows = [s.to_dict() for s in sites]
    width = max((len(s.name) for s in sites), default=4)
    lines = [f"{'site':<{width}}  {'width':>6}  per-token  module"]
    lines += [
        f"{s.name:<{width}}  {s.width:>6}  {'yes' if s.per_token else 'no':<9}  {s.module_type}"
        for s in sites
    ]
    lines.append(f"{len(sites)} sites in {loaded.name}")
    emit(args, {"model": loaded.name, "sites": rows}, "\n".join(lines))
    return 0


def _harvest(args: argparse.Namespace) -> int:
    from polysemy.activations.harvest import harvest, store_paths
    from polysemy.corpora import open_corpus
    from polysemy.models import get_site, load_model
    from polysemy.sae.distributed import init_from_env, rank_device, shutdown

    config = config_from_args(HarvestConfig, args)
    corpus = open_corpus(args.corpus, seed=args.seed)
    # Under torchrun each rank loads the model on its own GPU (cuda -> cuda:<local rank>).
    info = init_from_env(args.device)
    device = rank_device(args.device, info)
    loaded = load_model(
        args.model, device=device, dtype=args.model_dtype, allow_download=args.allow_download
    )
    result = harvest(
        loaded,
        corpus,
        config,
        out=store_paths(args.out, config.sites),
        resume=args.resume,
        force=args.force,
        progress=True,
    )
    shutdown(info)
    if not info.is_main:
        return 0  # rank 0 reports for every rank
    sites = [get_site(loaded, name) for name in config.sites]
    obj: dict[str, Any] = {
        "model": loaded.name,
        "corpus": corpus.name,
        "stores": {name: str(path) for name, path in result.stores.items()},
        "sites": [{"name": s.name, "width": s.width} for s in sites],
        "rows": result.rows,
        "rows_resumed": result.rows_resumed,
        "world_size": info.world_size,
        "documents": result.documents,
        "exhausted": result.exhausted,
        "dtype": config.dtype,
        "seq_len": config.seq_len,
        "seconds": round(result.seconds, 3),
        "tokens_per_second": round(result.tokens_per_second, 1),
    }
    where = ", ".join(f"{name} -> {path}" for name, path in result.stores.items())
    text = (
        f"harvested {result.rows} tokens from {result.documents} documents of {corpus.name} "
        f"({result.tokens_per_second:.0f} tok/s"
        + (f" over {info.world_size} ranks" if info.enabled else "")
        + (f", {result.rows_resumed} resumed" if result.rows_resumed else "")
        + f"): {where}"
    )
    if result.exhausted:
        text += f"\nthe corpus ran out before --tokens {args.tokens}"
    emit(args, obj, text)
    return 0
