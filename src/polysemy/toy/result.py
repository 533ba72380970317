"""Save and load a trained toy sweep: `result.json` + `weights.safetensors` (DESIGN.md §4).

`result.json`:
    {"format": "polysemy.toy/1", "config": {...ToyConfig fields...},
     "seconds": float,
     "instances": [{"sparsity", "importance", "loss", "feature_norms", "feature_dimensionality",
                    "dimensions_per_feature", "represented", "superposition", "bias",
                    "seed_losses", "chosen_seed",
                    "neuron_polysemanticity" (relu-hidden and abs only)}, ...],
     "snapshot_steps": [int, ...] (only when snapshots were taken),
     "loss_history": {"format": "polysemy.toy.loss_history/1", "steps": [int, ...],
                      "loss": [[per instance], ...], "samples": int, "every": int}
                     (only when snapshots were taken: the loss along training on one fixed
                     batch of fresh inputs)}

`weights.safetensors`: `W [n_instances, n_hidden, n_features]`, `b_final [n_instances,
n_features]`, `W_out [n_instances, n_features, n_hidden]` (abs only), and when snapshots were
taken `snapshots [n_snapshots, n_instances, n_hidden, n_features]` with `snapshot_steps
[n_snapshots]` (int64) and `snapshot_b_final [n_snapshots, n_instances, n_features]`, plus
`seed_loss [n_instances, best_of]` and `chosen_seed [n_instances]`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch

from polysemy import runfolder
from polysemy.toy import metrics
from polysemy.toy.model import ToyConfig
from polysemy.toy.trainer import HISTORY_SAMPLES, ToyRun, history_every

log = logging.getLogger(__name__)

FORMAT = runfolder.TOY.format
RESULT_FILE = "result.json"
WEIGHTS_FILE = "weights.safetensors"
LOSS_HISTORY_FORMAT = "polysemy.toy.loss_history/1"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def config_to_dict(config: ToyConfig) -> dict[str, Any]:
    """The config as plain JSON types (tuples become lists)."""
    d = dataclasses.asdict(config)
    d["sparsity"] = list(config.sparsity)
    d["importance"] = [list(row) for row in config.importance]
    return d


def config_from_dict(d: dict[str, Any]) -> ToyConfig:
    """Rebuild a ToyConfig, ignoring keys this version does not know (logged)."""
    if not isinstance(d, dict):
        raise ValueError(f"config must be a JSON object; got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(ToyConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        log.warning("ignoring unknown toy config keys: %s", ", ".join(unknown))
    kwargs = {k: v for k, v in d.items() if k in known}
    if "sparsity" in kwargs and isinstance(kwargs["sparsity"], list):
        kwargs["sparsity"] = tuple(kwargs["sparsity"])
    if "importance" in kwargs and isinstance(kwargs["importance"], list):
        kwargs["importance"] = tuple(
            tuple(row) if isinstance(row, list) else row for row in kwargs["importance"]
        )
    return ToyConfig(**kwargs)


def summarize(run: ToyRun) -> list[dict[str, Any]]:
    """One JSON-ready dict per instance with its loss and weight geometry."""
    cfg = run.config
    W = run.W.detach().to(torch.float64)
    norms = metrics.feature_norms(W)
    dims = metrics.feature_dimensionality(W)
    sup = metrics.superposition(W)
    dpf = metrics.dimensions_per_feature(W)
    rep = metrics.represented_count(W)
    poly = metrics.neuron_polysemanticity(W) if cfg.model in ("relu-hidden", "abs") else None
    out = []
    for i in range(cfg.n_instances):
        item: dict[str, Any] = {
            "sparsity": cfg.sparsity[i],
            "importance": list(cfg.importance[i]),
            "loss": _finite_or_none(float(run.loss[i])),
            "feature_norms": norms[i].tolist(),
            "feature_dimensionality": dims[i].tolist(),
            "dimensions_per_feature": _finite_or_none(float(dpf[i])),
            "represented": int(rep[i]),
            "superposition": sup[i].tolist(),
            "bias": run.b_final[i].double().tolist(),
        }
        if run.seed_loss is not None:
            item["seed_losses"] = [_finite_or_none(float(v)) for v in run.seed_loss[i]]
        if run.chosen_seed is not None:
            item["chosen_seed"] = int(run.chosen_seed[i])
        if poly is not None:
            item["neuron_polysemanticity"] = poly[i].tolist()
        out.append(item)
    return out


def result_dict(run: ToyRun) -> dict[str, Any]:
    """The full `result.json` object."""
    out: dict[str, Any] = {
        "format": FORMAT,
        "config": config_to_dict(run.config),
        "seconds": run.seconds,
        "instances": summarize(run),
    }
    if run.snapshots:  # additive key: readers of polysemy.toy/1 that do not know it ignore it
        out["snapshot_steps"] = [int(s) for s, _ in run.snapshots]
    if run.loss_history:  # additive too, with its own format
        out["loss_history"] = {
            "format": LOSS_HISTORY_FORMAT,
            "steps": [int(s) for s, _ in run.loss_history],
            "loss": [[_finite(v) for v in h.tolist()] for _, h in run.loss_history],
            "samples": min(HISTORY_SAMPLES, run.config.eval_samples),
            "every": history_every(run.config),
        }
    return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None  # JSON has no NaN (a diverged instance)


def save_toy_run(run: ToyRun, out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write `run` to the folder `out` atomically; return the folder.

    Refuses an `out` holding another kind of run unless `force` (see `runfolder.check_out`).
    """
    path = runfolder.check_out(out, runfolder.TOY, force=force)
    tensors: dict[str, torch.Tensor] = {
        "W": run.W.float(),
        "b_final": run.b_final.float(),
    }
    if run.W_out is not None:
        tensors["W_out"] = run.W_out.float()
    if run.snapshots:
        tensors["snapshots"] = torch.stack([w.float() for _, w in run.snapshots])
        tensors["snapshot_steps"] = torch.tensor([s for s, _ in run.snapshots], dtype=torch.int64)
        if len(run.snapshot_b_final) == len(run.snapshots):
            tensors["snapshot_b_final"] = torch.stack([b.float() for b in run.snapshot_b_final])
    if run.seed_loss is not None:
        tensors["seed_loss"] = run.seed_loss.float()
    if run.chosen_seed is not None:
        tensors["chosen_seed"] = run.chosen_seed.to(torch.int64)
    result = result_dict(run)
    with runfolder.atomic_folder(path) as tmp:
        runfolder.atomic_save_safetensors(tmp / WEIGHTS_FILE, tensors, metadata={"format": FORMAT})
        runfolder.atomic_write_json(tmp / RESULT_FILE, result)
    return path


