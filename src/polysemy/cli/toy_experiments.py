"""`polysemy toy phase` and `polysemy toy reproduce`: the paper's figures, regenerated.

polysemy toy phase --n-features 2 --n-hidden 1 --out runs/phase [--json]
polysemy toy reproduce --out runs/paper [--fast] [--only pentagon,phase-2-1] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polysemy import runfolder
from polysemy.cli._common import (
    add_json_flag,
    add_out_flags,
    emit,
    float_list,
    nonnegative_int,
    parse_device,
    positive_int,
)

log = logging.getLogger(__name__)

REPORT_FORMAT = runfolder.TOY_REPORT.format


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `phase` and `reproduce` to the `toy` command group."""
    p = subparsers.add_parser(
        "phase",
        help="empirical phase diagram (trained grid) against the analytic theory",
        description=(
            "Train one ReLU-output model per (relative importance r, density p) cell, best of "
            "--best-of seeds, all in one batched run; compare each cell's phase (extra feature "
            "not represented / dedicated dimension / superposition) with the theory. Writes "
            "result.json + weights.safetensors (the trained grid), phase.json and phase.png."
        ),
    )
    p.add_argument("--n-features", type=positive_int, default=2, help="2 or 3 (default 2)")
    p.add_argument("--n-hidden", type=positive_int, default=1, help="1 or 2 (default 1)")
    p.add_argument(
        "--grid", type=positive_int, default=None, help="cells per axis (default 11; --fast 6)"
    )
    p.add_argument(
        "--relative-importance",
        type=float_list,
        default=None,
        help="comma list of r values (default: --grid values log-spaced in [0.1, 10])",
    )
    p.add_argument(
        "--density",
        type=float_list,
        default=None,
        help="comma list of densities p in (0, 1] (default: log-spaced in [0.01, 1])",
    )
    _add_training_flags(p, best_of=5)
    add_out_flags(p)
    add_json_flag(p)
    p.set_defaults(handler=run_phase)

    r = subparsers.add_parser(
        "reproduce",
        help="regenerate the paper's figures as PNGs plus one HTML page",
        description=(
            "Run the named reproductions of 'Toy Models of Superposition' (see docs/toy.md), "
            "write one PNG per figure, index.html with the measured numbers and pass/fail "
            "checks next to each figure, summary.json, and each trained sweep as a toy run "
            "folder."
        ),
    )
    r.add_argument(
        "--only",
        default=None,
        help="comma list of experiments to run (default: all); see --list",
    )
    r.add_argument("--list", action="store_true", help="list the experiments and exit")
    r.add_argument(
        "--embed", action="store_true", help="inline the figures into index.html (base64)"
    )
    r.add_argument(
        "--jobs",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="experiments run in parallel worker processes (default: min(2, CPU cores))",
    )
    _add_training_flags(r, best_of=None)
    add_out_flags(r, required=False)
    add_json_flag(r)
    r.set_defaults(handler=run_reproduce)


