"""`polysemy toy phase` and `polysemy toy reproduce`: the paper's figures, regenerated.

polysemy toy phase --n-features 2 --n-hidden 1 --out runs/phase [--json]
polysemy toy reproduce --out runs/paper [--fast] [--only pentagon,phase-2-1] [--json]

Flags come from `PhaseConfig` and `ReproduceConfig`; the work is `polysemy.toy.runs.phase` and
`reproduce`, with the figures and page of `polysemy.report.toy_report` as their `render`.
"""

from __future__ import annotations

import argparse
import functools

from polysemy.cli._common import add_command, add_out_flags, emit
from polysemy.cli._flags import add_config_flags, config_from_args
from polysemy.toy.runs import PhaseConfig, ReproduceConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `phase` and `reproduce` to the `toy` command group."""
    p = add_command(
        subparsers,
        "phase",
        help="empirical phase diagram (trained grid) against the analytic theory",
        description=(
            "Train one ReLU-output model per (relative importance r, density p) cell, best of "
            "--best-of seeds, all in one batched run; compare each cell's phase (extra feature "
            "not represented / dedicated dimension / superposition) with the theory. Writes "
            "result.json + weights.safetensors (the trained grid), phase.json and phase.png."
        ),
        handler=run_phase,
        runtime=("device", "threads", "seed"),
    )
    add_config_flags(p, PhaseConfig)
    add_out_flags(p)

    r = add_command(
        subparsers,
        "reproduce",
        help="regenerate the paper's figures as PNGs plus one HTML page",
        description=(
            "Run the named reproductions of 'Toy Models of Superposition' (see docs/toy.md), "
            "write one PNG per figure, index.html with the measured numbers and pass/fail "
            "checks next to each figure, summary.json, and each trained sweep as a toy run "
            "folder."
        ),
        handler=run_reproduce,
        runtime=("device", "threads", "seed"),
    )
    add_config_flags(r, ReproduceConfig, flags={"experiments": {"flag": "--only"}})
    r.add_argument("--list", action="store_true", help="list the experiments and exit")
    r.add_argument(
        "--embed", action="store_true", help="inline the figures into index.html (base64)"
    )
    add_out_flags(r, required=False)


def run_phase(args: argparse.Namespace) -> int:
    from polysemy.report.toy_report import draw_phase_figure
    from polysemy.toy.runs import phase

    config = config_from_args(PhaseConfig, args)
    result = phase(
        config,
        args.out,
        force=args.force,
        device=args.device,
        threads=args.threads,
        render=draw_phase_figure,
    )
    obj = {
        "out": str(args.out),
        "n_features": config.n_features,
        "n_hidden": config.n_hidden,
        "agreement_away_from_boundary": result.agreement_away_from_boundary,
        "agreement_all": result.agreement_all,
        "cells": int(result.empirical.size),
        "cells_away_from_boundary": result.cells_away_from_boundary,
        "passed": result.passed,
        "figure": f"{args.out}/phase.png",
        "seconds": round(result.seconds, 2),
    }
    text = (
        f"phase diagram n={config.n_features}, m={config.n_hidden}: trained grid agrees with "
        f"theory on {result.agreement_away_from_boundary:.1%} of the "
        f"{result.cells_away_from_boundary} cells away from the boundary "
        f"({result.agreement_all:.1%} of all cells)\n"
        f"wrote {args.out}/phase.png, phase.json, result.json"
    )
    emit(args, obj, text)
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    from polysemy.report.toy_report import write_toy_report
    from polysemy.toy.runs import experiment_list, reproduce

    if args.list:
        listing = experiment_list()
        emit(args, {"experiments": listing}, "\n".join(f"{k}: {v}" for k, v in listing.items()))
        return 0
    config = config_from_args(ReproduceConfig, args)
    if args.out is None:
        raise ValueError("--out is required (the folder for figures, index.html, summary.json)")
    done = reproduce(
        config,
        args.out,
        force=args.force,
        device=args.device,
        threads=args.threads,
        render=functools.partial(write_toy_report, embed=args.embed),
    )
    summary = done.summary
    lines = [
        f"{e['name']}: {'pass' if e['passed'] else 'FAIL'} "
        f"({sum(c['passed'] for c in e['checks'])}/{len(e['checks'])} checks)"
        for e in summary["experiments"]
    ]
    lines.append(
        f"{summary['checks_passed']}/{summary['checks_total']} checks pass; "
        f"{summary['wall_seconds']:.0f} s wall, {summary['cpu_seconds']:.0f} s CPU"
    )
    lines.append(f"page: {args.out}/index.html")
    obj = {
        "out": str(args.out),
        "page": f"{args.out}/index.html",
        "checks_passed": summary["checks_passed"],
        "checks_total": summary["checks_total"],
        "wall_seconds": summary["wall_seconds"],
        "cpu_seconds": summary["cpu_seconds"],
        "experiments": {
            e["name"]: {"passed": e["passed"], "checks": e["checks"]}
            for e in summary["experiments"]
        },
    }
    emit(args, obj, "\n".join(lines))
    return 0