def load_toy_run(out: str | os.PathLike[str]) -> ToyRun:
    """Read a run folder written by `save_toy_run` (safetensors only, never pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(out)
    result_path = path / RESULT_FILE
    weights_path = path / WEIGHTS_FILE
    if not result_path.is_file():
        raise FileNotFoundError(f"no toy run in {str(path)!r}: {RESULT_FILE} is missing")
    if not weights_path.is_file():
        raise FileNotFoundError(f"no toy run in {str(path)!r}: {WEIGHTS_FILE} is missing")
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(result_path)!r} is not valid JSON: {exc}") from None
    fmt = result.get("format") if isinstance(result, dict) else None
    if not (isinstance(fmt, str) and fmt.split("/", 1)[0] == runfolder.TOY.family):
        raise ValueError(f"{str(result_path)!r} must have format {FORMAT!r}; got {fmt!r}")
    config = config_from_dict(result.get("config"))
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(
            f"{str(weights_path)!r} is not a readable safetensors file: {exc}"
        ) from None
    for key in ("W", "b_final"):
        if key not in tensors:
            raise ValueError(f"{str(weights_path)!r} lacks the tensor {key!r}")
    n_inst, m, n = config.n_instances, config.n_hidden, config.n_features
    expected = {"W": (n_inst, m, n), "b_final": (n_inst, n), "W_out": (n_inst, n, m)}
    for key, shape in expected.items():
        if key in tensors and tuple(tensors[key].shape) != shape:
            raise ValueError(
                f"{key} in {str(weights_path)!r} must have shape {shape} for this config; "
                f"got {tuple(tensors[key].shape)}"
            )
    if config.model == "abs" and "W_out" not in tensors:
        raise ValueError(f"{str(weights_path)!r} lacks W_out, which the abs model needs")
    snapshots: list[tuple[int, torch.Tensor]] = []
    snapshot_b_final: list[torch.Tensor] = []
    if "snapshots" in tensors and "snapshot_steps" in tensors:
        steps = tensors["snapshot_steps"].tolist()
        snapshots = [(int(s), w) for s, w in zip(steps, tensors["snapshots"], strict=True)]
        if "snapshot_b_final" in tensors:  # absent in folders written before it existed
            snapshot_b_final = list(tensors["snapshot_b_final"].unbind(0))
    instances = result.get("instances") or []
    loss = torch.tensor(
        [
            math.nan if not isinstance(it, dict) or it.get("loss") is None else it["loss"]
            for it in instances
        ],
        dtype=torch.float32,
    )
    if loss.numel() != n_inst:
        raise ValueError(f"{str(result_path)!r} must list {n_inst} instances; got {loss.numel()}")
    seconds = result.get("seconds", 0.0)
    history: list[tuple[int, torch.Tensor]] = []
    found = result.get("loss_history")
    if isinstance(found, dict) and found.get("format") == LOSS_HISTORY_FORMAT:
        history = [
            (int(s), torch.tensor([math.nan if v is None else v for v in row]))
            for s, row in zip(found.get("steps", []), found.get("loss", []), strict=False)
        ]
    return ToyRun(
        config=config,
        W=tensors["W"],
        b_final=tensors["b_final"],
        W_out=tensors.get("W_out"),
        loss=loss,
        snapshots=snapshots,
        snapshot_b_final=snapshot_b_final,
        seed_loss=tensors.get("seed_loss"),
        chosen_seed=tensors.get("chosen_seed"),
        seconds=float(seconds) if isinstance(seconds, int | float) else 0.0,
        loss_history=history,
    )
