"""The on-disk pieces of an activation store: manifest, shards, and their validation.

A shard is a plain `.safetensors` file: an 8-byte little-endian header length, a JSON header
giving each array's dtype, shape and byte range, then the raw little-endian data. Parsing the
header here (instead of loading the file) lets `ActivationStore` check a shard's size against
what its header promises, and memory-map each array with numpy at its data offset, so reads
touch only the rows they ask for. `store.py` builds the writer and the reader on top.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import torch
from torch import Tensor

from polysemy.runfolder import ACTIVATIONS

STORE_FORMAT = ACTIVATIONS.format
"""The manifest's format string, `polysemy.activations/1`."""
MANIFEST = "manifest.json"
"""The store's marker file (see DESIGN.md section 4)."""
TRUTH = "truth.safetensors"
"""Planted truth of a synthetic store."""
TOKENIZER = "tokenizer"
"""Folder of the saved tokenizer of a harvested store."""
TRACE_COLUMNS: tuple[str, ...] = ("tokens", "doc", "pos")
"""Per-row columns that trace a harvested row back to its text."""

# Store dtypes (the manifest's names) and their torch types.
StoreDtype = Literal["float32", "float16", "bfloat16"]
"""The dtypes a store may hold."""
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
assert tuple(DTYPES) == get_args(StoreDtype)
TRACE_DTYPES: dict[str, torch.dtype] = {
    "tokens": torch.int32,
    "doc": torch.int64,
    "pos": torch.int32,
}
# safetensors dtype codes -> numpy dtypes used to memory-map them (little-endian).
# bfloat16 has no numpy type: it is mapped as uint16 and viewed as bfloat16 in torch.
ST_NUMPY: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
}
ST_NAME = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
SHARD_RE = re.compile(r"^(?:rank-\d{5,}-)?shard-\d{5,}\.safetensors$")
"""Shard file names: `shard-00000.safetensors`, or `rank-00001-shard-00000.safetensors` for
the shards rank 1 wrote in a harvest under torchrun (see `part_prefix`)."""
PART_RE = re.compile(r"^rank-\d{5,}\.manifest\.json$")
"""Per-rank progress manifests of a harvest under torchrun (see `part_manifest`)."""


def part_prefix(rank: int) -> str:
    """What rank `rank` puts before the names of the shards it writes."""
    return f"rank-{rank:05d}-"


def part_manifest(rank: int) -> str:
    """The file where rank `rank` records its own shards (what `resume` reads back)."""
    return f"rank-{rank:05d}.manifest.json"


def dtype_name(dtype: str | torch.dtype) -> str:
    """The manifest name (`float32`, `float16`, `bfloat16`) of a store dtype."""
    if isinstance(dtype, torch.dtype):
        for name, value in DTYPES.items():
            if value == dtype:
                return name
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}; got {dtype}")
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    raise ValueError(f"dtype must be one of {sorted(DTYPES)}; got {dtype!r}")


def is_store_member(name: str) -> bool:
    """Whether a file name in a store folder belongs to the store (or to a killed write)."""
    return (
        name in (MANIFEST, TRUTH, TOKENIZER)
        or bool(SHARD_RE.match(name) or PART_RE.match(name))
        or name.startswith(
            (".shard-", ".rank-", f".{MANIFEST}.tmp-", ".tokenizer.tmp-", f".{TRUTH}.tmp-")
        )
    )


class Array(NamedTuple):
    """One array of a safetensors file, located by its header."""

    code: str  # safetensors dtype code, e.g. "F16"
    shape: tuple[int, ...]
    offset: int  # absolute byte offset in the file


class ShardInfo(NamedTuple):
    """A shard named by the manifest, checked against its header."""

    path: Path
    rows: int
    arrays: dict[str, Array]


