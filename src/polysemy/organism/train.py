"""Train the model organism: a small GPT-2 on a local corpus, with snapshots, resumable.

The model is transformers' own `GPT2LMHeadModel` (so sites, harvest, fidelity and ablation
see an ordinary Hugging Face causal LM), trained with AdamW on packed windows (no padding,
every token a target once; `organism/data.py`). Snapshots at step 0 and log-spaced steps are
saved as ordinary Hugging Face folders (safetensors + tokenizer) that `ps.load_model(path)`
and `transformers.AutoModelForCausalLM.from_pretrained(path)` read.

Run folder (`organism.json`, format `polysemy.organism/1`, rewritten atomically as training
goes, `"status": "training"` until the end):

    out/organism.json          config, corpus, baselines, snapshots, history, final figures
    out/tokenizer/             the trained tokenizer (PreTrainedTokenizerFast)
    out/data/tokens.safetensors  train and held-out token streams (so a resume reuses them)
    out/snapshots/step-000123/ HF folders: config.json, model.safetensors, tokenizer files
    out/state/                 resumable state (weights, AdamW moments, RNG, step, data
                               position); removed when the run ends

A killed run continues with `resume=True` to the same final weights as an unkilled one: the
data order and the learning rate are functions of the step, and everything else that changes
is in `state/`.

>>> run = train_organism(out="runs/organism", quick=True)   # doctest: +SKIP
>>> run.heldout_loss, run.baselines["bigram"]                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from polysemy import runfolder
from polysemy.organism.config import RESUME_FREE, OrganismConfig
from polysemy.organism.data import (
    OrganismData,
    bigram_losses,
    prepare_data,
    unigram_losses,
    windows,
)
from polysemy.organism.tokenizer import EOS
from polysemy.progress import progress_bar
from polysemy.validation import configured

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

__all__ = [
    "ORGANISM",
    "OrganismRun",
    "build_model",
    "load_organism",
    "make_optimizer",
    "require_causal",
    "snapshot_steps",
    "train_organism",
    "train_step",
]

ORGANISM = runfolder.ORGANISM
_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}
STATE_FORMAT = "polysemy.organism-state/1"
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class OrganismRun:
    """What `train_organism` returns: the figures of `organism.json` and the final model."""

    out: Path | None
    """The run folder (None when trained without one)."""
    model: Any
    """The final `GPT2LMHeadModel` (eval mode)."""
    tokenizer: Any
    """Its tokenizer."""
    summary: dict[str, Any]
    """The contents of `organism.json`."""

    @property
    def heldout_loss(self) -> float:
        """Mean held-out cross-entropy (nats per token) of the final weights."""
        return float(self.summary["heldout"]["loss"])

    @property
    def baselines(self) -> dict[str, float]:
        """Held-out cross-entropy of the unigram and bigram baselines on the same targets."""
        return {k: float(v["loss"]) for k, v in self.summary["baselines"].items()}

    @property
    def snapshots(self) -> list[Path]:
        """Snapshot folders, in step order."""
        assert self.out is not None, "trained without an out folder: no snapshots on disk"
        return [self.out / s["path"] for s in self.summary["snapshots"]]


def snapshot_steps(steps: int, n: int) -> list[int]:
    """Step 0, then log-spaced steps up to `steps` (always kept): at most `n` distinct steps.

    Log spacing because a network changes fastest early on: equal steps would spend most
    snapshots on the slow end of training."""
    if n <= 1 or steps <= 0:
        return [steps]
    chosen = {0, steps}
    chosen.update(int(s) for s in np.rint(np.geomspace(1, steps, n - 1)))
    return sorted(chosen)


def build_model(config: OrganismConfig, eos_id: int) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 of `config`'s shape, seeded by `config.seed` (the global
    RNG is left as it was)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.n_ctx,
        n_embd=config.d_model,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=config.d_mlp,
        activation_function="gelu_new",
        resid_pdrop=0.0,  # small model, one pass over the data: dropout only slows learning
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=config.tie_embeddings,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = GPT2LMHeadModel(hf)
    return model


def make_optimizer(model: torch.nn.Module, config: OrganismConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    # Fused AdamW: one kernel per step instead of a dozen per tensor (CPU and CUDA).
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), fused=True)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype `precision` means on `device` (None: plain float32)."""
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        # oneDNN's native bfloat16 (AVX512-BF16 / AMX): 1.7x float32 on a Zen 4 core.
        supported = torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return torch.bfloat16 if supported else None
    return None


