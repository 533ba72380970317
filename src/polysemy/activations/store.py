"""The activation store: rows of activations on disk, written in shards, read memory-mapped.

A store is a folder (DESIGN.md §4)::

    manifest.json          {"format": "polysemy.activations/1", "d_in", "dtype", "rows",
                            "shards": [{"file", "rows"}], "source": {...}}
    shard-00000.safetensors  activations [rows, d_in] (+ tokens [rows] int32, doc [rows] int64,
                             pos [rows] int32 when harvested from text)
    ...
    tokenizer/             optional, so dashboards can print tokens
    truth.safetensors      optional, synthetic stores: planted features [n_features, d_in]

`StoreWriter` appends rows and writes each full shard atomically (temporary file, fsync,
rename), then rewrites `manifest.json` atomically, so a killed run keeps every complete shard
and the manifest never names a missing or partial one; `resume=True` continues from there.

`ActivationStore` opens such a folder, or a single `.npy` / `.safetensors` file holding one
2-D float array, and reads it without loading it: shards are memory-mapped with numpy at
the data offset given by the safetensors header (8-byte little-endian header length, JSON
header, raw little-endian data), so a read touches only the rows it asks for.

>>> with StoreWriter("acts/x", d_in=4, dtype="float32", source={}) as w:  # doctest: +SKIP
...     w.append(torch.randn(10, 4))
>>> store = ActivationStore("acts/x")  # doctest: +SKIP
>>> for x in store.batches(2, seed=0): ...  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from polysemy.activations.shards import (
    DTYPES,
    MANIFEST,
    PART_RE,
    SHARD_RE,
    ST_NAME,
    STORE_FORMAT,
    TOKENIZER,
    TRACE_COLUMNS,
    TRACE_DTYPES,
    TRUTH,
    ShardInfo,
    dtype_name,
    is_store_member,
    map_shard,
    memmap_array,
    part_manifest,
    part_prefix,
    read_header,
    read_manifest,
    to_tensor,
    validate_shards,
)
from polysemy.runfolder import atomic_save_safetensors, atomic_write_json, replace_folder
from polysemy.validation import ParameterError, check_int

logger = logging.getLogger(__name__)

DEFAULT_SHARD_ROWS = 65_536
"""Rows per shard: 48 MiB at d_in 384 in float16, large enough for fast sequential reads."""
DEFAULT_HELDOUT_FRACTION = 0.05
"""Share of rows, taken from the end of the store, that form the held-out split."""
SHUFFLE_BYTES = 64 << 20
"""Default memory of the shuffled batch stream: 64 MiB of stored rows."""
SHUFFLE_PIECES = 16
"""The shuffle window is filled from this many random places in the store."""
MAX_OPEN_SHARDS = 64
"""Shards kept memory-mapped at once (one file descriptor each)."""
SCAN_ROWS = 65_536
"""Rows per block of sequential scans (`iter_chunks`, `find_nonfinite_rows`)."""

Split = Literal["train", "heldout", "all"]
"""Rows of a store: the training split, the held-out split (its last rows), or all of them."""
SPLITS: tuple[str, ...] = get_args(Split)

# ---- writing --------------------------------------------------------------------------------


class StoreWriter:
    """Append activation rows to a store folder, one atomically written shard at a time.

    Use as a context manager: `close()` (on a normal exit) writes the last, partial shard. On
    an exception the buffered rows are dropped, so a resumed run writes the same shards as an
    uninterrupted one. With `resume=True` an existing store in `out` is continued: `d_in`,
    `dtype`, `source` and the presence of trace columns must agree, temporary files of a
    killed run are deleted, and `rows_committed` says how many rows the producer must skip.
    Without `resume`, a store already in `out` is replaced (its manifest is emptied first, so
    the folder is a valid store at every moment).

    With `part=(rank, world_size)` the writer is one rank of a harvest under torchrun: its
    shards are named `rank-<rank>-shard-<i>.safetensors` and its progress goes to
    `rank-<rank>.manifest.json` (same format, `source` plus `part`), never to `manifest.json`,
    and it touches no other rank's files; `join_parts` writes the one manifest at the end.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        d_in: int,
        dtype: str | torch.dtype,
        source: Mapping[str, Any],
        shard_rows: int = DEFAULT_SHARD_ROWS,
        resume: bool = False,
        part: tuple[int, int] | None = None,
    ) -> None:
        check_int("d_in", d_in, least=1)
        check_int("shard_rows", shard_rows, least=1)
        if part is not None:
            rank, world_size = part
            check_int("world_size", world_size, least=1)
            check_int("rank", rank, least=0)
            if rank >= world_size:
                raise ValueError(f"rank must be in [0, {world_size}); got {rank}")
            source = {**source, "part": {"rank": rank, "world_size": world_size}}
        self._prefix = "" if part is None else part_prefix(part[0])
        self._manifest_name = MANIFEST if part is None else part_manifest(part[0])
        self.part = part
        if not isinstance(source, Mapping):
            raise TypeError(f"source must be a dict; got {type(source).__name__}")
        try:
            # Round-trip through JSON so `source` compares equal to what a resume reads back.
            self._source: dict[str, Any] = json.loads(json.dumps(dict(source), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"source must be JSON-serialisable; {exc}") from None
        self.out = Path(out)
        self.d_in = d_in
        self.dtype_name = dtype_name(dtype)
        self.dtype = DTYPES[self.dtype_name]
        self.shard_rows = shard_rows
        self._shards: list[dict[str, Any]] = []
        self._committed = 0
        self._traced: bool | None = None
        self._buffer: list[dict[str, Tensor]] = []
        self._buffered = 0
        self._closed = False
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out must be a folder; got the existing file {str(self.out)!r}")
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and (self.out / self._manifest_name).is_file():
            self._resume()
        else:
            self._start_fresh()

    # -- public state --
    @property
    def rows_committed(self) -> int:
        """Rows durably written in complete shards named by the manifest."""
        return self._committed

    @property
    def rows(self) -> int:
        """Rows written plus rows buffered for the next shard."""
        return self._committed + self._buffered

    @property
    def shards(self) -> int:
        """Number of shards written so far."""
        return len(self._shards)

    # -- setup --
    def _start_fresh(self) -> None:
        old = self.out / self._manifest_name
        if old.exists():
            logger.info("replacing the store in %s", self.out)
        # Empty manifest first: from here on the folder is a valid (empty) store.
        self._write_manifest()
        for path in self.out.iterdir():
            if self._owns(path.name) and path.name != self._manifest_name:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    def _owns(self, name: str) -> bool:
        """Whether `name` is this writer's to replace: any store member for a whole store,
        only its own shards, manifest and temporary files for one rank's part."""
        if self.part is None:
            return is_store_member(name)
        return (name.startswith(self._prefix) and bool(SHARD_RE.match(name))) or name.startswith(
            (f".{self._prefix}", f".{self._manifest_name}.tmp-")
        )

    def _resume(self) -> None:
        manifest = read_manifest(self.out, self._manifest_name)
        if self.part is None and "row_order" in manifest:
            raise ValueError(
                f"cannot resume {str(self.out)!r} with one process: it was harvested by "
                f"{len(manifest.get('parts', []))} ranks under torchrun; resume it there"
            )
        if manifest["d_in"] != self.d_in:
            raise ValueError(
                f"cannot resume {str(self.out)!r}: it holds d_in={manifest['d_in']}, "
                f"got d_in={self.d_in}"
            )
        if manifest["dtype"] != self.dtype_name:
            raise ValueError(
                f"cannot resume {str(self.out)!r}: it holds dtype {manifest['dtype']}, "
                f"got {self.dtype_name}"
            )
        if manifest["source"] != self._source:
            keys = sorted(
                k
                for k in set(manifest["source"]) | set(self._source)
                if manifest["source"].get(k) != self._source.get(k)
            )
            raise ValueError(
                f"cannot resume {str(self.out)!r}: its source differs in {', '.join(keys)} "
                f"(stored {[manifest['source'].get(k) for k in keys]}, "
                f"got {[self._source.get(k) for k in keys]})"
            )
        shards = validate_shards(self.out, manifest)
        named = {s.path.name for s in shards}
        # A shard renamed into place whose manifest update was lost, or a temp file of a
        # killed write: both are redone by the resumed producer.
        for path in self.out.iterdir():
            stray = SHARD_RE.match(path.name) and path.name not in named
            temp = path.name.startswith((".shard-", f".{MANIFEST}.tmp-"))
            if self.part is not None:
                stray = stray and path.name.startswith(self._prefix)
                temp = path.name.startswith((f".{self._prefix}", f".{self._manifest_name}.tmp-"))
            if stray or temp:
                logger.info("resume: removing incomplete %s", path.name)
                path.unlink()
        self._shards = [dict(s) for s in manifest["shards"]]
        self._committed = manifest["rows"]
        if shards:
            self._traced = "tokens" in shards[0].arrays
        logger.info("resuming %s at row %d (%d shards)", self.out, self._committed, len(shards))

    # -- writing --
    def append(
        self,
        activations: Float[Tensor, "rows d_in"] | np.ndarray,
        tokens: Int[Tensor, " rows"] | np.ndarray | None = None,
        doc: Int[Tensor, " rows"] | np.ndarray | None = None,
        pos: Int[Tensor, " rows"] | np.ndarray | None = None,
    ) -> None:
        """Add rows. Trace columns (`tokens`, `doc`, `pos`) are all given or all omitted,
        the same way for every call."""
        if self._closed:
            raise ValueError("cannot append to a closed StoreWriter")
        acts = torch.as_tensor(activations)
        if acts.ndim != 2 or acts.shape[1] != self.d_in:
            raise ValueError(
                f"activations must have shape [rows, {self.d_in}]; got {list(acts.shape)}"
            )
        if not acts.is_floating_point():
            raise TypeError(f"activations must be floating point; got {acts.dtype}")
        n = acts.shape[0]
        trace = {"tokens": tokens, "doc": doc, "pos": pos}
        given = [k for k, v in trace.items() if v is not None]
        if given and len(given) != 3:
            missing = [k for k in TRACE_COLUMNS if k not in given]
            raise ValueError(f"tokens, doc and pos go together; missing {', '.join(missing)}")
        traced = bool(given)
        if self._traced is None:
            self._traced = traced
        elif self._traced != traced:
            raise ValueError(
                "every append must give tokens/doc/pos if the store has them, and none if not; "
                f"this store {'has' if self._traced else 'has no'} trace columns"
            )
        if n == 0:
            return
        # Values beyond float16's range become inf; require_finite and find_nonfinite_rows
        # report them to the reader.
        chunk = {"activations": acts.detach().to(device="cpu", dtype=self.dtype)}
        if traced:
            for name in TRACE_COLUMNS:
                col = torch.as_tensor(trace[name])
                if col.shape != (n,):
                    raise ValueError(f"{name} must have shape [{n}]; got {list(col.shape)}")
                if col.is_floating_point() or col.is_complex():
                    raise TypeError(f"{name} must be integer; got {col.dtype}")
                chunk[name] = col.detach().to("cpu", TRACE_DTYPES[name])
        self._buffer.append(chunk)
        self._buffered += n
        while self._buffered >= self.shard_rows:
            self._write_shard(self.shard_rows)

    def _take(self, n: int) -> dict[str, Tensor]:
        """Remove the first `n` buffered rows and return them as one block per column."""
        parts: list[dict[str, Tensor]] = []
        need = n
        while need:
            head = self._buffer[0]
            rows = head["activations"].shape[0]
            if rows <= need:
                parts.append(self._buffer.pop(0))
                need -= rows
            else:
                parts.append({k: v[:need] for k, v in head.items()})
                self._buffer[0] = {k: v[need:] for k, v in head.items()}
                need = 0
        self._buffered -= n
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _write_shard(self, n: int) -> None:
        block = self._take(n)
        name = f"{self._prefix}shard-{len(self._shards):05d}.safetensors"
        atomic_save_safetensors(self.out / name, block, metadata={"format": STORE_FORMAT})
        self._shards.append({"file": name, "rows": n})
        self._committed += n
        self._write_manifest()
        logger.debug("wrote %s (%d rows, %d total)", name, n, self._committed)

    def _write_manifest(self) -> None:
        atomic_write_json(
            self.out / self._manifest_name,
            {
                "format": STORE_FORMAT,
                "d_in": self.d_in,
                "dtype": self.dtype_name,
                "rows": self._committed,
                "shards": self._shards,
                "source": self._source,
            },
        )

    def copy_tokenizer(self, tokenizer: Any) -> None:
        """Save a Hugging Face tokenizer (anything with `save_pretrained`) as `tokenizer/`."""
        if not hasattr(tokenizer, "save_pretrained"):
            raise TypeError(
                f"tokenizer must have save_pretrained(); got {type(tokenizer).__name__}"
            )
        tmp = Path(tempfile.mkdtemp(prefix=".tokenizer.tmp-", dir=self.out))
        try:
            tokenizer.save_pretrained(str(tmp))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        replace_folder(tmp, self.out / TOKENIZER)

    def close(self) -> None:
        """Write the buffered rows as a last (possibly short) shard."""
        if self._closed:
            return
        if self._buffered:
            self._write_shard(self._buffered)
        self._closed = True

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            # Keep only complete shards: the resumed run rewrites the rest identically.
            self._buffer.clear()
            self._buffered = 0
            self._closed = True


ROW_ORDER_BY_RANK = "by rank"
"""`row_order` of a store harvested under torchrun: rank 0's rows, then rank 1's, ..., each
rank's in the order of its batches (rank r ran batches r, r + N, r + 2N, ... of the stream)."""


def list_parts(out: str | os.PathLike[str]) -> list[Path]:
    """The per-rank manifests (`rank-*.manifest.json`) in a store folder, by rank."""
    folder = Path(out)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PART_RE.match(p.name))