def _add_training_flags(p: argparse.ArgumentParser, *, best_of: int | None) -> None:
    p.add_argument(
        "--fast", action="store_true", help="short training (test-size); checks are looser"
    )
    p.add_argument(
        "--steps", type=positive_int, default=None, help="override every run's training steps"
    )
    p.add_argument(
        "--best-of",
        type=positive_int,
        default=best_of,
        help="seeds per configuration, lowest loss kept"
        + (f" (default {best_of})" if best_of else " (default: per experiment)"),
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch intra-op threads per process (default 1: toy models are too small to "
        "gain from more, and oversubscribed threads slow a shared machine down many-fold)",
    )


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run with `n` torch intra-op threads, restoring the previous count afterwards (the CLI
    is also called in-process, e.g. by tests)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _save_run(run: Any, folder: Path) -> None:
    """Save a trained toy run as a `polysemy.toy/1` folder (DESIGN.md section 4)."""
    from polysemy.toy.result import save_toy_run

    save_toy_run(run, folder)


def run_phase(args: argparse.Namespace) -> int:
    from polysemy.report.toy_report import draw_phase
    from polysemy.toy import experiments

    if (args.n_features, args.n_hidden) not in ((2, 1), (3, 2)):
        raise ValueError(
            "--n-features/--n-hidden must be 2/1 or 3/2 (the cases with a phase theory); "
            f"got {args.n_features}/{args.n_hidden}"
        )
    for name, values in (
        ("--relative-importance", args.relative_importance),
        ("--density", args.density),
    ):
        if values is not None and any(v <= 0 for v in values):
            raise ValueError(f"{name} values must be > 0; got {values}")
    if args.density is not None and any(v > 1 for v in args.density):
        raise ValueError(f"--density values must be in (0, 1]; got {args.density}")
    device = parse_device(args.device)
    out = runfolder.check_out(args.out, runfolder.TOY, force=args.force)
    cells = args.grid or (6 if args.fast else 11)
    r = args.relative_importance or np.geomspace(0.1, 10, cells).tolist()
    p = args.density or np.geomspace(0.01, 1, cells).tolist()
    started = time.perf_counter()
    with _threads(args.threads):
        result = experiments.phase(
            args.n_features,
            args.n_hidden,
            relative_importance=r,
            density=p,
            fast=args.fast,
            steps=args.steps,
            best_of=args.best_of,
            seed=args.seed,
            device=device,
            progress=True,
        )
    assert result.run is not None
    with runfolder.atomic_folder(out) as tmp:
        # save_toy_run writes its own atomic folder at the path, so it goes first.
        _save_run(result.run, tmp)
        draw_phase(result, tmp / "phase.png")
        phase_json = {"format": "polysemy.toy-phase/1", **result.summary()}
        runfolder.atomic_write_json(tmp / "phase.json", phase_json)
    n = result.numbers
    obj = {
        "out": str(out),
        "n_features": args.n_features,
        "n_hidden": args.n_hidden,
        "agreement_away_from_boundary": n["agreement_away_from_boundary"],
        "agreement_all": n["agreement_all"],
        "cells": int(result.empirical.size),
        "cells_away_from_boundary": n["cells_away_from_boundary"],
        "passed": result.passed,
        "figure": str(out / "phase.png"),
        "seconds": round(time.perf_counter() - started, 2),
    }
    text = (
        f"phase diagram n={args.n_features}, m={args.n_hidden}: trained grid agrees with theory "
        f"on {n['agreement_away_from_boundary']:.1%} of the {n['cells_away_from_boundary']} "
        f"cells away from the boundary ({n['agreement_all']:.1%} of all cells)\n"
        f"wrote {out}/phase.png, phase.json, result.json"
    )
    emit(args, obj, text)
    return 0


def _selected(only: str | None) -> list[str]:
    from polysemy.toy.experiments import EXPERIMENTS

    if only is None:
        return list(EXPERIMENTS)
    names = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in names if s not in EXPERIMENTS]
    if not names or unknown:
        raise ValueError(f"--only must be a comma list of {', '.join(EXPERIMENTS)}; got {only!r}")
    return names


# Most expensive first, so parallel workers finish together.
_COST_ORDER = (
    "geometry",
    "phase-3-2",
    "phase-2-1",
    "computation",
    "sparsity-sweep",
    "privileged-basis",
    "pentagon",
    "correlation",
)


def _run_one(name: str, kwargs: dict[str, Any], threads: int) -> Any:
    """Worker: run one experiment with `threads` intra-op threads (top level, so it pickles)."""
    from polysemy.toy import experiments as ex

    torch.set_num_threads(threads)
    return ex.EXPERIMENTS[name](**kwargs)


