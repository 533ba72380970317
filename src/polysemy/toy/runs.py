"""Whole toy runs that write a folder: train a sweep, a phase grid, or the paper's reproductions.

Each run is a frozen config that carries every default (`ToySweepConfig`, `PhaseConfig`,
`ReproduceConfig`) and a function that checks the output folder, trains, and writes the folder
atomically (`train`, `phase`, `reproduce`). Fields of the config may also be given as keywords,
so a notebook needs no config object; a list is accepted wherever a tuple is stored:

>>> import polysemy as ps
>>> run = ps.toy.train(out="runs/x", n_features=20, n_hidden=5, sparsity=[0, 0.9])  # doctest: +SKIP
>>> rep = ps.toy.reproduce(out="runs/paper", experiments=["pentagon"], fast=True)  # doctest: +SKIP
>>> rep.summary["checks_passed"], rep.summary["checks_total"]                     # doctest: +SKIP
(4, 4)

The library writes data (run folders, JSON); figures and pages are the report layer's
(`report.toy_report` draws them), passed in as `render`, which draws into the folder before it
is renamed into place, so a run folder is still written all at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from polysemy import runfolder
from polysemy.toy import experiments as ex
from polysemy.toy.experiments.e4_phase import (
    PHASE_CELLS,
    PHASE_CELLS_FAST,
    PHASE_SHAPES,
    default_density,
    default_relative_importance,
)
from polysemy.toy.model import (
    FeatureKind,
    LRSchedule,
    ModelKind,
    OptimizerKind,
    ToyConfig,
    importance_decay,
)
from polysemy.toy.result import save_toy_run
from polysemy.toy.trainer import ToyRun, train_toy
from polysemy.validation import (
    ParameterError,
    check_float,
    check_int,
    check_optional_float,
    check_optional_int,
    configured,
)

log = logging.getLogger(__name__)

__all__ = [
    "PhaseConfig",
    "ReproduceConfig",
    "Reproduction",
    "ToySweepConfig",
    "experiment_list",
    "phase",
    "reproduce",
    "train",
]

PHASE_FORMAT = "polysemy.toy-phase/1"
"""`format` of `phase.json`."""

PathLike = str | os.PathLike[str]


def _tuple(config: object, name: str) -> None:
    """Store a list given for a tuple field as a tuple (a canonical form, not derived state:
    frozen configs hash and compare by value)."""
    value = getattr(config, name)
    if isinstance(value, list):
        object.__setattr__(config, name, tuple(value))


def _floats(name: str, values: object, *, least: float, most: float | None = None) -> None:
    """Refuse anything but a non-empty tuple of finite numbers in [least, most]."""
    where = f"in [{least:g}, {most:g}]" if most is not None else f">= {least:g}"
    if not isinstance(values, tuple) or not values:
        raise ParameterError(name, f"a non-empty list of numbers {where}", values)
    for v in values:
        try:
            check_float(name, v, least=least, most=most)
        except ParameterError:
            raise ParameterError(name, f"a list of numbers {where}", values) from None


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch intra-op threads (None: 1), restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n if n is not None else 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- train -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToySweepConfig:
    """One toy model per sparsity value, trained together: what `polysemy toy train` runs.

    The training fields take their defaults from `ToyConfig`, the engine's config, so each
    default is written once."""

    model: ModelKind = "relu-output"
    """Toy model kind."""
    n_features: int = 20
    """Input features n."""
    n_hidden: int = 5
    """Hidden dimensions m."""
    sparsity: tuple[float, ...] = (0.0,)
    """S = P(feature is 0): one instance per value, in order."""
    importance_decay: float | None = None
    """Importance I_i = r**i (None: uniform, r = 1)."""
    importance: tuple[float, ...] | None = None
    """Explicit importances, n_features values >= 0 (instead of importance_decay)."""
    feature_kind: FeatureKind = ToyConfig.feature_kind
    """Independent features, or correlated / anticorrelated pairs."""
    steps: int = ToyConfig.steps
    """Optimizer steps."""
    batch_size: int = ToyConfig.batch_size
    """Samples per step."""
    lr: float = ToyConfig.lr
    """Peak learning rate."""
    lr_schedule: LRSchedule = ToyConfig.lr_schedule
    """Learning-rate schedule after warm-up."""
    warmup_steps: int = ToyConfig.warmup_steps
    """Linear learning-rate warm-up steps."""
    optimizer: OptimizerKind = ToyConfig.optimizer
    """adam or adamw."""
    weight_decay: float = ToyConfig.weight_decay
    """Weight decay on the weights."""
    best_of: int = ToyConfig.best_of
    """Seeds trained per sparsity value; the lowest final loss is kept."""
    seed: int = ToyConfig.seed
    """Seed of initialization and data."""
    snapshot_every: int | None = ToyConfig.snapshot_every
    """Keep a copy of W every N steps (for drift)."""
    snapshots: int | None = ToyConfig.snapshots
    """Keep W and b_final at N log-spaced steps, 0 and the last included (for drift)."""

    def __post_init__(self) -> None:
        for name in ("sparsity", "importance"):
            _tuple(self, name)
        n = check_int("n_features", self.n_features, least=1)
        check_int("n_hidden", self.n_hidden, least=1)
        _floats("sparsity", self.sparsity, least=0.0, most=1.0)
        check_optional_float("importance_decay", self.importance_decay, above=0.0)
        if self.importance is not None:
            if self.importance_decay is not None:
                raise ParameterError(
                    "importance", "None when importance_decay is given", self.importance
                )
            if not isinstance(self.importance, tuple) or len(self.importance) != n:
                got = len(self.importance) if isinstance(self.importance, tuple) else None
                raise ParameterError("importance", f"a list of n_features={n} values", got)
            _floats("importance", self.importance, least=0.0)
        # The rest is ToyConfig's to check; build it now so a bad field fails here.
        self.toy_config()

    def toy_config(self) -> ToyConfig:
        """The engine's `ToyConfig`: the same importance row for every instance."""
        if self.importance is not None:
            row = tuple(float(v) for v in self.importance)
        else:
            row = importance_decay(self.importance_decay or 1.0, self.n_features)
        sparsity = tuple(float(s) for s in self.sparsity)
        return ToyConfig(
            model=self.model,
            n_features=self.n_features,
            n_hidden=self.n_hidden,
            sparsity=sparsity,
            importance=tuple(row for _ in sparsity),
            feature_kind=self.feature_kind,
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            lr_schedule=self.lr_schedule,
            warmup_steps=self.warmup_steps,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            best_of=self.best_of,
            seed=self.seed,
            snapshot_every=self.snapshot_every,
            snapshots=self.snapshots,
        )


