"""What a report is made of: the runs found under a path, by their marker files.

Readers never rely on folder names (DESIGN.md, "the run folder a demo writes"): a path is
walked for marker files (`analysis.json`, `config.json`, `manifest.json`, `result.json`,
`summary.json`), each read for its `format` (and an analysis's `kind`). So the same code reports
on a whole demo run, one SAE checkpoint, one toy run or one analysis folder.

>>> found = discover("runs/demo")                       # doctest: +SKIP
>>> [s.kind for s in found.items]                       # doctest: +SKIP
['activations', 'sae', 'analysis:neurons', ...]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polysemy import runfolder

__all__ = ["Source", "Sources", "discover"]

# Marker file -> (format family, kind name used by the report).
_MARKERS = {
    runfolder.ANALYSIS.marker: (runfolder.ANALYSIS.family, "analysis"),
    runfolder.SAE.marker: (runfolder.SAE.family, "sae"),
    runfolder.ACTIVATIONS.marker: (runfolder.ACTIVATIONS.family, "activations"),
    runfolder.TOY.marker: (runfolder.TOY.family, "toy"),
    runfolder.TOY_REPORT.marker: (runfolder.TOY_REPORT.family, "toy-report"),
    runfolder.ORGANISM.marker: (runfolder.ORGANISM.family, "organism"),
}
# Folders never walked: resumable training state, and reports (ours or a toy tour's own
# runs, which the toy report already drew).
_SKIP = {"state", "__pycache__", "node_modules"}


@dataclass(frozen=True)
class Source:
    """One run found under the report's path."""

    kind: str
    """`sae`, `activations`, `toy`, `toy-report`, `organism` or `analysis:<kind>`
    (`analysis:neurons`...)."""
    path: Path
    """Its folder."""
    record: dict[str, Any]
    """The marker file's JSON."""
    name: str
    """Its path relative to the report's path (`.` for the path itself)."""


@dataclass(frozen=True)
class Sources:
    """Every run found under `root`, in walk order (sorted, so reports are reproducible)."""

    root: Path
    items: tuple[Source, ...]

    def of(self, kind: str) -> list[Source]:
        """The sources of one kind (`"analysis:neurons"`, `"sae"`, ...)."""
        return [s for s in self.items if s.kind == kind]


def _read_marker(folder: Path, marker: str, family: str) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / marker).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    fmt = record.get("format")
    if not isinstance(fmt, str) or fmt.split("/", 1)[0] != family:
        return None
    return record


def _is_report(folder: Path) -> bool:
    return _read_marker(folder, runfolder.REPORT.marker, runfolder.REPORT.family) is not None


def discover(path: str | os.PathLike[str]) -> Sources:
    """Walk `path` for runs. ValueError (one line) when it is not a folder or holds none."""
    root = Path(path)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is a file"
        raise ValueError(
            f"path must be a run folder (a demo run, a toy run, an SAE or an analysis folder); "
            f"{str(path)!r} {what}"
        )
    items: list[Source] = []
    for dirpath, dirnames, _ in os.walk(root):
        folder = Path(dirpath)
        if _is_report(folder):
            dirnames[:] = []
            continue
        for marker, (family, kind) in _MARKERS.items():
            record = _read_marker(folder, marker, family)
            if record is None:
                continue
            if kind == "analysis":
                kind = f"analysis:{record.get('kind')}"
            rel = folder.relative_to(root).as_posix()
            items.append(Source(kind, folder, record, rel or "."))
            if kind == "toy-report":
                dirnames[:] = []  # its runs/ are the data its own figures were drawn from
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP)
    if not items:
        raise ValueError(
            f"path must be a run folder holding polysemy runs (analysis.json, config.json, "
            f"manifest.json, result.json or summary.json with a polysemy format); "
            f"{str(path)!r} holds none"
        )
    return Sources(root, tuple(items))