def join_parts(out: str | os.PathLike[str], world_size: int) -> dict[str, Any]:
    """Write the one `manifest.json` of a store that `world_size` ranks wrote in parts.

    Every rank's part manifest must be there and agree (d_in, dtype, source, world size);
    the manifest lists rank 0's shards, then rank 1's, ..., states `row_order` and the rows
    of each part, and is written atomically, so the folder becomes a store in one step.
    Returns the manifest.
    """
    check_int("world_size", world_size, least=1)
    folder = Path(out)
    parts = [read_manifest(folder, part_manifest(r)) for r in range(world_size)]
    extra = [
        p.name for p in list_parts(folder) if p.name not in map(part_manifest, range(world_size))
    ]
    if extra:
        raise ValueError(
            f"{str(folder)!r} holds parts of another world size ({', '.join(extra)}); "
            f"expected exactly {world_size}"
        )
    first = parts[0]
    source = {k: v for k, v in first["source"].items() if k != "part"}
    shards: list[dict[str, Any]] = []
    for rank, part in enumerate(parts):
        want = {"rank": rank, "world_size": world_size}
        if part["source"].get("part") != want:
            raise ValueError(
                f"{part_manifest(rank)} in {str(folder)!r} is part {part['source'].get('part')}, "
                f"expected {want}"
            )
        for key in ("d_in", "dtype"):
            if part[key] != first[key]:
                raise ValueError(
                    f"ranks disagree on {key} in {str(folder)!r}: rank 0 has {first[key]!r}, "
                    f"rank {rank} has {part[key]!r}"
                )
        if {k: v for k, v in part["source"].items() if k != "part"} != source:
            raise ValueError(f"ranks 0 and {rank} disagree on the source in {str(folder)!r}")
        validate_shards(folder, part)
        shards.extend(part["shards"])
    manifest = {
        "format": STORE_FORMAT,
        "d_in": first["d_in"],
        "dtype": first["dtype"],
        "rows": sum(p["rows"] for p in parts),
        "shards": shards,
        "source": source,
        "row_order": ROW_ORDER_BY_RANK,
        "parts": [
            {"rank": r, "rows": p["rows"], "shards": len(p["shards"])} for r, p in enumerate(parts)
        ],
    }
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


