"""`polysemy analyze drift`: do neurons keep their features across training snapshots?

polysemy analyze drift --toy runs/toy-rh [--out runs/toy-rh/analyses/drift-toy] --json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `drift` to the `analyze` command group."""
    from polysemy.analysis.drift import ToyDriftConfig

    p = add_command(
        subparsers,
        "drift",
        help="meaning drift of neurons across training snapshots (toy models for now)",
        description="Each neuron's chorus (its shares over the features) at every snapshot of "
        "a relu-hidden toy run trained with --snapshots N; per consecutive pair, the drift "
        "(1 - cosine of the shares), meaning switches (dominant feature changes) and the "
        "correlation of activations on the same inputs, against the same scores between two "
        "seeds' models at the same step with neurons matched one-to-one. Writes "
        "analysis.json and drift.safetensors. Details and calibration: docs/drift.md.",
        handler=run,
        runtime=("seed",),
    )
    p.add_argument(
        "--toy", required=True, help="toy run folder (relu-hidden, trained with --snapshots N)"
    )
    add_config_flags(p, ToyDriftConfig)
    add_out_flags(p, required=False)
    p.set_defaults(out=None)


def run(args: argparse.Namespace) -> int:
    from polysemy.analysis.drift import ToyDriftConfig, toy_drift

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
