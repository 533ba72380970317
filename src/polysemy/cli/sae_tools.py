"""`polysemy sae eval | recover | import | export`: judge an SAE and move it between libraries.

polysemy sae eval --sae saes/l3 --acts acts/minilm-l3 --split heldout --json
polysemy sae recover --sae saes/synth --truth acts/synth/truth.safetensors --json
polysemy sae import --from saelens downloads/blocks.3 --out saes/imported
polysemy sae export --to sparsify --sae saes/l3 --out exported/layers.3
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from polysemy.cli._common import add_command, add_json_flag, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval`, `recover`, `import` and `export` to the `sae` command group."""
    from polysemy.analysis.reconstruction import EvalConfig
    from polysemy.analysis.recovery import RecoveryConfig
    from polysemy.sae.interop import EXPORT_FORMATS, IMPORT_FORMATS

    p = add_command(
        subparsers,
        "eval",
        help="reconstruction metrics of an SAE on activations (held-out rows by default)",
        description="Print fvu, mse, explained_variance, cosine, l0, dead_fraction, "
        "dense_fraction and l2_ratio of an SAE on a split of an activation store, computed "
        "in one streaming float64 pass (independent of --batch-size). Formulas: "
        "docs/sae-evaluation.md.",
        handler=run_eval,
        runtime=("device",),
    )
    p.add_argument("--sae", required=True, help="SAE checkpoint folder")
    p.add_argument(
        "--acts", required=True, help="activation store folder, or a 2-D .npy/.safetensors file"
    )
    p.add_argument(
        "--target",
        default=None,
        help="transcoders: the store they predict (same rows as --acts); metrics are of it",
    )
    add_config_flags(p, EvalConfig)

    p = add_command(
        subparsers,
        "recover",
        help="how well an SAE's decoder recovers planted features (synthetic stores)",
        description="Mean max cosine between true features and decoder rows (both "
        "directions), fraction of true features recovered above --threshold, and duplicate "
        "latents (decoder rows above --threshold with an earlier one).",
        handler=run_recover,
    )
    p.add_argument("--sae", required=True, help="SAE checkpoint folder")
    p.add_argument(
        "--truth",
        required=True,
        help="truth.safetensors (key 'features' [n_features, d_in]) or the synthetic store",
    )
    add_config_flags(p, RecoveryConfig)

    p = subparsers.add_parser(
        "import",
        help="convert a SAELens, sparsify or dictionary_learning checkpoint to ours",
        description="Read a foreign SAE checkpoint (SAELens folder, sparsify folder, "
        "dictionary_learning ae.pt read with weights_only=True) and write a polysemy SAE "
        "folder computing the same function.",
    )
    p.add_argument(
        "--from", dest="fmt", required=True, choices=IMPORT_FORMATS, help="source format"
    )
    p.add_argument("src", help="the foreign checkpoint (folder, or ae.pt file)")
    add_out_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=run_import)

    p = subparsers.add_parser(
        "export",
        help="write one of our SAEs as a SAELens or sparsify folder",
        description="Write a polysemy SAE as a SAELens folder (cfg.json + "
        "sae_weights.safetensors) or a sparsify folder (cfg.json + sae.safetensors, TopK only).",
    )
    p.add_argument("--to", dest="fmt", required=True, choices=EXPORT_FORMATS, help="format")
    p.add_argument("--sae", required=True, help="SAE checkpoint folder")
    add_out_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=run_export)


def _load(path: str, device: Any = "cpu") -> Any:
    from polysemy.sae import load_sae

    if not Path(path).exists():
        raise FileNotFoundError(f"sae {path!r} does not exist")
    return load_sae(path, device=device)


def run_eval(args: argparse.Namespace) -> int:
    from polysemy.activations.store import ActivationStore
    from polysemy.analysis.reconstruction import EvalConfig, evaluate

    sae = _load(args.sae, args.device)
    store = ActivationStore(args.acts)
    if store.d_in != sae.d_in:
        raise ValueError(f"acts has d_in={store.d_in} but sae {args.sae!r} expects d_in={sae.d_in}")
    if sae.config.is_transcoder:
        from polysemy.activations.paired import PairedStore

        if args.target is None:
            raise ValueError(f"--target is required for the transcoder {args.sae!r}; got none")
        store = PairedStore(store, args.target)
        if store.d_out != sae.config.d_out:
            raise ValueError(
                f"target has d_in={store.d_out} but transcoder {args.sae!r} predicts "
                f"d_out={sae.config.d_out}"
            )
    elif args.target is not None:
        raise ValueError(f"--target applies to transcoders; {args.sae!r} is a {sae.config.arch}")
    config = config_from_args(EvalConfig, args)
    result = evaluate(sae, store, config, device=args.device, progress=True)
    metrics = {**result.metrics(), "split": args.split}
    text = "\n".join(
        f"{name:>18}  {value:.6g}" if isinstance(value, float) else f"{name:>18}  {value}"
        for name, value in metrics.items()
    )
    emit(args, metrics, text)
    return 0


def run_recover(args: argparse.Namespace) -> int:
    from polysemy.analysis.recovery import RecoveryConfig, load_truth, recovery_scores

    sae = _load(args.sae)
    truth = load_truth(args.truth)
    if truth.shape[1] != sae.d_in:
        raise ValueError(
            f"truth features have d_in={truth.shape[1]} but sae {args.sae!r} has d_in={sae.d_in}"
        )
    result = recovery_scores(sae.W_dec, truth, config_from_args(RecoveryConfig, args))
    metrics = result.metrics()
    text = (
        f"mean max cosine (true -> latent) {result.mean_max_cosine:.4f}, "
        f"(latent -> true) {result.mean_max_cosine_learned:.4f}\n"
        f"recovered above {result.threshold}: {result.fraction_recovered:.1%} of "
        f"{result.n_features} features\n"
        f"duplicate latents: {result.duplicate_latents} ({result.duplicate_pairs} pairs)"
    )
    emit(args, metrics, text)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from polysemy.runfolder import SAE, check_out
    from polysemy.sae import save_sae
    from polysemy.sae.interop import read_foreign, to_sae

    out = check_out(args.out, SAE, force=args.force)
    weights = read_foreign(args.fmt, args.src)
    sae = to_sae(weights)
    source = {k: v for k, v in weights.source.items() if v is not None}
    save_sae(sae, out, source=source, training={"imported_from": args.fmt, "path": args.src})
    info = {
        "out": str(out),
        "from": args.fmt,
        "arch": weights.arch,
        "d_in": weights.d_in,
        "d_sae": weights.d_sae,
        "k": weights.k,
    }
    k = f", k={weights.k}" if weights.k is not None else ""
    emit(
        args,
        info,
        f"imported {args.fmt} {args.src} -> {out} "
        f"({weights.arch}, d_in={weights.d_in}, d_sae={weights.d_sae}{k})",
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from polysemy.sae.interop import weights_of, write_foreign

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a folder; got the existing file {str(out)!r}")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise ValueError(
            f"--out {str(out)!r} is not empty; choose another folder or pass --force to replace it"
        )
    weights = weights_of(_load(args.sae))
    write_foreign(args.fmt, weights, out)
    info = {
        "out": str(out),
        "to": args.fmt,
        "arch": weights.arch,
        "d_in": weights.d_in,
        "d_sae": weights.d_sae,
        "k": weights.k,
    }
    emit(args, info, f"exported {args.sae} -> {out} ({args.fmt}, {weights.arch})")
    return 0