def train(
    config: ToySweepConfig | None = None,
    out: PathLike | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    device: torch.device | str = "cpu",
    threads: int | None = None,
    **options: Any,
) -> ToyRun:
    """Train the sweep `config` (or its fields given as `options`) and, when `out` is given,
    write it there as a toy run folder (`result.json` + `weights.safetensors`).

    An `out` that holds another kind of run is refused unless `force=True`. `threads`:
    torch CPU threads while training (None: 1, see `train_toy`)."""
    config = configured(ToySweepConfig, config, options)
    path = runfolder.check_out(out, runfolder.TOY, force=force) if out is not None else None
    run = train_toy(config.toy_config(), device=device, progress=progress, num_threads=threads)
    if path is not None:
        save_toy_run(run, path, force=force)
    return run


# ---- phase -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseConfig:
    """An empirical phase grid against the theory: what `polysemy toy phase` runs."""

    n_features: int = 2
    """2 or 3 (with n_hidden 1 or 2: the cases with a phase theory)."""
    n_hidden: int = 1
    """1 or 2."""
    grid: int | None = None
    """Cells per axis (None: 11, or 6 when fast)."""
    relative_importance: tuple[float, ...] | None = None
    """Relative importances r of the extra feature (None: grid values log-spaced in [0.1, 10])."""
    density: tuple[float, ...] | None = None
    """Densities p in (0, 1] (None: grid values log-spaced in [0.01, 1])."""
    fast: bool = False
    """Short training (test-size); checks are looser."""
    steps: int | None = None
    """Training steps of every run (None: the experiment's own)."""
    best_of: int = 5
    """Seeds per cell; the lowest exact expected loss is kept."""
    seed: int = 0
    """Seed of initialization and data."""

    def __post_init__(self) -> None:
        for name in ("relative_importance", "density"):
            _tuple(self, name)
        shape = (self.n_features, self.n_hidden)
        if shape not in PHASE_SHAPES:
            raise ParameterError(
                "n_features",
                "2 with n_hidden=1, or 3 with n_hidden=2 (the cases with a phase theory)",
                shape,
            )
        check_optional_int("grid", self.grid, least=1)
        for name, most in (("relative_importance", None), ("density", 1.0)):
            values = getattr(self, name)
            if values is None:
                continue
            where = "in (0, 1]" if most is not None else "> 0"
            try:
                _floats(name, values, least=0.0, most=most)
                ok = all(v > 0 for v in values)
            except ParameterError:
                ok = False
            if not ok:
                raise ParameterError(name, f"a list of numbers {where}", values)
        check_optional_int("steps", self.steps, least=1)
        check_int("best_of", self.best_of, least=1)
        check_int("seed", self.seed, least=0)

    @property
    def cells(self) -> int:
        """Cells per axis."""
        if self.grid is not None:
            return self.grid
        return PHASE_CELLS_FAST if self.fast else PHASE_CELLS


