"""`run_demo`: the whole pipeline on a real model, resumable, one stage after another.

>>> result = run_demo(preset("quick"), out="runs/demo")     # doctest: +SKIP
>>> result.explore_command
'polysemy explore runs/demo'
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from polysemy.demo.config import DemoConfig
from polysemy.demo.stages import STAGES, StageContext
from polysemy.demo.state import open_state
from polysemy.progress import progress_bar
from polysemy.validation import ParameterError

logger = logging.getLogger(__name__)

DEFAULT_OUT = "runs/demo"


@dataclass(frozen=True)
class DemoResult:
    """What `run_demo` did."""

    out: Path
    """The run folder."""
    stages: dict[str, dict[str, Any]]
    """name -> its demo.json record ("done", "seconds", its figures)."""
    ran: tuple[str, ...]
    """Stages this call ran."""
    resumed: tuple[str, ...]
    """Stages found done by an earlier, interrupted call and skipped."""
    seconds: float
    """Wall time of this call."""

    @property
    def report(self) -> Path | None:
        """The report's index.html, when the report stage has written one."""
        page = self.out / "report" / "index.html"
        return page if page.is_file() else None

    @property
    def explore_command(self) -> str:
        """The command that opens the explorer on this run."""
        return f"polysemy explore {self.out}"

    def summary(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "ran": list(self.ran),
            "resumed": list(self.resumed),
            "seconds": round(self.seconds, 2),
            "report": None if self.report is None else str(self.report),
            "explore": self.explore_command,
            "stages": self.stages,
        }


def run_demo(
    config: DemoConfig | None = None,
    *,
    out: str | os.PathLike[str] = DEFAULT_OUT,
    force: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> DemoResult:
    """Run every stage of `stages.STAGES` not yet done in run folder `out`.

    A folder holding a demo started with the same config is resumed: stages recorded as done
    in demo.json are skipped, an interrupted harvest or SAE training continues. Another
    config, or a folder holding anything else, is refused (ValueError naming `out`) unless
    `force`, which starts over.
    """
    config = DemoConfig() if config is None else config
    if not isinstance(config, DemoConfig):
        raise TypeError(f"config must be a DemoConfig; got {type(config).__name__}")
    started = time.perf_counter()
    loaded = None
    if force or not (Path(out) / "demo.json").is_file():  # a new run: refuse bad sites first
        loaded = _model_with_sites(config, device)
    state = open_state(out, config.to_dict(), force=force)
    ctx = StageContext(config=config, run=state.path, device=device, progress=progress,
                       _loaded=loaded)  # fmt: skip
    ran: list[str] = []
    resumed: list[str] = []
    bar = progress_bar(len(STAGES), desc="demo", unit="stage", enabled=progress, position=0)
    with bar:
        for name, stage in STAGES:
            if state.done(name):
                resumed.append(name)
                bar.update(1)
                continue
            bar.set_postfix_str(name)
            t0, cpu0 = time.perf_counter(), time.process_time()
            info = stage(ctx)
            seconds = time.perf_counter() - t0
            # CPU seconds of all threads: what the stage costs on an idle machine, where
            # wall seconds also count the other processes sharing the cores.
            cpu = round(time.process_time() - cpu0, 3)
            state.record(name, seconds, cpu_seconds=cpu, **info)
            logger.info("stage %s done in %.1f s", name, seconds)
            ran.append(name)
            bar.update(1)
    return DemoResult(
        out=state.path,
        stages=dict(state.stages),
        ran=tuple(ran),
        resumed=tuple(resumed),
        seconds=time.perf_counter() - started,
    )


def _model_with_sites(config: DemoConfig, device: Any) -> Any:
    """The model, once its three harvest sites are known to exist: a `layer` with no next
    layer (the circuits' downstream end) is refused before anything is written."""
    from polysemy.models import load_model
    from polysemy.models.sites import list_sites

    loaded = load_model(config.model, device=device)
    names = {s.name for s in list_sites(loaded)}
    for site in (config.mlp_site, config.resid_site, config.attn_site):
        if site not in names:
            raise ParameterError(
                "layer", f"a layer of {config.model} with a next layer (no site {site})",
                config.layer,
            )  # fmt: skip
    return loaded
