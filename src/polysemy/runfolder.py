"""Run folders and atomic writes: nothing half-written, ever.

A *run folder* is what a command writes under `--out`: a toy sweep, an activation store, an
SAE checkpoint. Each kind is recognised by one marker file holding a `"format"` string
(`result.json` -> `polysemy.toy/1`, `manifest.json` -> `polysemy.activations/1`,
`config.json` -> `polysemy.sae/1`). Files are written to a temporary sibling and renamed
into place, so a killed process leaves either the old file or the new one.

>>> out = check_out("runs/x", TOY)                # doctest: +SKIP
>>> with atomic_folder(out) as tmp:                # doctest: +SKIP
...     (tmp / "result.json").write_text("{}")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunKind:
    """One kind of run folder, told apart by a marker file's `format` prefix."""

    marker: str
    """File inside the folder that names its format, e.g. `result.json`."""
    format: str
    """Full format string, e.g. `polysemy.toy/1`; its part before `/` identifies the kind."""

    @property
    def family(self) -> str:
        return self.format.split("/", 1)[0]


TOY = RunKind("result.json", "polysemy.toy/1")
ACTIVATIONS = RunKind("manifest.json", "polysemy.activations/1")
SAE = RunKind("config.json", "polysemy.sae/1")
# Figures + HTML page of `polysemy toy reproduce` / `polysemy demo` (summary.json marks it).
TOY_REPORT = RunKind("summary.json", "polysemy.toy-report/1")
# What `polysemy analyze ...` writes (polysemy.analysis.folder).
ANALYSIS = RunKind("analysis.json", "polysemy.analysis/1")
# What `polysemy report` writes (polysemy.report.write_report).
REPORT = RunKind("report.json", "polysemy.report/1")
# What `polysemy demo` writes (polysemy.demo.state): stores, SAEs and analyses under one folder.
DEMO = RunKind("demo.json", "polysemy.demo/1")
# What `polysemy organism train` writes (polysemy.organism.train_organism).
ORGANISM = RunKind("organism.json", "polysemy.organism/1")
KNOWN_KINDS = (TOY, ACTIVATIONS, SAE, TOY_REPORT, ANALYSIS, REPORT, DEMO, ORGANISM)


def detect_kind(folder: Path) -> str | None:
    """The format string of the run in `folder`, or None when it holds no known run."""
    for kind in KNOWN_KINDS:
        marker = folder / kind.marker
        if marker.is_file():
            try:
                fmt = json.loads(marker.read_text()).get("format")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(fmt, str) and fmt.startswith("polysemy."):
                return fmt
    return None


def check_out(out: str | os.PathLike[str], kind: RunKind, *, force: bool = False) -> Path:
    """Validate an output folder before any work starts; return it as a Path.

    Refuses (ValueError) a path that is a file, or an existing non-empty folder that holds
    anything other than a run of the same kind, unless `force`. Refuses (PermissionError)
    a folder whose parent cannot be written.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out must be a folder; got the existing file {str(path)!r}")
    if path.is_dir() and any(path.iterdir()) and not force:
        found = detect_kind(path)
        if found is None or found.split("/", 1)[0] != kind.family:
            what = f"a {found} run" if found else "files that are not a polysemy run"
            raise ValueError(
                f"out {str(path)!r} already holds {what}, not a {kind.format} run; "
                "choose another folder or pass force=True to replace it"
            )
    parent = _existing_ancestor(path.parent if not path.exists() else path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"out {str(path)!r} is not writable (no write access to {str(parent)!r})"
        )
    return path


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success it replaces `out` in one rename.

    On any exception the temporary folder is removed and `out` is left as it was.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a run folder is shared like any
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, out)


def replace_folder(src: Path, dst: Path) -> None:
    """Move folder `src` to `dst`, replacing whatever `dst` held, with no window in which
    `dst` is half-written (the old folder is renamed aside first, then deleted)."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling file, fsync'd, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; keep the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def atomic_save_safetensors(
    path: str | os.PathLike[str], tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> None:
    """Save torch tensors to a `.safetensors` file atomically.

    Tensors are made contiguous (and detached, on CPU) first: a transposed view written
    as-is would otherwise come back scrambled from some safetensors paths.
    """
    from safetensors.torch import save

    clean = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    atomic_write_bytes(path, save(clean, metadata=metadata))