# ---- reading ----------------------------------------------------------------------------------


class TraceRows(NamedTuple):
    """Where rows came from: token id, document index and position in the document."""

    tokens: Int[Tensor, " rows"]
    doc: Int[Tensor, " rows"]
    pos: Int[Tensor, " rows"]


class NonfiniteRows(NamedTuple):
    """Rows holding NaN or Inf."""

    n_rows: int
    """How many rows hold at least one NaN or Inf."""
    rows: tuple[int, ...]
    """The first of them (row indices in store order), at most `max_rows`."""


class _Source(NamedTuple):
    start: int  # first row, in store order
    rows: int
    shard: ShardInfo | None  # a shard of a store folder, mapped on demand
    arrays: dict[str, np.ndarray] | None  # a single file's arrays, mapped at open


class ActivationStore:
    """Read-only view of a store folder, or of one `.npy` / `.safetensors` 2-D float file.

    Splits: `heldout` is the last `heldout_fraction` of rows in store order and `train` the
    rows before it; when rows carry `doc`, the boundary moves forward to the next document
    start so no document straddles both splits. Rows are stored in document order, so
    held-out rows come from documents the training split never saw.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    ) -> None:
        if not isinstance(heldout_fraction, int | float) or not 0.0 <= heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1); got {heldout_fraction!r}")
        self.path = Path(path)
        self.heldout_fraction = float(heldout_fraction)
        self._maps: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        if not self.path.exists():
            raise FileNotFoundError(f"activations not found: {str(self.path)!r}")
        if self.path.is_dir():
            self._open_folder()
        elif self.path.suffix == ".npy":
            self._open_npy()
        elif self.path.suffix == ".safetensors":
            self._open_single_safetensors()
        else:
            raise ValueError(
                f"activations must be a store folder, a .npy or a .safetensors file; "
                f"got {str(self.path)!r}"
            )
        self._starts = np.array([s.start for s in self._sources], dtype=np.int64)
        self._boundary = self._heldout_boundary()

    # -- opening --
    def _open_folder(self) -> None:
        manifest = read_manifest(self.path)
        shards = validate_shards(self.path, manifest)
        self.manifest: dict[str, Any] = manifest
        self.d_in: int = manifest["d_in"]
        self.dtype_name: str = manifest["dtype"]
        self.rows: int = manifest["rows"]
        self._sources: list[_Source] = []
        start = 0
        for shard in shards:
            self._sources.append(_Source(start, shard.rows, shard, None))
            start += shard.rows
        self.traced: bool = bool(shards) and "tokens" in shards[0].arrays

    def _open_npy(self) -> None:
        with self.path.open("rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise ValueError(f"{str(self.path)!r} is not a valid .npy file (bad magic bytes)")
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise ValueError(
                f"{str(self.path)!r} cannot be read without unpickling (object arrays are "
                f"refused): {str(exc).splitlines()[0]}"
            ) from None
        except (OSError, EOFError) as exc:
            raise ValueError(f"{str(self.path)!r} is not a valid .npy file: {exc}") from None
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{str(self.path)!r} must hold one array")
        self._single(arr, arr.dtype, {})

    def _open_single_safetensors(self) -> None:
        arrays, expected = read_header(self.path)
        size = self.path.stat().st_size
        if size < expected:
            raise ValueError(
                f"{str(self.path)!r} is truncated: {size} bytes, its header needs {expected}"
            )
        if "activations" not in arrays:
            raise ValueError(
                f"{str(self.path)!r} has no 'activations' array (it holds {sorted(arrays)})"
            )
        acts = arrays["activations"]
        if acts.code not in ST_NAME:
            raise ValueError(
                f"{str(self.path)!r}: activations must be a float array; got {acts.code}"
            )
        if len(acts.shape) != 2:
            raise ValueError(
                f"{str(self.path)!r}: activations must be 2-D [rows, d_in]; "
                f"got shape {list(acts.shape)}"
            )
        trace = {}
        if all(c in arrays for c in TRACE_COLUMNS) and all(
            arrays[c].shape == (acts.shape[0],) for c in TRACE_COLUMNS
        ):
            trace = {c: memmap_array(self.path, arrays[c]) for c in TRACE_COLUMNS}
        self._single(memmap_array(self.path, acts), ST_NAME[acts.code], trace)

    def _single(self, arr: np.ndarray, dtype: Any, trace: dict[str, np.ndarray]) -> None:
        name = str(dtype)
        if arr.ndim != 2:
            raise ValueError(
                f"{str(self.path)!r} must hold a 2-D [rows, d_in] array; "
                f"got shape {list(arr.shape)}"
            )
        if name not in ("float64", "float32", "float16", "bfloat16"):
            raise ValueError(f"{str(self.path)!r} must hold a float array; got dtype {name}")
        if arr.shape[1] < 1:
            raise ValueError(f"{str(self.path)!r} has d_in 0")
        self.d_in = int(arr.shape[1])
        self.rows = int(arr.shape[0])
        self.dtype_name = name
        self.manifest = {
            "format": STORE_FORMAT,
            "d_in": self.d_in,
            "dtype": name,
            "rows": self.rows,
            "shards": [{"file": self.path.name, "rows": self.rows}],
            "source": {"file": str(self.path)},
        }
        self._sources = [_Source(0, self.rows, None, {"activations": arr, **trace})]
        self.traced = bool(trace)

    # -- description --
    @property
    def dtype(self) -> torch.dtype:
        """Stored dtype (torch.float64 only for a single float64 .npy file)."""
        return DTYPES.get(self.dtype_name, torch.float64)

    @property
    def source(self) -> dict[str, Any]:
        """Where the activations came from (`model`, `site`, `corpus`, ... or synth config)."""
        return dict(self.manifest.get("source", {}))

    @property
    def n_shards(self) -> int:
        return len(self._sources)

    @property
    def tokenizer_path(self) -> Path | None:
        """The saved tokenizer folder, when the store has one."""
        path = self.path / TOKENIZER
        return path if self.path.is_dir() and path.is_dir() else None

    def truth(self) -> dict[str, Tensor] | None:
        """The planted truth of a synthetic store (`features [n_features, d_in]`, ...)."""
        path = self.path / TRUTH
        if not (self.path.is_dir() and path.is_file()):
            return None
        from safetensors.torch import load_file

        return load_file(str(path))

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        return (
            f"ActivationStore({str(self.path)!r}, rows={self.rows}, d_in={self.d_in}, "
            f"dtype={self.dtype_name}, shards={self.n_shards}, "
            f"heldout={self.split_rows('heldout')})"
        )

    # -- splits --
    def _heldout_boundary(self) -> int:
        if self.heldout_fraction == 0.0 or self.rows < 2:
            return self.rows
        held = max(1, int(self.rows * self.heldout_fraction))
        b = self.rows - held
        if not self.traced:
            return b
        # First document start at or after b, else the last one before it. Only a window of
        # the doc column around b is read, widened until a document boundary shows up.
        width = 1024
        while True:
            lo, hi = max(0, b - width), min(self.rows, b + width)
            doc = self._read_column("doc", lo, hi)
            starts = lo + np.flatnonzero(doc[1:] != doc[:-1]) + 1  # rows whose doc is new
            after, before = starts[starts >= b], starts[starts < b]
            if after.size:
                return int(after[0])
            if hi == self.rows and before.size:
                return int(before[-1])
            if lo == 0 and hi == self.rows:
                logger.warning("%s holds one document; held-out rows share it", self.path)
                return b
            width *= 4

    def split_range(self, split: Split | str) -> tuple[int, int]:
        """`(start, stop)` of `split` (`train`, `heldout` or `all`) in store row order."""
        if split == "train":
            return 0, self._boundary
        if split == "heldout":
            return self._boundary, self.rows
        if split == "all":
            return 0, self.rows
        raise ParameterError("split", f"one of {', '.join(SPLITS)}", split)

    def split_rows(self, split: Split | str) -> int:
        """Number of rows in `split` (`train`, `heldout` or `all`)."""
        lo, hi = self.split_range(split)
        return hi - lo

    # -- raw reads --
    def _arrays(self, i: int) -> dict[str, np.ndarray]:
        """The memory-mapped columns of source `i`. At most MAX_OPEN_SHARDS shards stay
        mapped (least recently used ones are let go), so a store of thousands of shards never
        runs out of file descriptors."""
        src = self._sources[i]
        if src.arrays is not None:
            return src.arrays
        maps = self._maps
        if i in maps:
            maps.move_to_end(i)
            return maps[i]
        assert src.shard is not None
        wanted = {
            k: a for k, a in src.shard.arrays.items() if k == "activations" or k in TRACE_COLUMNS
        }
        maps[i] = map_shard(src.shard.path, wanted)
        while len(maps) > MAX_OPEN_SHARDS:
            maps.popitem(last=False)
        return maps[i]

    def _read_column(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of one column as a fresh numpy array (bfloat16 as uint16)."""
        parts = []
        i = max(0, int(np.searchsorted(self._starts, start, side="right")) - 1)
        while start < stop and i < len(self._sources):
            src = self._sources[i]
            lo, hi = start - src.start, min(stop, src.start + src.rows) - src.start
            if hi > lo:
                parts.append(self._arrays(i)[name][lo:hi])
                start = src.start + hi
            i += 1
        if not parts:
            ref = self._arrays(0)[name] if self._sources else np.zeros((0, self.d_in))
            return np.empty((0, *ref.shape[1:]), dtype=ref.dtype)
        return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])

    def _to_tensor(
        self, arr: np.ndarray, dtype: torch.dtype | None, device: str | torch.device
    ) -> Tensor:
        return to_tensor(arr, self.dtype_name, dtype, device)

    def _check_range(self, start: int, stop: int, split: str) -> tuple[int, int]:
        lo, hi = self.split_range(split)
        n = hi - lo
        for name, v in (("start", start), ("stop", stop)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise TypeError(f"{name} must be an int; got {type(v).__name__}")
        if not 0 <= start <= stop <= n:
            raise ValueError(
                f"rows [{start}, {stop}) are out of range for split {split!r} with {n} rows"
            )
        return lo + int(start), lo + int(stop)

    def read(
        self,
        start: int,
        stop: int,
        *,
        split: Split | str = "all",
        dtype: torch.dtype | None = torch.float32,
        device: str | torch.device = "cpu",
    ) -> Float[Tensor, "rows d_in"]:
        """Rows [start, stop) of `split`, in order (indices relative to the split's start).

        `dtype=None` keeps the stored dtype.
        """
        a, b = self._check_range(start, stop, split)
        return self._to_tensor(self._read_column("activations", a, b), dtype, device)

    def read_trace(self, start: int, stop: int, *, split: Split | str = "all") -> TraceRows:
        """`tokens`, `doc`, `pos` of rows [start, stop) of `split` (traced stores only)."""
        if not self.traced:
            raise ValueError(f"{str(self.path)!r} has no tokens/doc/pos (not harvested from text)")
        a, b = self._check_range(start, stop, split)
        cols = [torch.from_numpy(self._read_column(c, a, b)) for c in TRACE_COLUMNS]
        return TraceRows(*cols)

    @property
    def tokens(self) -> Int[Tensor, " rows"] | None:
        """Token id of every row (int32), or None when the store is not traced."""
        return self._whole_column("tokens")

    @property
    def doc(self) -> Int[Tensor, " rows"] | None:
        """Document index of every row (int64), or None when the store is not traced."""
        return self._whole_column("doc")

    @property
    def pos(self) -> Int[Tensor, " rows"] | None:
        """Position of every row within its document (int32), or None when not traced."""
        return self._whole_column("pos")

    def _whole_column(self, name: str) -> Tensor | None:
        # One column only: read_trace would read all three and drop two.
        return torch.from_numpy(self._read_column(name, 0, self.rows)) if self.traced else None

    # -- batch stream --
    def batches(
        self,
        batch_size: int,
        *,
        split: Split | str = "train",
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        dtype: torch.dtype | None = torch.float32,
        device: str | torch.device = "cpu",
        shuffle_window: int | None = None,
    ) -> Iterator[Float[Tensor, "batch d_in"]]:
        """A stream of `[batch_size, d_in]` batches over `split`, one pass.

        Rank `rank` of `world_size` reads its own contiguous `1/world_size` of the split's rows
        (whole shards when shards divide evenly). Every rank yields exactly the same number of
        batches, the number the smallest rank range can fill, so a distributed job never waits
        on a rank that ran out; the few rows this costs (at most one per rank, plus the
        remainder that cannot fill a batch) are skipped.

        With `shuffle`, the rank's rows are cut into chunks of `shuffle_window // 16` rows read
        in a seeded random order; sixteen chunks at a time (`shuffle_window` rows, the only
        memory held) are mixed and served in a seeded random row order. Same seed, same
        batches. Without `shuffle`, batches come in store order.
        """
        for name, v, least in (
            ("batch_size", batch_size, 1),
            ("world_size", world_size, 1),
            ("shuffle_window", 1 if shuffle_window is None else shuffle_window, 1),
            ("seed", seed, 0),
            ("rank", rank, 0),
        ):
            check_int(name, v, least=least)
        if shuffle_window is None:
            # About SHUFFLE_BYTES of stored rows, and never fewer than four batches.
            row_bytes = self.d_in * (8 if self.dtype_name == "float64" else self.dtype.itemsize)
            shuffle_window = max(4 * batch_size, SHUFFLE_BYTES // row_bytes)
        if rank >= world_size:
            raise ValueError(f"rank must be in [0, {world_size}); got {rank}")
        lo, hi = self.split_range(split)
        n = hi - lo
        start, stop = lo + n * rank // world_size, lo + n * (rank + 1) // world_size
        smallest = n // world_size
        n_batches = smallest // batch_size if drop_last else -(-smallest // batch_size)
        if n_batches == 0:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {smallest} rows of split {split!r}"
                + (f" per rank ({world_size} ranks)" if world_size > 1 else "")
                + f" in {str(self.path)!r}"
            )
        if shuffle:
            rows_iter = self._shuffled(start, stop, batch_size, seed, shuffle_window)
        else:
            rows_iter = (
                self._read_column("activations", a, min(a + batch_size, stop))
                for a in range(start, stop, batch_size)
            )
        return self._limit(rows_iter, n_batches, dtype, device)

    def _limit(
        self,
        it: Iterator[np.ndarray],
        n_batches: int,
        dtype: torch.dtype | None,
        device: str | torch.device,
    ) -> Iterator[Tensor]:
        for _, arr in zip(range(n_batches), it, strict=False):
            yield self._to_tensor(arr, dtype, device)

    def _shuffled(
        self, start: int, stop: int, batch_size: int, seed: int, window: int
    ) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([seed, 0x5EED])
        piece = max(1, window // SHUFFLE_PIECES)
        starts = np.arange(start, stop, piece)
        rng.shuffle(starts)
        carry: np.ndarray | None = None
        for g in range(0, len(starts), SHUFFLE_PIECES):
            parts = [] if carry is None else [carry]
            parts += [
                self._read_column("activations", int(a), min(int(a) + piece, stop))
                for a in starts[g : g + SHUFFLE_PIECES]
            ]
            buf = np.concatenate(parts)  # (window + carry, d_in), in the stored dtype
            order = rng.permutation(len(buf))
            full = len(buf) // batch_size * batch_size
            for b in range(0, full, batch_size):
                yield buf[order[b : b + batch_size]]
            carry = buf[order[full:]] if full < len(buf) else None
        if carry is not None and len(carry):
            yield carry

    # -- checks --
    def iter_chunks(
        self, chunk_rows: int = SCAN_ROWS, *, split: Split | str = "all"
    ) -> Iterator[tuple[int, np.ndarray]]:
        """`(first_row, rows)` numpy blocks of `split` in order (bfloat16 as uint16); for
        scans that must not load the whole store."""
        lo, hi = self.split_range(split)
        for a in range(lo, hi, chunk_rows):
            yield a, self._read_column("activations", a, min(a + chunk_rows, hi))


# ---- NaN / Inf --------------------------------------------------------------------------------


def _nonfinite_mask(block: np.ndarray, bfloat16: bool) -> np.ndarray:
    """Per-row True where the row holds NaN or Inf."""
    if bfloat16:
        # bfloat16 bits: exponent all ones (0x7F80) means Inf or NaN.
        return ((block & 0x7F80) == 0x7F80).any(axis=1)
    return ~np.isfinite(block).all(axis=1)


def find_nonfinite_rows(
    data: ActivationStore | Tensor | np.ndarray,
    *,
    max_rows: int = 20,
    chunk_rows: int = SCAN_ROWS,
) -> NonfiniteRows:
    """Find rows holding NaN or Inf in a store or a 2-D array, scanning in chunks."""
    check_int("max_rows", max_rows, least=0)
    count, rows = 0, list[int]()
    if isinstance(data, ActivationStore):
        blocks: Iterator[tuple[int, np.ndarray]] = data.iter_chunks(chunk_rows)
        bf16 = data.dtype_name == "bfloat16"
    elif isinstance(data, Tensor | np.ndarray):
        if data.ndim != 2:
            raise ValueError(f"data must be 2-D [rows, d_in]; got shape {list(data.shape)}")
        if isinstance(data, Tensor):
            data = data.detach().to("cpu")
            bf16 = data.dtype == torch.bfloat16
            data = data.view(torch.int16).numpy().view(np.uint16) if bf16 else data.numpy()
        else:
            bf16 = False
        arr = data
        blocks = ((a, arr[a : a + chunk_rows]) for a in range(0, len(arr), chunk_rows))
    else:
        raise TypeError(
            f"data must be an ActivationStore, a Tensor or an ndarray; got {type(data).__name__}"
        )
    for first, block in blocks:
        bad = np.flatnonzero(_nonfinite_mask(block, bf16))
        count += int(bad.size)
        if len(rows) < max_rows:
            rows.extend(int(first + i) for i in bad[: max_rows - len(rows)])
    return NonfiniteRows(count, tuple(rows))


def require_finite(
    data: ActivationStore | Tensor | np.ndarray, *, what: str = "activations"
) -> None:
    """Raise ValueError naming the first bad rows when `data` holds NaN or Inf."""
    found = find_nonfinite_rows(data, max_rows=5)
    if found.n_rows:
        shown = ", ".join(map(str, found.rows))
        more = ", ..." if found.n_rows > len(found.rows) else ""
        raise ValueError(
            f"{what} hold NaN or Inf in {found.n_rows} row{'s' if found.n_rows > 1 else ''} "
            f"(row {shown}{more}); clean the data before training"
        )