def reproduce_to(
    out: Path,
    names: list[str],
    *,
    fast: bool,
    steps: int | None,
    best_of: int | None,
    seed: int,
    device: torch.device,
    jobs: int = 1,
    threads: int = 1,
    embed: bool = False,
    title: str = "Toy models of superposition: reproduction",
    intro: str = "",
) -> dict[str, Any]:
    """Run `names` (in `jobs` worker processes of `threads` threads each), write figures,
    index.html, summary.json and the runs into `out` (atomically); return the summary.
    Shared by `toy reproduce` and `demo`."""
    from polysemy.progress import progress_bar
    from polysemy.report.toy_report import write_toy_report
    from polysemy.toy import experiments as ex

    wall0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    kwargs: dict[str, Any] = {"fast": fast, "steps": steps, "seed": seed, "device": device}
    if best_of is not None:
        kwargs["best_of"] = best_of
    done: dict[str, ex.ExperimentResult] = {}
    order = sorted(names, key=lambda n: _COST_ORDER.index(n) if n in _COST_ORDER else -1)
    with progress_bar(len(names), desc="toy reproduce", unit="exp") as bar:
        if jobs <= 1 or len(names) == 1 or device.type != "cpu":
            with _threads(threads):
                for name in order:
                    log.info("running %s", name)
                    done[name] = ex.EXPERIMENTS[name](progress=True, **kwargs)
                    bar.update(1)
        else:
            import concurrent.futures as cf
            import multiprocessing as mp

            # spawn: a fresh interpreter per worker, no inherited torch thread pools.
            with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(_run_one, n, kwargs, threads): n for n in order}
                for fut in cf.as_completed(futures):
                    done[futures[fut]] = fut.result()
                    bar.update(1)
    results = [done[n] for n in names]
    train_wall = time.perf_counter() - wall0
    checks = [c for r in results for c in r.checks]
    with runfolder.atomic_folder(out) as tmp:
        for r in results:
            for tag, run in _runs_of(r):
                _save_run(run, tmp / "runs" / tag)
        summary_intro = intro or (
            "Reproductions of Elhage et al. 2022, 'Toy Models of Superposition', "
            f"{'fast (short-training) variants' if fast else 'full settings'}. Every number "
            "below was measured on the trained models in this folder (runs/); each check "
            "compares it with the acceptance bar of issue 2."
        )
        write_toy_report(results, tmp, title=title, intro=summary_intro, embed=embed)
        summary = {
            "format": REPORT_FORMAT,
            "fast": fast,
            "experiments": [r.summary() for r in results],
            "checks_passed": sum(c.passed for c in checks),
            "checks_total": len(checks),
            "wall_seconds": round(time.perf_counter() - wall0, 2),
            "train_wall_seconds": round(train_wall, 2),
            "cpu_seconds": round(_cpu_seconds() - cpu0, 2),
            "jobs": jobs,
            "threads": threads,
            "device": str(device),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
        }
        runfolder.atomic_write_json(tmp / "summary.json", summary)
    return json.loads((out / "summary.json").read_text())


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the spawn workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _runs_of(result: Any) -> list[tuple[str, Any]]:
    runs: list[tuple[str, Any]] = []
    for attr in ("linear", "relu", "run"):
        run = getattr(result, attr, None)
        if run is not None:
            suffix = "" if attr == "run" else f"-{'relu-output' if attr == 'relu' else attr}"
            runs.append((result.name + suffix, run))
    for kind, run in getattr(result, "runs", {}).items():
        runs.append((f"{result.name}-{kind}", run))
    return runs


def run_reproduce(args: argparse.Namespace) -> int:
    from polysemy.toy.experiments import EXPERIMENTS

    if args.list:
        listing = {
            name: ((fn.__doc__ or "").strip().splitlines() or [""])[0]
            for name, fn in EXPERIMENTS.items()
        }
        emit(args, {"experiments": listing}, "\n".join(f"{k}: {v}" for k, v in listing.items()))
        return 0
    if args.out is None:
        raise ValueError("--out is required (the folder for figures, index.html, summary.json)")
    names = _selected(args.only)
    device = parse_device(args.device)
    out = runfolder.check_out(args.out, runfolder.TOY_REPORT, force=args.force)
    summary = reproduce_to(
        out,
        names,
        fast=args.fast,
        steps=args.steps,
        best_of=args.best_of,
        seed=args.seed,
        device=device,
        jobs=args.jobs,
        threads=args.threads,
        embed=args.embed,
    )
    lines = [
        f"{e['name']}: {'pass' if e['passed'] else 'FAIL'} "
        f"({sum(c['passed'] for c in e['checks'])}/{len(e['checks'])} checks)"
        for e in summary["experiments"]
    ]
    lines.append(
        f"{summary['checks_passed']}/{summary['checks_total']} checks pass; "
        f"{summary['wall_seconds']:.0f} s wall, {summary['cpu_seconds']:.0f} s CPU"
    )
    lines.append(f"page: {out / 'index.html'}")
    obj = {
        "out": str(out),
        "page": str(out / "index.html"),
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
