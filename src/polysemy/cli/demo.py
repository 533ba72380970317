"""`polysemy demo`: a short, self-contained tour that writes one HTML page.

For now it runs the toy reproductions in their fast (short-training) variants, which takes
a minute or two on two CPU cores, and writes `runs/demo/index.html`.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from pathlib import Path

from polysemy.cli._common import add_json_flag, emit

DEFAULT_OUT = "runs/demo"

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
"""Worker processes (one experiment each, single-threaded)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` command."""
    p = subparsers.add_parser(
        "demo",
        help="run a short toy-model tour and write an HTML page",
        description=(
            "Train small toy models of superposition (short-training variants of "
            "`polysemy toy reproduce`), draw the figures and write index.html under --out."
        ),
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument(
        "--force", action="store_true", help="replace an --out that holds another kind of run"
    )
    add_json_flag(p)
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from polysemy.report.toy_report import write_toy_report
    from polysemy.toy.runs import ReproduceConfig, reproduce

    started = time.perf_counter()
    # Re-running the demo into its own folder replaces the previous demo: no --force needed.
    done = reproduce(
        ReproduceConfig(experiments=DEMO_EXPERIMENTS, fast=True, jobs=DEMO_JOBS),
        args.out,
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
    page = Path(args.out) / "index.html"
    obj = {
        "out": str(args.out),
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
