"""Our SAE checkpoint format (DESIGN.md section 4): a folder, written atomically.

    <out>/config.json        {"format": "polysemy.sae/1", "arch", "d_in", "d_sae", "k",
                              "input_scale", "source": {...}, "training": {...}, "sae": {...}}
    <out>/sae.safetensors    W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec
                             (+ threshold [d_sae] for jumprelu and batchtopk)
    <out>/state/             resumable training state (safe to delete)

Transcoders (arch `transcoder`, `skip-transcoder`; docs/transcoders.md) add keys, leaving the
format string at `polysemy.sae/1`: `d_out` in config.json, `source.site_in` and
`source.site_out` (the sites read and predicted), `W_dec [d_sae, d_out]`, `b_dec [d_out]`
and, for skip-transcoder, `W_skip [d_in, d_out]`. A reader that does not know the arch
refuses it by name.

Weights are in the original units of the activations. Loading never unpickles: a file that
is not safetensors (a pickle, a `torch.save` zip) is refused, as are truncated files and
tensors whose shapes disagree with the config; unknown config keys are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polysemy import runfolder
from polysemy.sae.base import SparseAutoencoder
from polysemy.sae.config import SAEConfig
from polysemy.sae.registry import build_sae

FORMAT = runfolder.SAE.format
WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "config.json"


def read_safetensors(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> dict[str, Tensor]:
    """Tensors of a `.safetensors` file, refusing anything else (never unpickles).

    Raises FileNotFoundError for a missing file and ValueError for a pickle / zip, a bad
    header or a truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such safetensors file: {str(path)!r}")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(9)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise ValueError(
            f"{str(path)!r} is a pickle / torch.save file, not safetensors; refusing to unpickle it"
        )
    if len(head) < 9:
        raise ValueError(f"{str(path)!r} is not a safetensors file (only {size} bytes)")
    (header_len,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or header_len > size - 8:
        raise ValueError(f"{str(path)!r} is not a valid safetensors file (bad header)")
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # SafetensorError has no stable import path
        raise ValueError(
            f"{str(path)!r} is a truncated or corrupt safetensors file: {exc}"
        ) from None


def checkpoint_config(
    sae: SparseAutoencoder, *, source: dict[str, Any], training: dict[str, Any], input_scale: float
) -> dict[str, Any]:
    """The `config.json` object of a checkpoint."""
    cfg = sae.config
    extra: dict[str, Any] = {}
    if cfg.is_transcoder:
        extra["d_out"] = cfg.d_out
    return {
        "format": FORMAT,
        "arch": cfg.arch,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        **extra,
        "k": cfg.k,
        "input_scale": float(input_scale),
        "source": dict(source),
        "training": dict(training),
        "sae": dataclasses.asdict(cfg),
    }


def write_checkpoint(
    folder: Path,
    sae: SparseAutoencoder,
    *,
    source: dict[str, Any],
    training: dict[str, Any],
    input_scale: float = 1.0,
) -> None:
    """Write `config.json` and `sae.safetensors` into an (already temporary) `folder`."""
    runfolder.atomic_save_safetensors(folder / WEIGHTS_FILE, sae.inference_tensors())
    runfolder.atomic_write_json(
        folder / CONFIG_FILE,
        checkpoint_config(sae, source=source, training=training, input_scale=input_scale),
    )


def save_sae(
    sae: SparseAutoencoder,
    out: str | os.PathLike[str],
    *,
    source: dict[str, Any],
    training: dict[str, Any],
    input_scale: float | None = None,
    state: str | os.PathLike[str] | None = None,
) -> Path:
    """Save `sae` (weights already in original units) as a checkpoint folder, atomically.

    `input_scale` is recorded for information (default: `training["input_scale"]` or 1);
    `state` is a resumable-state folder copied to `<out>/state/`. Returns `out` as a Path.
    """
    out = Path(out)
    if input_scale is None:
        input_scale = float(training.get("input_scale", 1.0))
    with runfolder.atomic_folder(out) as tmp:
        write_checkpoint(tmp, sae, source=source, training=training, input_scale=input_scale)
        if state is not None and Path(state).is_dir():
            shutil.copytree(state, tmp / "state")
    return out


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`config.json` of a checkpoint folder, checked for its format string."""
    folder = Path(path)
    if folder.is_file() and folder.name == CONFIG_FILE:
        folder = folder.parent
    if not folder.exists():
        raise FileNotFoundError(f"no such SAE checkpoint: {str(folder)!r}")
    if not folder.is_dir():
        raise ValueError(f"an SAE checkpoint is a folder; got the file {str(folder)!r}")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no {CONFIG_FILE}; is it an SAE checkpoint?")
    try:
        cfg = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(config_path)!r} is not valid JSON: {exc}") from None
    fmt = cfg.get("format") if isinstance(cfg, dict) else None
    if not isinstance(fmt, str) or fmt.split("/", 1)[0] != runfolder.SAE.family:
        raise ValueError(f"{str(config_path)!r} must have format {FORMAT!r}; got {fmt!r}")
    if fmt != FORMAT:
        raise ValueError(
            f"unsupported SAE checkpoint format {fmt!r} (this version reads {FORMAT!r})"
        )
    return cfg


def sae_config_from_dict(cfg: dict[str, Any]) -> SAEConfig:
    """Rebuild the `SAEConfig` of a checkpoint's `config.json`, ignoring unknown keys."""
    fields = {f.name for f in dataclasses.fields(SAEConfig)}
    extra = cfg.get("sae")
    if not isinstance(extra, dict):
        extra = {}
    kwargs = {key: value for key, value in extra.items() if key in fields}
    for key in ("arch", "d_in", "d_sae", "d_out", "k"):
        if key in cfg:
            kwargs[key] = cfg[key]
    if "arch" not in kwargs:
        raise ValueError("SAE config.json lacks 'arch'")
    return SAEConfig(**kwargs)


def load_sae(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> SparseAutoencoder:
    """Load a checkpoint folder as an inference-ready `SparseAutoencoder` (eval mode).

    The returned module carries the raw `config.json` as `.metadata`.
    """
    cfg = read_config(path)
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    config = sae_config_from_dict(cfg)
    tensors = read_safetensors(folder / WEIGHTS_FILE)
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise ValueError(
                f"tensor {name!r} in {WEIGHTS_FILE} must be floating point; got {t.dtype}"
            )
    dtype = tensors["W_enc"].dtype if "W_enc" in tensors else torch.float32
    sae = build_sae(config, device=device, dtype=dtype)
    sae.load_inference_tensors_(tensors)
    sae.metadata = cfg
    return sae.eval()