Render = Callable[[Sequence[ex.ExperimentResult], Path], object]
"""Draws figures (and a page) for results into a folder (the report layer's `report.toy_report`)."""


def phase(
    config: PhaseConfig | None = None,
    out: PathLike | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    device: torch.device | str = "cpu",
    threads: int | None = None,
    render: Render | None = None,
    **options: Any,
) -> ex.PhaseResult:
    """Train the phase grid `config` (or its fields as `options`), compare it with the theory
    and, when `out` is given, write there the trained grid as a toy run folder (instance
    i_p * n_r + i_r), `phase.json` (the result's summary) and whatever `render` draws."""
    config = configured(PhaseConfig, config, options)
    path = runfolder.check_out(out, runfolder.TOY, force=force) if out is not None else None
    cells = config.cells
    with _threads(threads):
        result = ex.phase(
            config.n_features,
            config.n_hidden,
            relative_importance=config.relative_importance or default_relative_importance(cells),
            density=config.density or default_density(cells),
            fast=config.fast,
            steps=config.steps,
            best_of=config.best_of,
            seed=config.seed,
            device=device,
            progress=progress,
        )
    if path is not None:
        with runfolder.atomic_folder(path) as tmp:
            # save_toy_run writes its own atomic folder at the path, so it goes first.
            save_toy_run(result.run, tmp)
            runfolder.atomic_write_json(
                tmp / "phase.json", {"format": PHASE_FORMAT, **result.summary()}
            )
            if render is not None:
                render([result], tmp)
    return result


# ---- reproduce -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReproduceConfig:
    """The paper's reproductions to run and how: what `polysemy toy reproduce` runs."""

    experiments: tuple[str, ...] | None = None
    """Experiments to run, by name (None: all; see `polysemy.toy.experiments.EXPERIMENTS`)."""
    fast: bool = False
    """Short training (test-size); checks are looser."""
    steps: int | None = None
    """Training steps of every run (None: each experiment's own)."""
    best_of: int | None = None
    """Seeds per configuration, lowest loss kept (None: each experiment's own)."""
    seed: int = 0
    """Seed of initialization and data."""
    jobs: int = min(2, os.cpu_count() or 1)
    """Experiments run in parallel worker processes (default: min(2, CPU cores))."""

    def __post_init__(self) -> None:
        _tuple(self, "experiments")
        names = self.experiments
        if names is not None and (
            not isinstance(names, tuple) or not names or any(n not in ex.EXPERIMENTS for n in names)
        ):
            raise ParameterError(
                "experiments", f"a list of names from {', '.join(ex.EXPERIMENTS)}", names
            )
        check_optional_int("steps", self.steps, least=1)
        check_optional_int("best_of", self.best_of, least=1)
        check_int("seed", self.seed, least=0)
        check_int("jobs", self.jobs, least=1)

    @property
    def names(self) -> tuple[str, ...]:
        """The experiments to run, in registry order where not chosen."""
        return self.experiments if self.experiments is not None else tuple(ex.EXPERIMENTS)


