"""`polysemy analyze drift`: do neurons keep their features across training snapshots?

polysemy analyze drift --toy runs/toy-rh [--out runs/toy-rh/analyses/drift-toy] --json
polysemy analyze drift --organism runs/organism [--out runs/organism/analyses/drift-organism]
polysemy analyze drift --model minilm --site S [--sae SAE] --corpus-a pydocs --corpus-b concepts
polysemy analyze drift --organism runs/organism [--snapshot N] --corpus-a pydocs --corpus-b concepts
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `drift` to the `analyze` command group."""
    from polysemy.analysis.corpus_drift import CorpusDriftConfig
    from polysemy.analysis.drift import ToyDriftConfig
    from polysemy.analysis.organism_drift import OrganismDriftConfig

    p = add_command(
        subparsers,
        "drift",
        help="meaning drift of neurons across training snapshots (toy models, organisms)",
        description="Each neuron's chorus (its shares over the features) at every snapshot of "
        "a relu-hidden toy run trained with --snapshots N; per consecutive pair, the drift "
        "(1 - cosine of the shares), meaning switches (dominant feature changes) and the "
        "correlation of activations on the same inputs, against the same scores between two "
        "seeds' models at the same step with neurons matched one-to-one. With --organism: the "
        "MLP neurons of an organism run's snapshots on the same held-out tokens, one SAE per "
        "snapshot, features matched by activation correlation, against a second SAE seed "
        "(born, died, split, merged features too). Across data (--corpus-a and --corpus-b, "
        "with --model or --organism): each neuron's chorus on corpus A and on corpus B "
        "with one SAE (--sae, or a quick one trained on both, sized by --sae-rows, "
        "--sae-tokens, --expansion, --k and --sae-seed), its distance with a "
        "bootstrap interval over documents, against random halves of each corpus. Writes "
        "analysis.json and drift.safetensors (corpus_drift.safetensors and voices.json "
        "across data). Details and calibration: docs/drift.md.",
        handler=run,
        runtime=("seed",),
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--toy", help="toy run folder (relu-hidden, trained with --snapshots N)")
    which.add_argument("--organism", help="organism run folder (polysemy organism train)")
    which.add_argument("--model", help="model name or folder, across data (with --corpus-a/b)")
    p.add_argument("--site", default=None, help="site (default for --organism: the run's MLP site)")
    p.add_argument("--corpus-a", default=None, help="across data: corpus A (a corpus spec)")
    p.add_argument("--corpus-b", default=None, help="across data: corpus B (a corpus spec)")
    p.add_argument(
        "--sae", default=None, help="across data: SAE folder (default: train a quick one)"
    )
    p.add_argument(
        "--snapshot",
        type=int,
        default=None,
        help="across data on --organism: snapshot step (default: the last)",
    )
    add_config_flags(p, ToyDriftConfig)
    add_config_flags(p, OrganismDriftConfig, exclude=_SHARED)
    # Its fields named like OrganismDriftConfig's (sae_rows, k, ...) share their flags and
    # defaults; the rest are its own.
    add_config_flags(p, CorpusDriftConfig)
    add_out_flags(p, required=False)
    p.set_defaults(out=None)


_SHARED = ("null_seed_offset", "tolerance", "resamples", "level")
"""Fields both configs have, with one meaning: flagged once (by ToyDriftConfig)."""


def run(args: argparse.Namespace) -> int:
    from polysemy.analysis.drift import ToyDriftConfig, toy_drift
    from polysemy.validation import ParameterError

    across = args.corpus_a is not None or args.corpus_b is not None
    if across or args.model is not None:
        if args.toy is not None:
            raise ParameterError("corpus_a", "left out with --toy (toy models read no text)", True)
        for name in ("corpus_a", "corpus_b"):
            if getattr(args, name) is None:
                raise ParameterError(name, "a corpus spec (across data needs both)", None)
        return _corpora(args)
    if args.organism is not None:
        return _organism(args)

    config = config_from_args(ToyDriftConfig, args)
    out = args.out if args.out is not None else str(Path(args.toy) / "analyses" / "drift-toy")
    result = toy_drift(args.toy, config, out=out, force=args.force, seed=args.seed)
    s = {"out": out, **result.summary}
    n, sp, null = s["neurons"], s["span"], s["null"]

    def pct(rate: dict) -> str:
        if rate["estimate"] is None:
            return "n/a (no live neurons)"
        return f"{rate['estimate']:.0%} [{rate['low']:.0%}, {rate['high']:.0%}] of {rate['n']}"

    lines = [
        f"{s['n_snapshots']} snapshots x {s['n_instances']} instances x {s['n_hidden']} neurons"
        f" -> {out}",
        f"{'from':>7} {'to':>7} {'drift':>7} {'null':>7} {'switch':>7} {'corr':>6}  verdict",
    ]
    for p in s["pairs"]:
        corr = p["median_correlation"]
        sw = p["switch_fraction"]["estimate"]
        lines.append(
            f"{p['from_step']:>7} {p['to_step']:>7} {p['drift']['estimate']:>7.4f}"
            f" {p['null_drift']['estimate']:>7.4f} {sw if sw is not None else float('nan'):>7.2f}"
            f" {corr if corr is not None else float('nan'):>6.3f}  {p['verdict']}"
        )
    lines += [
        f"switches: {pct(n['switch_fraction'])}; median activation correlation "
        f"{n['median_correlation']:.3f}",
        f"first vs last snapshot: drift {sp['drift']['estimate']:.3f} "
        f"[{sp['drift']['low']:.3f}, {sp['drift']['high']:.3f}], switches "
        f"{pct(sp['switch_fraction'])}: {sp['verdict']}",
        f"null (seed {null['seed']} at step {null['step']}, {null['matching']} matching): drift "
        f"{null['drift']['estimate']:.3f} [{null['drift']['low']:.3f}, {null['drift']['high']:.3f}]"
        f", switches {pct(null['switch_fraction'])}",
    ]
    emit(args, s, "\n".join(lines))
    return 0


def _organism(args: argparse.Namespace) -> int:
    from polysemy.analysis.organism_drift import OrganismDriftConfig, organism_drift

    shared = {name: getattr(args, name) for name in _SHARED}
    config = config_from_args(OrganismDriftConfig, args, **shared)
    default = Path(args.organism) / "analyses" / "drift-organism"
    out = args.out if args.out is not None else str(default)
    result = organism_drift(args.organism, config, site=args.site, out=out, force=args.force)
    s = {"out": out, **result.summary}
    n, null, f = s["neurons"], s["null"], s["features"]

    def pct(rate: dict) -> str:
        if rate["estimate"] is None:
            return "n/a"
        return f"{rate['estimate']:.0%} [{rate['low']:.0%}, {rate['high']:.0%}] of {rate['n']}"

    lines = [
        f"{s['n_snapshots']} snapshots x {s['d_mlp']} neurons ({s['site']}), {s['rows']} "
        f"held-out tokens, SAEs of {s['d_sae']} -> {out}",
        f"{'from':>7} {'to':>7} {'score':>7} {'null':>7} {'switch':>7} {'corr':>6} "
        f"{'born':>5} {'died':>5} {'split':>5} {'merge':>5}  verdict",
    ]
    for p in s["pairs"]:
        corr, sw, ft = p["median_correlation"], p["switch_fraction"]["estimate"], p["features"]
        lines.append(
            f"{p['from_step']:>7} {p['to_step']:>7} {p['score']['estimate']:>7.3f}"
            f" {p['null_score']['estimate']:>7.3f} {sw if sw is not None else float('nan'):>7.2f}"
            f" {corr if corr is not None else float('nan'):>6.3f} {ft['born']:>5} {ft['died']:>5}"
            f" {ft['split']:>5} {ft['merged']:>5}  {p['verdict']}"
        )
    lines += [
        f"switches: {pct(n['switch_fraction'])} (null, SAE seed {null['seed']}: "
        f"{pct(null['switch_fraction'])}); median activation correlation "
        f"{n['median_correlation']:.3f}",
        f"features (threshold {f['threshold']}): born {f['born']}, died {f['died']}, split "
        f"{f['split']}, merged {f['merged']}; null: born {null['features']['born']}, died "
        f"{null['features']['died']}, split {null['features']['split']}, merged "
        f"{null['features']['merged']}",
    ]
    emit(args, s, "\n".join(lines))
    return 0


def _corpora(args: argparse.Namespace) -> int:
    from polysemy.analysis.corpus_drift import CorpusDriftConfig, corpus_drift, organism_snapshot
    from polysemy.validation import ParameterError

    config = config_from_args(CorpusDriftConfig, args)
    if args.organism is not None:
        model, site = organism_snapshot(args.organism, args.snapshot)
        site = args.site or site
        base = Path(args.organism)
    else:
        if args.snapshot is not None:
            raise ParameterError("snapshot", "left out without --organism", args.snapshot)
        if args.site is None:
            raise ParameterError("site", "a site name with --model", None)
        model, site, base = args.model, args.site, Path("runs") / "corpus-drift"
    out = args.out if args.out is not None else str(base / "analyses" / "drift-corpora")
    result = corpus_drift(
        str(model), site, args.sae, args.corpus_a, args.corpus_b, config,
        out=out, force=args.force, seed=args.seed,
    )  # fmt: skip
    s = {"out": out, **result.summary}
    n, null, v = s["neurons"], s["null"], s["verdict"]

    def pct(rate: dict) -> str:
        if rate["estimate"] is None:
            return "n/a"
        return f"{rate['estimate']:.0%} [{rate['low']:.0%}, {rate['high']:.0%}] of {rate['n']}"

    def rng(r: dict, f: str = ".0%") -> str:
        return f"{r['estimate']:{f}} (range {r['low']:{f}} to {r['high']:{f}})"

    ms = n["mean_score"]
    lines = [
        f"{s['d']} neurons ({s['site']} of {s['model']}), SAE of {s['d_sae']}: A = "
        f"{s['corpus_a']} ({s['rows']['a']} tokens, {s['documents']['a']} docs), B = "
        f"{s['corpus_b']} ({s['rows']['b']} tokens, {s['documents']['b']} docs) -> {out}",
        f"features (energy per token): {s['features']['mostly_a']} mostly on A, "
        f"{s['features']['mostly_b']} mostly on B, {s['features']['both']} on both",
        f"sing different voices (score above its null): {pct(n['different_fraction'])}; "
        f"null {rng(null['different_fraction'])}: {v['different']}",
        f"dominant voice changes: {pct(n['dominant_change_fraction'])}; null "
        f"{rng(null['dominant_change_fraction'])}: {v['dominant_change']}",
        f"mean score (TV): {ms['estimate']:.3f} [{ms['low']:.3f}, {ms['high']:.3f}]; null "
        f"{rng(null['mean_score'], '.3f')}: {v['mean_score']}",
        f"mean score among features alone (error line left out): "
        f"{n['mean_feature_score']['estimate']:.3f}; null "
        f"{rng(null['mean_feature_score'], '.3f')}: {v['mean_feature_score']}",
    ]

    def voices(pairs: list) -> str:
        return ", ".join(f"{f} {sh:.0%}" for f, sh in pairs[:3])

    for ex in s["examples"]:
        lines.append(
            f"  neuron {ex['neuron']}: score {ex['score']:.3f} [{ex['ci'][0]:.3f}, "
            f"{ex['ci'][1]:.3f}] (null {ex['null_threshold']:.3f}); A: {voices(ex['a'])}; "
            f"B: {voices(ex['b'])}"
        )
    emit(args, s, "\n".join(lines))
    return 0
