"""Analysis folders: what every evidence command writes, and what reports and the explorer read.

A folder holds `analysis.json` (`{"format": "polysemy.analysis/1", "kind", "inputs",
"summary"}`) and the analysis's columnar files beside it (`.safetensors` for tensors, `.json`
for records). The whole folder is written at once through a temporary sibling, so a killed
analysis leaves the old folder or the new one, never half of either.

>>> out = start_analysis("analyses/fid", force=False)               # doctest: +SKIP
>>> ... compute ...
>>> write_analysis(out, "fidelity", inputs={...}, summary={...},
...                files={"per_example.safetensors": {"cosine": cos}})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from polysemy import runfolder

if TYPE_CHECKING:
    from polysemy.sae.distributed import DistInfo

AnalysisKind = Literal[
    "fidelity",
    "neurons",
    "features",
    "geometry",
    "ablate",
    "probes",
    "edits",
    "attributions",
    "pruning",
    "claims",
    "drift",
    "circuits",
]
ANALYSIS_KINDS: tuple[str, ...] = get_args(AnalysisKind)
MARKER = "analysis.json"


@dataclass(frozen=True)
class AnalysisFolder:
    """An analysis folder as read back: its kind, inputs, summary and files."""

    path: Path
    kind: AnalysisKind
    inputs: dict[str, Any]
    """What was analysed: SAE, store, model, site, sample sizes, seeds."""
    summary: dict[str, Any]
    """The headline figures, each with its interval and null where it has one."""

    def file(self, name: str) -> Path:
        """Path of one of the folder's files; FileNotFoundError names what is there."""
        path = self.path / name
        if not path.is_file():
            have = sorted(p.name for p in self.path.iterdir() if p.name != MARKER)
            raise FileNotFoundError(
                f"{self.kind} analysis {str(self.path)!r} has no {name!r}; it holds {have}"
            )
        return path

    def json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())

    def tensors(self, name: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.file(name)))


def start_analysis(out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Check `out` before any work starts (a folder that holds another kind of run is refused
    unless `force=True`); nothing is written until `write_analysis`."""
    return runfolder.check_out(out, runfolder.ANALYSIS, force=force)


def start_analysis_on_main(
    out: str | os.PathLike[str] | None, info: DistInfo, *, force: bool = False
) -> Path | None:
    """`start_analysis` under torchrun: rank 0 alone checks (and later writes) `out`, and a
    refusal there ends every rank with the same error, so no rank waits for a writer that
    will never come. `info` is `sae.distributed.init_from_env`'s. None when `out` is None
    or on the other ranks."""
    from polysemy.sae import distributed as dist_utils

    started: list[Path] = []
    refused = None
    if out is not None and info.is_main:
        refused = dist_utils.first_error(lambda: started.append(start_analysis(out, force=force)))
    dist_utils.raise_if_any(info, refused, "refused out")
    return started[0] if started else None


def write_analysis(
    out: str | os.PathLike[str],
    kind: AnalysisKind,
    *,
    inputs: Mapping[str, Any],
    summary: Mapping[str, Any],
    files: Mapping[str, Any] | None = None,
) -> AnalysisFolder:
    """Write the folder atomically. `files` maps a file name to its content: a dict of
    tensors for `.safetensors`, any JSON value for `.json`, text for anything else."""
    if kind not in ANALYSIS_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ANALYSIS_KINDS)}; got {kind!r}")
    record = {
        "format": runfolder.ANALYSIS.format,
        "kind": kind,
        "inputs": dict(inputs),
        "summary": dict(summary),
    }
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"  # refuse NaN before writing
    with runfolder.atomic_folder(out) as tmp:
        (tmp / MARKER).write_text(text)
        for name, content in (files or {}).items():
            if "/" in name or name == MARKER or name.startswith("."):
                raise ValueError(
                    f"files must be plain file names other than {MARKER}; got {name!r}"
                )
            if name.endswith(".safetensors"):
                runfolder.atomic_save_safetensors(tmp / name, content)
            elif name.endswith(".json"):
                (tmp / name).write_text(json.dumps(content, allow_nan=False) + "\n")
            else:
                (tmp / name).write_text(str(content))
    return AnalysisFolder(Path(out), kind, dict(inputs), dict(summary))


def read_analysis(path: str | os.PathLike[str], kind: AnalysisKind | None = None) -> AnalysisFolder:
    """Open an analysis folder (of `kind`, when given)."""
    folder = Path(path)
    marker = folder / MARKER
    if not marker.is_file():
        raise FileNotFoundError(
            f"analysis {str(path)!r} has no {MARKER}; is it an analysis folder?"
        )
    record = json.loads(marker.read_text())
    fmt = record.get("format") if isinstance(record, dict) else None
    if fmt != runfolder.ANALYSIS.format:
        raise ValueError(
            f"analysis {str(path)!r} has format {fmt!r}; expected {runfolder.ANALYSIS.format!r}"
        )
    if kind is not None and record.get("kind") != kind:
        raise ValueError(
            f"analysis {str(path)!r} is a {record.get('kind')!r} analysis; expected {kind!r}"
        )
    return AnalysisFolder(folder, record["kind"], record["inputs"], record["summary"])