class Reproduction(NamedTuple):
    """What `reproduce` returns."""

    results: tuple[ex.ExperimentResult, ...]
    """One result per experiment, in the order asked for."""
    summary: dict[str, Any]
    """The JSON written to `summary.json`."""
    out: Path | None
    """The folder written, or None."""


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


def _run_one(name: str, kwargs: dict[str, Any], threads: int | None) -> ex.ExperimentResult:
    """Worker: run one experiment with `threads` intra-op threads (top level, so it pickles)."""
    torch.set_num_threads(threads if threads is not None else 1)
    return ex.EXPERIMENTS[name](**kwargs)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the spawn workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def reproduce(
    config: ReproduceConfig | None = None,
    out: PathLike | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    device: torch.device | str = "cpu",
    threads: int | None = None,
    render: Render | None = None,
    **options: Any,
) -> Reproduction:
    """Run the reproductions `config` names (in `config.jobs` worker processes on CPU, with
    `threads` torch threads each, None: 1) and, when `out` is given, write there
    `summary.json`, every trained sweep as a toy run folder under `runs/`, and whatever
    `render` draws (the CLI passes the report layer's figures and `index.html`)."""
    from polysemy.progress import progress_bar

    config = configured(ReproduceConfig, config, options)
    path = runfolder.check_out(out, runfolder.TOY_REPORT, force=force) if out else None
    device = torch.device(device)
    names = list(config.names)
    wall0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    kwargs: dict[str, Any] = {
        "fast": config.fast,
        "steps": config.steps,
        "seed": config.seed,
        "device": device,
    }
    if config.best_of is not None:
        kwargs["best_of"] = config.best_of
    done: dict[str, ex.ExperimentResult] = {}
    order = sorted(names, key=lambda n: _COST_ORDER.index(n) if n in _COST_ORDER else -1)
    jobs = config.jobs
    with progress_bar(len(names), desc="toy reproduce", unit="exp", enabled=progress) as bar:
        if jobs <= 1 or len(names) == 1 or device.type != "cpu":
            with _threads(threads):
                for name in order:
                    log.info("running %s", name)
                    done[name] = ex.EXPERIMENTS[name](progress=progress, **kwargs)
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
    results = tuple(done[n] for n in names)
    train_wall = time.perf_counter() - wall0
    checks = [c for r in results for c in r.checks]
    summary: dict[str, Any] = {
        "format": runfolder.TOY_REPORT.format,
        "fast": config.fast,
        "experiments": [r.summary() for r in results],
        "checks_passed": sum(c.passed for c in checks),
        "checks_total": len(checks),
        "wall_seconds": 0.0,
        "train_wall_seconds": round(train_wall, 2),
        "cpu_seconds": 0.0,
        "jobs": jobs,
        "threads": threads if threads is not None else 1,
        "device": str(device),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    if path is None:
        summary["wall_seconds"] = round(time.perf_counter() - wall0, 2)
        summary["cpu_seconds"] = round(_cpu_seconds() - cpu0, 2)
        return Reproduction(results, summary, None)
    with runfolder.atomic_folder(path) as tmp:
        for r in results:
            for tag, run in r.named_runs():
                save_toy_run(run, tmp / "runs" / tag)
        if render is not None:
            render(results, tmp)
        summary["wall_seconds"] = round(time.perf_counter() - wall0, 2)
        summary["cpu_seconds"] = round(_cpu_seconds() - cpu0, 2)
        runfolder.atomic_write_json(tmp / "summary.json", summary)
    # Read back what was written, so the caller sees the JSON exactly as stored.
    return Reproduction(results, json.loads((path / "summary.json").read_text()), path)


def experiment_list() -> dict[str, str]:
    """Every experiment's name and the first line of its description."""
    return {
        name: ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        for name, fn in ex.EXPERIMENTS.items()
    }