def read_header(path: Path) -> tuple[dict[str, Array], int]:
    """Parse a safetensors header; return its arrays and the file size it implies.

    Raises ValueError (one line) for a file too short or not safetensors at all.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{str(path)!r} is truncated or not a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise ValueError(
                f"{str(path)!r} is truncated or not a safetensors file "
                f"(header of {n} bytes in a file of {size})"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"{str(path)!r} is not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{str(path)!r} is not a safetensors file (bad header)")
    arrays: dict[str, Array] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            code, shape, (begin, stop) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{str(path)!r} is not a safetensors file (bad header)") from None
        arrays[name] = Array(code, shape, 8 + n + int(begin))
        end = max(end, int(stop))
    return arrays, 8 + n + end


def read_manifest(folder: Path, name: str = MANIFEST) -> dict[str, Any]:
    """Read and type-check `folder/manifest.json` (or the part manifest `name`); one-line
    errors."""
    path = folder / name
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(folder)!r} is not an activation store: no {name}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object")
    fmt = manifest.get("format")
    if fmt != STORE_FORMAT:
        if isinstance(fmt, str) and fmt.startswith("polysemy.activations/"):
            raise ValueError(
                f"{str(path)!r} has format {fmt!r}, which this version of polysemy cannot read "
                f"(it reads {STORE_FORMAT!r}); upgrade polysemy"
            )
        raise ValueError(f"{str(path)!r} has unknown format {fmt!r}; expected {STORE_FORMAT!r}")
    d_in, rows, dtype, shards = (manifest.get(k) for k in ("d_in", "rows", "dtype", "shards"))
    if isinstance(d_in, bool) or not isinstance(d_in, int) or d_in < 1:
        raise ValueError(f"{str(path)!r}: d_in must be an int >= 1; got {d_in!r}")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"{str(path)!r}: rows must be an int >= 0; got {rows!r}")
    if dtype not in DTYPES:
        raise ValueError(f"{str(path)!r}: dtype must be one of {sorted(DTYPES)}; got {dtype!r}")
    if not isinstance(shards, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("file"), str)
        and isinstance(s.get("rows"), int)
        and not isinstance(s.get("rows"), bool)
        for s in shards
    ):
        raise ValueError(f"{str(path)!r}: shards must be a list of {{'file': str, 'rows': int}}")
    if not isinstance(manifest.get("source", {}), dict):
        raise ValueError(f"{str(path)!r}: source must be a JSON object")
    manifest.setdefault("source", {})
    return manifest


def validate_shards(folder: Path, manifest: dict[str, Any]) -> list[ShardInfo]:
    """Check every shard the manifest names: present, whole, right shape and dtype."""
    want_code = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}[manifest["dtype"]]
    d_in = manifest["d_in"]
    out: list[ShardInfo] = []
    total = 0
    columns: set[str] | None = None
    for entry in manifest["shards"]:
        name, rows = entry["file"], entry["rows"]
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"manifest of {str(folder)!r} names a shard outside it: {name!r}")
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"store {str(folder)!r} is missing shard {name!r}")
        arrays, expected = read_header(path)
        size = path.stat().st_size
        if size < expected:
            raise ValueError(
                f"shard {str(path)!r} is truncated: {size} bytes, its header needs {expected}"
            )
        acts = arrays.get("activations")
        if acts is None:
            raise ValueError(f"shard {str(path)!r} has no 'activations' array")
        if acts.code != want_code or acts.shape != (rows, d_in):
            raise ValueError(
                f"shard {str(path)!r} holds activations {ST_NAME.get(acts.code, acts.code)} "
                f"{list(acts.shape)}; the manifest says {manifest['dtype']} [{rows}, {d_in}]"
            )
        traced = {c for c in TRACE_COLUMNS if c in arrays}
        for col in traced:
            if arrays[col].shape != (rows,):
                raise ValueError(
                    f"shard {str(path)!r}: {col} has shape {list(arrays[col].shape)}, "
                    f"expected [{rows}]"
                )
        if columns is not None and traced != columns:
            raise ValueError(f"shard {str(path)!r} has trace columns unlike the other shards")
        columns = traced
        total += rows
        out.append(ShardInfo(path, rows, arrays))
    if total != manifest["rows"]:
        raise ValueError(
            f"manifest of {str(folder)!r} says {manifest['rows']} rows but its shards hold {total}"
        )
    return out


def to_tensor(
    arr: np.ndarray, stored: str, dtype: torch.dtype | None, device: str | torch.device
) -> Tensor:
    """Stored rows (bfloat16 as uint16 bits) -> a tensor of `dtype` (None: the stored dtype).

    bfloat16 widens exactly by a 16-bit shift in numpy; float16 widens with torch, which
    read 1.5-3.3x faster than numpy's `astype` in `benchmarks/store_read.py` (RESULTS.md).
    """
    if dtype is None or (dtype == torch.bfloat16 and stored == "bfloat16"):
        t = torch.from_numpy(np.ascontiguousarray(arr))
        return (t.view(torch.bfloat16) if stored == "bfloat16" else t).to(device)
    if stored == "bfloat16":
        wide = np.left_shift(arr, 16, dtype=np.uint32).view(np.float32)
        return torch.from_numpy(wide).to(device=device, dtype=dtype)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=dtype)


def memmap_array(path: Path, arr: Array) -> np.ndarray:
    """Map one array of a safetensors file read-only (bfloat16 as uint16)."""
    return map_shard(path, {"x": arr})["x"]


def map_shard(path: Path, arrays: dict[str, Array]) -> dict[str, np.ndarray]:
    """Map `arrays` of one safetensors file read-only through a single mapping of the file
    (one file descriptor per shard, however many columns it has)."""
    for arr in arrays.values():
        if arr.code not in ST_NUMPY:
            raise ValueError(f"{str(path)!r}: unsupported safetensors dtype {arr.code}")
    whole = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else None
    out = {}
    for name, arr in arrays.items():
        dtype = ST_NUMPY[arr.code]
        if math.prod(arr.shape) == 0 or whole is None:
            out[name] = np.zeros(arr.shape, dtype=dtype)
        else:
            out[name] = np.ndarray(arr.shape, dtype=dtype, buffer=whole, offset=arr.offset)
    return out
