"""Resumable SAE training state: `<out>/state/` = `state.safetensors` (weights in training
units, optimizer state, per-latent counters) + `state.json` (step, data position, input
scale, configurations, history), both written atomically.

`load_state` refuses a state of another format, configuration or width, so a resume either
continues the same run (to bit-identical final weights) or fails before training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from polysemy import runfolder
from polysemy.sae.base import SparseAutoencoder
from polysemy.sae.config import SAEConfig, TrainConfig
from polysemy.sae.data import TrainData
from polysemy.sae.io import read_safetensors
from polysemy.sae.optim import load_optimizer_tensors, optimizer_tensors

logger = logging.getLogger(__name__)

STATE_FORMAT = "polysemy.sae-state/1"
STATE_DIR = "state"
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"


@dataclass
class Counters:
    """Per-latent bookkeeping, all tensors so it round-trips through safetensors."""

    tokens_since_fired: Tensor  # [d_sae] int64
    window_fires: Tensor  # [d_sae] int64: rows fired on in the current dense window
    window_rows: Tensor  # [] int64
    last_dense_fraction: Tensor  # [] float64

    @classmethod
    def zeros(cls, d_sae: int, device: torch.device) -> Counters:
        z = torch.zeros(d_sae, dtype=torch.long, device=device)
        return cls(
            z,
            z.clone(),
            torch.zeros((), dtype=torch.long, device=device),
            torch.zeros((), dtype=torch.float64, device=device),
        )

    def tensors(self) -> dict[str, Tensor]:
        return {f"counters.{f.name}": getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], device: torch.device) -> Counters:
        return cls(
            **{f.name: tensors[f"counters.{f.name}"].to(device) for f in dataclasses.fields(cls)}
        )


def config_dict(config: SAEConfig) -> dict[str, Any]:
    """`config` as the JSON object a state (and a checkpoint's "sae") records."""
    return dataclasses.asdict(config)


def train_dict(train: TrainConfig) -> dict[str, Any]:
    """`train` as a JSON object (betas as a list, as JSON reads it back)."""
    d = dataclasses.asdict(train)
    d["betas"] = list(train.betas)
    return d


RESUME_IGNORED = {"checkpoint_every", "log_every"}
"""Training options a resume may change: they do not affect the weights."""


def dtype_name(dtype: torch.dtype | None) -> str:
    """`torch.bfloat16` -> "bfloat16" (None: float32, the input's dtype)."""
    return str(dtype or torch.float32).removeprefix("torch.")


def state_json(
    data: TrainData,
    sae: SparseAutoencoder,
    train: TrainConfig,
    step: int,
    scale: float,
    variance: float,
    history: list[dict[str, float]],
) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "step": step,
        "epoch": data.epoch,
        "index": data.index,
        "input_scale": scale,
        "variance": variance,
        "world_size": data.info.world_size,
        "acts": data.name,
        "sae": config_dict(sae.config),
        "train": train_dict(train),
        # What `selection_dtype` resolved to, so a resume on another CPU keeps it.
        "selection_dtype_resolved": dtype_name(sae.selection_dtype),
        "history": history,
    }


def write_state_files(
    folder: Path,
    sae: SparseAutoencoder,
    opt: torch.optim.Optimizer,
    counters: Counters,
    data: TrainData,
    train: TrainConfig,
    step: int,
    scale: float,
    variance: float,
    history: list[dict[str, float]],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in sae.state_dict().items()}
    tensors.update(optimizer_tensors(opt, sae))
    tensors.update(counters.tensors())
    runfolder.atomic_save_safetensors(folder / STATE_TENSORS, tensors)
    runfolder.atomic_write_json(
        folder / STATE_JSON, state_json(data, sae, train, step, scale, variance, history)
    )


STATE_KEYS = ("step", "epoch", "index", "input_scale", "variance", "history")
"""Keys a resumable state.json must hold besides its format and configurations."""


class ResumePoint(NamedTuple):
    """Where a resumed run continues from."""

    step: int
    """Optimizer steps already taken."""
    input_scale: float
    """Factor the inputs are multiplied by."""
    variance: float
    """Total variance of the scaled sample (the FVU denominator)."""
    history: list[dict[str, float]]
    """Metrics logged so far."""


def load_state(
    state_dir: Path,
    sae: SparseAutoencoder,
    opt: torch.optim.Optimizer,
    counters: Counters,
    data: TrainData,
    config: SAEConfig,
    train: TrainConfig,
    device: torch.device,
) -> ResumePoint:
    """Restore `sae`, `opt`, `counters` and `data`'s position from `state_dir` in place;
    ValueError when the state is damaged or belongs to another configuration."""
    try:
        state = json.loads((state_dir / STATE_JSON).read_text())
    except ValueError as exc:
        raise ValueError(f"{str(state_dir / STATE_JSON)!r} is not valid JSON: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{str(state_dir)!r} must hold format {STATE_FORMAT!r}; got {got!r}")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"{str(state_dir / STATE_JSON)!r} lacks {'/'.join(missing)}")
    if state.get("sae") != config_dict(config):
        raise ValueError(
            f"cannot resume {str(state_dir)!r}: it was trained with SAE config {state.get('sae')}, "
            f"not {config_dict(config)}"
        )
    saved_train = {k: v for k, v in state.get("train", {}).items() if k not in RESUME_IGNORED}
    given_train = {k: v for k, v in train_dict(train).items() if k not in RESUME_IGNORED}
    if saved_train != given_train:
        diff = sorted(k for k in given_train if saved_train.get(k) != given_train[k])
        raise ValueError(
            f"cannot resume {str(state_dir)!r}: training options differ ({', '.join(diff)})"
        )
    if state.get("world_size", 1) != data.info.world_size:
        logger.warning(
            "resuming a %s-process run with %s processes: the data order changes",
            state.get("world_size"),
            data.info.world_size,
        )
    tensors = read_safetensors(state_dir / STATE_TENSORS, device=device)
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        sae.load_state_dict(model_state)
    except RuntimeError as exc:
        raise ValueError(
            f"state in {str(state_dir)!r} does not fit this SAE: {str(exc).splitlines()[0]}"
        ) from None
    load_optimizer_tensors(opt, sae, tensors)
    loaded = Counters.from_tensors(tensors, device)
    for f in dataclasses.fields(counters):
        getattr(counters, f.name).copy_(getattr(loaded, f.name))
    data.skip_to(int(state["epoch"]), int(state["index"]))
    resolved = state.get("selection_dtype_resolved")
    if resolved in ("float32", "bfloat16"):
        sae.selection_dtype = getattr(torch, resolved)
    logger.info("resuming from step %d", state["step"])
    return ResumePoint(
        int(state["step"]),
        float(state["input_scale"]),
        float(state["variance"]),
        list(state["history"]),
    )