def train_step(
    model: Any,
    opt: torch.optim.Optimizer,
    w: Int[Tensor, "batch n_ctx_plus_1"],
    autocast: torch.dtype | None = None,
) -> float:
    """One AdamW step on packed windows `w` (inputs w[:, :-1], targets w[:, 1:]); the loss.

    No attention mask and no padding: every position is a real token with a real target, so
    no compute is spent on pad tokens and the loss needs no ignore index. `autocast`: run the
    forward pass's matmuls in that dtype (weights, gradients and AdamW stay float32)."""
    with torch.autocast(
        w.device.type, dtype=autocast or torch.float32, enabled=autocast is not None
    ):
        logits = model(input_ids=w[:, :-1]).logits  # (batch, n_ctx, vocab)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _lr(config: OrganismConfig, step: int) -> float:
    """Linear warm-up to `lr`, then cosine decay to lr / 10 at the last step."""
    steps = config.resolved_steps
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, steps - config.warmup_steps)
    t = min(1.0, (step - config.warmup_steps) / span)
    return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))


def _batch_indices(
    n_windows: int, batch_size: int, seed: int, step: int
) -> tuple[int, int, Tensor]:
    """The windows of step `step`: epoch e is a permutation drawn from seed and e, so the
    data position is a function of the step (what makes a resume exact)."""
    per_epoch = n_windows // batch_size
    epoch, index = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n_windows, generator=gen)
    return epoch, index, perm[index * batch_size : (index + 1) * batch_size]


@torch.no_grad()
def _heldout_window_losses(
    model: torch.nn.Module, heldout: Tensor, batch_size: int, device: torch.device
) -> np.ndarray:
    """Mean cross-entropy of each held-out window (nats per token)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, heldout.shape[0], batch_size):
        w = heldout[start : start + batch_size].to(device)
        logits = model(input_ids=w[:, :-1]).logits  # (B, n_ctx, vocab)
        loss = F.cross_entropy(logits.transpose(1, 2).float(), w[:, 1:], reduction="none")
        out.append(loss.mean(dim=1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out).astype(np.float64)


def _dtype_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def _interval(values: np.ndarray, seed: int, n_boot: int = 1000) -> list[float]:
    """95% bootstrap interval of the mean over windows."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def _figure(values: np.ndarray, n_ctx: int, seed: int) -> dict[str, Any]:
    return {
        "loss": float(values.mean()),
        "ci95": _interval(values, seed),
        "windows": len(values),
        "tokens": len(values) * n_ctx,
    }


def _comparison(model: np.ndarray, baseline: np.ndarray, seed: int) -> dict[str, Any]:
    """Paired difference model - baseline over the same windows, with its interval."""
    diff = model - baseline
    lo, hi = _interval(diff, seed)
    verdict = "below" if hi < 0 else "above" if lo > 0 else "inconclusive"
    return {"difference": float(diff.mean()), "ci95": [lo, hi], "verdict": verdict}


