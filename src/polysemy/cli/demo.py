"""`polysemy demo`: the real pipeline on MiniLM, or (`--toy`) the short toy-model tour.

polysemy demo                      # ~5 min on 2 cores: harvest, SAEs, analyses, report
polysemy demo --quick              # < 3 min, smaller budgets
polysemy demo --toy                # toy models of superposition only (runs/demo-toy)

The real demo is `polysemy.demo.run_demo`; every budget of `DemoConfig` is a flag, on top of
the preset. A killed demo rerun with the same flags picks up where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time
from pathlib import Path

from polysemy.cli._common import add_command, emit
from polysemy.cli._flags import FLAGS_KEY, add_config_flags

DEFAULT_OUT = "runs/demo"
DEFAULT_TOY_OUT = "runs/demo-toy"

# Fast variants of the reproductions, cheapest first (the whole list takes ~1-2 min on 2 cores).
DEMO_EXPERIMENTS = (
    "correlation",
    "pentagon",
    "sparsity-sweep",
    "privileged-basis",
    "geometry",
    "computation",
    "phase-2-1",
)


DEMO_JOBS = min(2, os.cpu_count() or 1)
"""Worker processes of the toy tour (one experiment each, single-threaded)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` command."""
    from polysemy.demo.config import DemoConfig

    p = add_command(
        subparsers,
        "demo",
        help="unpack a real model end to end (MiniLM): SAEs, evidence, report, explorer",
        description=(
            "Harvest the MLP neurons and the residual stream of one MiniLM layer and the next "
            "layer's attention output, train a TopK SAE on each, run the evidence analyses "
            "(fidelity, neurons, features, geometry, ablation, circuits), the claims battery, "
            "the report and the explorer index, all "
            f"into --out (default {DEFAULT_OUT}); then print where the report is and the "
            "command that opens the explorer. About 5 minutes on 2 idle cores; --quick under 2. "
            "Rerun the same command to resume a killed demo. Budget flags override the "
            "preset (their defaults shown are the full demo's)."
        ),
        handler=run,
        runtime=("device", "threads", "seed"),
    )
    p.add_argument("--quick", action="store_true", help="smaller budgets: under 3 minutes")
    p.add_argument(
        "--toy",
        action="store_true",
        help=f"run the short toy-model tour instead (default --out {DEFAULT_TOY_OUT})",
    )
    p.add_argument("--out", default=None, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument(
        "--force",
        action="store_true",
        help="start over: replace an --out that holds another run or another demo's config",
    )
    # None: not given, so the preset's value applies (see `demo_config`).
    names = [f.name for f in dataclasses.fields(DemoConfig) if f.name != "seed"]
    add_config_flags(p, DemoConfig, flags={name: {"default": None} for name in names})


def demo_config(args: argparse.Namespace) -> object:
    """The preset `--quick` names (or the full demo), with every budget flag given on top."""
    from polysemy.demo.config import DemoConfig, preset

    flags = getattr(args, FLAGS_KEY, {})
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(DemoConfig)
        if f.name in flags and getattr(args, f.name, None) is not None
    }
    return preset("quick" if args.quick else "full", **given)


def run(args: argparse.Namespace) -> int:
    if args.toy:
        if args.quick:
            raise ValueError("--quick applies to the real demo; --toy is already short")
        return run_toy_tour(args)
    from polysemy.demo import run_demo

    config = demo_config(args)
    out = args.out or DEFAULT_OUT
    result = run_demo(
        config,  # type: ignore[arg-type]
        out=out,
        force=args.force,
        device=args.device,
        progress=not args.json,
    )
    lines = []
    for name, record in result.stages.items():
        how = "done earlier" if name in result.resumed else f"{record['seconds']:.1f} s"
        lines.append(f"{name:>15}  {how}")
    report = result.report
    lines.append(f"{result.seconds:.0f} s in all -> {result.out}")
    lines.append(f"report: {report.resolve() if report is not None else 'not written'}")
    lines.append(f"explore: {result.explore_command}")
    emit(args, result.summary(), "\n".join(lines))
    return 0


def run_toy_tour(args: argparse.Namespace) -> int:
    """The toy-model tour: fast variants of the reproductions and one HTML page."""
    from polysemy.report.toy_report import write_toy_report
    from polysemy.toy.runs import ReproduceConfig, reproduce

    started = time.perf_counter()
    out = args.out or DEFAULT_TOY_OUT
    # Re-running the tour into its own folder replaces the previous tour: no --force needed.
    done = reproduce(
        ReproduceConfig(experiments=DEMO_EXPERIMENTS, fast=True, jobs=DEMO_JOBS),
        out,
        force=args.force,
        render=functools.partial(
            write_toy_report,
            title="polysemy demo: toy models of superposition",
            intro=(
                "A short tour: small toy models trained for a few thousand steps each (the "
                "fast variants of `polysemy toy reproduce`). Short training does not reach "
                "every bar of the full reproduction, and the checks say so honestly; run "
                "`polysemy toy reproduce --out runs/paper` for the full settings. Neurons are "
                "shown as rows of loadings over features: a neuron is a mix of features, not "
                "one concept."
            ),
        ),
    )
    page = Path(out) / "index.html"
    obj = {
        "out": str(out),
        "page": str(page),
        "checks_passed": done.summary["checks_passed"],
        "checks_total": done.summary["checks_total"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    emit(
        args,
        obj,
        f"{obj['checks_passed']}/{obj['checks_total']} checks pass "
        f"({obj['seconds']:.0f} s)\nopen {page.resolve()}",
    )
    return 0
