"""RUN/demo.json: which stages of a demo are done, how long each took, what each found.

`{"format": "polysemy.demo/1", "config": {...}, "stages": {name: {"done": bool,
"seconds": float, ...}}}`. The file is rewritten atomically after every stage, so a killed
demo leaves the record of every stage that finished; a rerun with the same config skips
them. Stage outputs are atomic too (stores, SAE checkpoints and analysis folders are written
to a temporary sibling and renamed), so a stage that is not marked done left nothing that
a reader could mistake for a result.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polysemy.runfolder import DEMO, atomic_write_json, check_out

DEMO_JSON = "demo.json"


@dataclass
class DemoState:
    """The bookkeeping of one demo run folder (mutable: it is the record being written)."""

    path: Path
    """The run folder."""
    config: dict[str, Any]
    """The DemoConfig the folder was started with (a resume must ask for the same)."""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> {"done", "seconds", ...what the stage found}."""

    def done(self, name: str) -> bool:
        return bool(self.stages.get(name, {}).get("done"))

    def record(self, name: str, seconds: float, **info: Any) -> None:
        """Mark stage `name` done after `seconds`, with `info`, and write demo.json."""
        self.stages[name] = {"done": True, "seconds": round(seconds, 3), **info}
        self.write()

    def write(self) -> None:
        atomic_write_json(
            self.path / DEMO_JSON,
            {"format": DEMO.format, "config": self.config, "stages": self.stages},
        )


def open_state(out: str | os.PathLike[str], config: dict[str, Any], *, force: bool) -> DemoState:
    """The state of run folder `out` for a demo with `config`: the recorded one when `out`
    holds a demo started with the same config (a resume), a fresh one otherwise.

    Refuses (ValueError naming `out`) a folder holding anything else, or a demo started with
    another config, unless `force`, which empties the folder first.
    """
    path = check_out(out, DEMO, force=force)
    marker = path / DEMO_JSON
    recorded: dict[str, Any] | None = None
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text())
        except ValueError:
            recorded = None
    if recorded is not None and recorded.get("config") != config and not force:
        theirs = recorded.get("config") or {}
        diff = sorted(k for k in set(theirs) | set(config) if theirs.get(k) != config.get(k))
        shown = ", ".join(f"{k}={theirs.get(k)!r} (now {config.get(k)!r})" for k in diff[:3])
        raise ValueError(
            f"out {str(path)!r} holds a demo run with another config ({shown}); choose another "
            "folder or pass force=True to start over"
        )
    if force and path.is_dir() and any(path.iterdir()):
        shutil.rmtree(path)
        recorded = None
    path.mkdir(parents=True, exist_ok=True)
    stages = dict(recorded.get("stages") or {}) if recorded else {}
    state = DemoState(path=path, config=config, stages=stages)
    state.write()
    return state