def require_causal(folder: PathLike, name: str = "model") -> None:
    """Refuse a model folder whose config.json names no causal-LM architecture (an encoder
    such as MiniLM has no next-token head), before anything loads it. `name` is the
    parameter the error names."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{name} folder {str(folder)!r} holds no config.json")
    hf = json.loads((folder / "config.json").read_text())
    archs = hf.get("architectures") or []
    if not any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        raise ValueError(
            f"{name} must be a causal language model (a *ForCausalLM / *LMHeadModel); got "
            f"{str(folder)!r} with architectures {archs or 'unknown'} ({hf.get('model_type')})"
        )


def load_organism(path: PathLike, *, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """A snapshot folder as (causal LM with its head, tokenizer), in eval mode.

    Raises ValueError when the folder holds a model that is not a causal LM (an encoder such
    as MiniLM has no next-token head to score)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    require_causal(folder)
    with _quiet_transformers():
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, use_safetensors=True
        )
    model = model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model, tokenizer


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers draws a "Writing model shards" bar per save: keep stderr for ours."""
    from transformers.utils import logging as hf_logging

    were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if were_on:
            hf_logging.enable_progress_bar()


# ---- resumable state ---------------------------------------------------------------------


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUME_FREE}


def _write_state(
    folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, info: dict[str, Any]
) -> None:
    # named_parameters lists a tied matrix once (safetensors refuses shared storage).
    tensors = {f"model.{k}": v.detach() for k, v in model.named_parameters()}
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{i}.{key}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    with runfolder.atomic_folder(folder) as tmp:
        runfolder.atomic_save_safetensors(tmp / "state.safetensors", tensors)
        runfolder.atomic_write_json(tmp / "state.json", info)


def _read_state(
    folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, config: OrganismConfig
) -> dict[str, Any]:
    from safetensors.torch import load_file

    info = json.loads((folder / "state.json").read_text())
    if info.get("format") != STATE_FORMAT:
        raise ValueError(
            f"resume: {str(folder)!r} is not an organism state ({info.get('format')!r})"
        )
    if _comparable(info["config"]) != _comparable(config.to_dict()):
        diff = sorted(
            k
            for k in _comparable(config.to_dict())
            if info["config"].get(k) != config.to_dict().get(k)
        )
        raise ValueError(
            f"config must match the interrupted run's to resume it; these differ: {', '.join(diff)}"
        )
    tensors = load_file(str(folder / "state.safetensors"))
    device = next(model.parameters()).device
    model.load_state_dict(
        {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False
    )
    saved = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value.to(device)
    opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return info


# ---- training ----------------------------------------------------------------------------


def train_organism(
    config: OrganismConfig | None = None,
    out: PathLike | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    device: str | torch.device = "cpu",
    stop_after: int | None = None,
    **options: Any,
) -> OrganismRun:
    """Train the organism `config` describes (or its fields given as `options`) into `out`.

    With `resume`, an interrupted run in `out` continues from its `state/` to the same final
    weights as an uninterrupted run. `stop_after`: return after that many steps as if killed
    there (nothing more is written: a resume restarts from the last checkpoint; for tests).

    Raises ValueError (ParameterError naming the field) for a corpus too small for the
    vocabulary, the context or one batch; for an `out` holding another run, a finished
    organism (unless `force`) or an interrupted one (unless `resume` or `force`).
    """
    config = configured(OrganismConfig, config, options)
    device = torch.device(device)
    path = Path(out) if out is not None else None
    state_dir = path / "state" if path is not None else None
    resuming = False
    if path is not None:
        assert state_dir is not None
        has_state = (state_dir / "state.json").is_file()
        runfolder.check_out(path, ORGANISM, force=force)
        marker = path / ORGANISM.marker
        if marker.is_file() and not force:
            status = json.loads(marker.read_text()).get("status")
            if has_state and not resume:
                raise ValueError(
                    f"out {str(path)!r} holds an interrupted organism run; pass resume=True to "
                    "continue it or force=True to start over"
                )
            # Killed before its first checkpoint: nothing to continue, so a resume starts over.
            if not has_state and not (resume and status == "training"):
                raise ValueError(
                    f"out {str(path)!r} holds a {status} organism run; choose another folder "
                    "or pass force=True to replace it"
                )
        resuming = resume and has_state

    if resuming:
        assert path is not None
        data = _load_data(path, config)
    else:
        data = prepare_data(config)
        if path is not None:
            if path.exists():
                shutil.rmtree(path)  # force: check_out allowed replacing it
            _save_data(path, data)
    return _train(config, data, path, resuming, progress, device, stop_after)


def _save_data(path: Path, data: OrganismData) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with runfolder.atomic_folder(path / "tokenizer") as tmp:
        data.tokenizer.save_pretrained(tmp)
    runfolder.atomic_save_safetensors(
        path / "data" / "tokens.safetensors",
        {"train": data.train.to(torch.int32), "heldout": data.heldout.to(torch.int32)},
        metadata={"corpus": data.corpus, "documents": json.dumps(list(data.documents))},
    )


def _load_data(path: Path, config: OrganismConfig) -> OrganismData:
    from safetensors import safe_open
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    with safe_open(str(path / "data" / "tokens.safetensors"), "pt") as f:
        meta = f.metadata()
        train = f.get_tensor("train").long()
        heldout = f.get_tensor("heldout").long()
    docs = json.loads(meta["documents"])
    return OrganismData(tokenizer, train, heldout, meta["corpus"], (docs[0], docs[1]))


def _train(
    config: OrganismConfig,
    data: OrganismData,
    path: Path | None,
    resuming: bool,
    progress: bool,
    device: torch.device,
    stop_after: int | None,
) -> OrganismRun:
    tokenizer: PreTrainedTokenizerFast = data.tokenizer
    eos_id = cast(int, tokenizer.convert_tokens_to_ids(EOS))
    model: Any = build_model(config, eos_id)
    model = model.to(device)
    model.train()
    opt = make_optimizer(model, config)
    steps = config.resolved_steps
    n_ctx, batch = config.n_ctx, config.batch_size
    train_w = windows(data.train, n_ctx)  # (windows, n_ctx + 1)
    heldout_w = windows(data.heldout, n_ctx)
    n_eval = max(1, min(heldout_w.shape[0], config.eval_tokens // n_ctx))
    eval_w = heldout_w[:n_eval]
    keep = snapshot_steps(steps, config.snapshots)

    baselines_w = {
        "unigram": unigram_losses(data.train, eval_w[:, 1:], config.vocab_size),
        "bigram": bigram_losses(data.train, eval_w, config.vocab_size),
    }
    n_params = sum(p.numel() for p in model.parameters())
    summary: dict[str, Any] = {
        "format": ORGANISM.format,
        "status": "training",
        "config": config.to_dict(),
        "corpus": data.corpus,
        "documents": {"train": data.documents[0], "heldout": data.documents[1]},
        "tokens": {"train": int(data.train.numel()), "heldout": int(data.heldout.numel())},
        "model": {
            "architecture": "GPT2LMHeadModel",
            "parameters": n_params,
            "sites": {"mlp": "h.0.mlp.act.output", "resid": "h.0.output"},
        },
        "baselines": {name: _figure(v, n_ctx, config.seed) for name, v in baselines_w.items()},
        "precision": _dtype_name(resolve_precision(config.precision, device)),
        "snapshots": [],
        "history": [],
        "train_seconds": 0.0,
        "resumed_from_step": 0,
    }
    start = 0
    if resuming:
        assert path is not None
        info = _read_state(path / "state", model, opt, config)
        start = int(info["step"])
        summary = json.loads((path / ORGANISM.marker).read_text())
        # organism.json may have been written after the state (at a snapshot): forget
        # what the resumed run will redo.
        summary["config"] = config.to_dict()
        summary["resumed_from_step"] = start
        summary["train_seconds"] = float(info["train_seconds"])
        summary["history"] = [h for h in summary["history"] if h["step"] <= start]
        summary["snapshots"] = [s for s in summary["snapshots"] if s["step"] <= start]

    def write_summary() -> None:
        if path is not None:
            runfolder.atomic_write_json(path / ORGANISM.marker, summary)

    def snapshot(step: int) -> None:
        losses = _heldout_window_losses(model, eval_w, batch, device)
        entry: dict[str, Any] = {
            "step": step,
            "tokens": step * batch * n_ctx,
            "heldout_loss": float(losses.mean()),
            "ci95": _interval(losses, config.seed),
            "windows": len(losses),
            "path": None,
        }
        if path is not None:
            name = f"snapshots/step-{step:06d}"
            with runfolder.atomic_folder(path / name) as tmp, _quiet_transformers():
                model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
            entry["path"] = name
        kept = [s for s in summary["snapshots"] if s["step"] != step]
        summary["snapshots"] = sorted([*kept, entry], key=lambda s: s["step"])

    def state_info(step: int) -> dict[str, Any]:
        epoch, index = divmod(step, train_w.shape[0] // batch)
        return {
            "format": STATE_FORMAT,
            "step": step,
            "data_position": {"epoch": epoch, "batch": index},
            "train_seconds": train_seconds,
            "config": config.to_dict(),
        }

    step_fn = torch.compile(model) if config.compile else model
    autocast = _DTYPES[summary["precision"]]
    if start == 0:
        snapshot(0)
        write_summary()
    bar = progress_bar(total=steps, desc="organism", unit="step", enabled=progress, initial=start)
    window_loss, window_steps, window_t = 0.0, 0, 0.0
    train_seconds = float(summary["train_seconds"])
    step = start
    try:
        while step < steps:
            if stop_after is not None and step - start >= stop_after:
                break
            t0 = time.perf_counter()
            _, _, idx = _batch_indices(train_w.shape[0], batch, config.seed, step)
            w = train_w[idx].to(device)  # (batch, n_ctx + 1)
            for group in opt.param_groups:
                group["lr"] = _lr(config, step)
            value = train_step(step_fn, opt, w, autocast)
            step += 1
            dt = time.perf_counter() - t0
            train_seconds += dt
            window_loss += value
            window_steps += 1
            window_t += dt
            if step % config.log_every == 0 or step == steps:
                mean = window_loss / window_steps
                tok_s = window_steps * batch * n_ctx / max(window_t, 1e-9)
                summary["history"].append(
                    {
                        "step": step,
                        "tokens": step * batch * n_ctx,
                        "loss": mean,
                        "lr": _lr(config, step - 1),
                        "tokens_per_second": tok_s,
                    }
                )
                bar.set_postfix(loss=f"{mean:.3f}", tok_s=f"{tok_s:.0f}")
                window_loss, window_steps, window_t = 0.0, 0, 0.0
            bar.update(1)
            summary["train_seconds"] = train_seconds
            if step in keep:
                snapshot(step)
                write_summary()
            if path is not None and step % config.checkpoint_every == 0 and step < steps:
                _write_state(path / "state", model, opt, state_info(step))
                write_summary()
    finally:
        bar.close()
    model.eval()
    if step < steps:
        return OrganismRun(path, model, tokenizer, summary)

    final = _heldout_window_losses(model, eval_w, batch, device)
    summary["heldout"] = _figure(final, n_ctx, config.seed)
    summary["versus"] = {
        name: _comparison(final, base, config.seed) for name, base in baselines_w.items()
    }
    summary["steps"] = steps
    summary["train_tokens_per_second"] = steps * batch * n_ctx / max(train_seconds, 1e-9)
    summary["status"] = "done"
    summary["final"] = summary["snapshots"][-1]["path"]
    if path is not None:
        write_summary()
        shutil.rmtree(path / "state", ignore_errors=True)
    return OrganismRun(path, model, tokenizer, summary)
