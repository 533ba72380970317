"""`polysemy sites` and `polysemy harvest`: name a model's activations, store them from text."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

from polysemy.cli._common import (
    add_json_flag,
    add_out_flags,
    emit,
    nonnegative_int,
    positive_int,
)
from polysemy.runfolder import ACTIVATIONS, check_out, detect_kind

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sites` and `harvest` to `subparsers`."""
    p = subparsers.add_parser(
        "sites",
        help="list every hookable activation of a model, with its width",
        description=(
            "List every hookable activation (site) of a model: the module path plus .input or "
            ".output, its width, and whether it has one vector per token (harvestable). "
            "Widths come from a dry run on a tiny input."
        ),
    )
    _add_model_flags(p)
    p.add_argument(
        "--grep", default=None, help="only sites whose name contains this text (e.g. layer.3.)"
    )
    add_json_flag(p)
    p.set_defaults(handler=_sites)

    h = subparsers.add_parser(
        "harvest",
        help="run text through a model and store activations at one or more sites",
        description=(
            "Run a corpus through a model held fixed and store the activations of each --site "
            "as an activation store (one row per text token; special tokens and padding are "
            "skipped). One --site: --out is the store. Several: one store each in "
            "--out/<site>/, all from one forward pass."
        ),
    )
    _add_model_flags(h)
    h.add_argument(
        "--site",
        action="append",
        required=True,
        help="site to store, e.g. encoder.layer.3.output (repeatable; see `polysemy sites`)",
    )
    h.add_argument(
        "--corpus",
        required=True,
        help="pydocs, concepts, a .txt/.jsonl/.parquet file, folder or glob, or hf:NAME[:split]",
    )
    h.add_argument(
        "--tokens", type=positive_int, required=True, help="rows to store per site (>= 1)"
    )
    h.add_argument(
        "--seq-len", type=positive_int, default=128, help="tokens per sequence (default 128)"
    )
    h.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="sequences of --seq-len per forward pass (64); shorter ones travel more per batch",
    )
    h.add_argument(
        "--dtype",
        choices=("float16", "bfloat16", "float32"),
        default="float16",
        help="dtype of the stored activations (default float16)",
    )
    h.add_argument(
        "--shard-rows", type=positive_int, default=None, help="rows per shard file (65536)"
    )
    h.add_argument("--seed", type=nonnegative_int, default=0, help="corpus seed (default 0)")
    h.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)"
    )
    h.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted harvest in --out (same settings) to the same result",
    )
    add_out_flags(h)
    add_json_flag(h)
    h.set_defaults(handler=_harvest)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="minilm",
        help="minilm (bundled, default), a local model folder, or a Hugging Face name",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
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


def _check_outs(out: Path, sites: list[str], *, resume: bool, force: bool) -> dict[str, Path]:
    """Validate --out before any work; return site -> store folder."""
    from polysemy.activations.harvest import store_paths

    if len(sites) != len(set(sites)):
        raise ValueError(f"--site must not repeat; got {sites}")
    if len(sites) > 1:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out must be a folder; got the existing file {str(out)!r}")
        found = detect_kind(out) if out.is_dir() else None
        if found is not None and not force:
            raise ValueError(
                f"--out {str(out)!r} holds a {found} run; with several --site it must be a "
                "folder of one store per site: choose another folder or pass --force"
            )
    paths = store_paths(out, sites)
    for path in paths.values():
        check_out(path, ACTIVATIONS, force=force)
        holds_store = detect_kind(path) == ACTIVATIONS.format if path.is_dir() else False
        if holds_store and not resume and not force:
            raise ValueError(
                f"--out {str(path)!r} already holds an activation store; pass --resume to "
                "continue it or --force to replace it"
            )
    return paths


def _harvest(args: argparse.Namespace) -> int:
    from polysemy.activations.harvest import HarvestConfig, harvest
    from polysemy.activations.store import DEFAULT_SHARD_ROWS
    from polysemy.corpora import open_corpus
    from polysemy.models import get_site, load_model

    out = Path(args.out)
    paths = _check_outs(out, list(args.site), resume=args.resume, force=args.force)
    config = HarvestConfig(
        sites=tuple(args.site),
        tokens=args.tokens,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        dtype=args.dtype,
        shard_rows=args.shard_rows or DEFAULT_SHARD_ROWS,
    )
    corpus = open_corpus(args.corpus, seed=args.seed)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device=args.device, allow_download=args.allow_download)
    sites = [get_site(loaded, s) for s in config.sites]  # unknown site: error before writing
    if args.force:
        # --force replaces what --out held when it is not a store (a store is replaced by
        # StoreWriter itself); done only now that the model, sites and corpus are known good.
        for path in {out, *paths.values()}:
            kind = detect_kind(path) if path.is_dir() else None
            if kind is not None and kind != ACTIVATIONS.format:
                shutil.rmtree(path)
    result = harvest(
        loaded,
        corpus,
        config,
        out=paths,
        corpus=corpus.name,
        resume=args.resume,
        progress=True,
    )
    obj: dict[str, Any] = {
        "model": loaded.name,
        "corpus": corpus.name,
        "stores": {name: str(path) for name, path in result.stores.items()},
        "sites": [{"name": s.name, "width": s.width} for s in sites],
        "rows": result.rows,
        "rows_resumed": result.rows_resumed,
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
        + (f", {result.rows_resumed} resumed" if result.rows_resumed else "")
        + f"): {where}"
    )
    if result.exhausted:
        text += f"\nthe corpus ran out before --tokens {args.tokens}"
    emit(args, obj, text)
    return 0
