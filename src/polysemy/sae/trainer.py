"""Train an SAE on an activation store (or a tensor), resumably and data-parallel.

The recipe, shared by every architecture:
- inputs scaled by one factor so that E||x||^2 = d_in (from a sample), folded back into the
  saved weights so they work in original units;
- b_dec initialised at the geometric median of the sample (Weiszfeld), the encoder as the
  decoder's transpose (in `SparseAutoencoder.__init__`);
- Adam (foreach) or a sign optimizer (`sae.optim`), linear learning-rate warm-up, linear
  decay to 0 over the last 20% of steps; sparsity coefficient warm-up (relu, jumprelu);
  unit-norm decoder rows with the parallel gradient removed (where the architecture asks);
- dead latents (no firing for `dead_window` rows) feed TopK's AuxK loss; dense latents are
  counted over the same window.

The figures a run reports (`TrainResult.fvu`, `l0`, `dead_fraction`, `dense_fraction`) are
those of the weights it saved, measured on the store's held-out rows (`evaluated_on`);
the last logging window's training figures sit beside them in `train_window`.

Resumable state (`sae.state`: weights, optimizer, data position, counters) lets
`resume=True` continue to the same final weights as an uninterrupted run. Under torchrun
each rank reads its own rows, gradients are all-reduced in one flat buffer, and rank 0
writes.

>>> result = train_sae("acts/minilm-l3", SAEConfig(arch="topk", d_in=384, d_sae=3072, k=32),
...                    TrainConfig(tokens=2_000_000), out="saes/l3")          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from polysemy import runfolder
from polysemy.activations.paired import PairedStore
from polysemy.analysis.reconstruction import EvalConfig, evaluate
from polysemy.progress import progress_bar
from polysemy.sae import distributed as dist_utils
from polysemy.sae.base import SAEOutput, SparseAutoencoder, geometric_median
from polysemy.sae.config import SAEConfig, TrainConfig
from polysemy.sae.data import TrainData
from polysemy.sae.io import write_checkpoint
from polysemy.sae.optim import make_optimizer
from polysemy.sae.registry import build_sae
from polysemy.sae.state import (
    STATE_DIR,
    STATE_JSON,
    Counters,
    dtype_name,
    load_state,
    train_dict,
    write_state_files,
)
from polysemy.sae.transcoder import Transcoder
from polysemy.validation import ParameterError

logger = logging.getLogger(__name__)

EvaluatedOn = Literal["heldout", "train", "none"]

FALLBACK_EVAL_ROWS = 65_536
"""Rows evaluated when the data has no held-out split (the first rows of the training data)."""

METRIC_KEYS = (
    "fvu",
    "mse",
    "explained_variance",
    "cosine",
    "l0",
    "dead_fraction",
    "dense_fraction",
    "l2_ratio",
)
"""What `polysemy.analysis.reconstruction.evaluate` reports and a run records of its saved SAE."""


@dataclass(frozen=True)
class TrainResult:
    """What `train_sae` returns. `fvu`, `l0`, `dead_fraction` and `dense_fraction` describe
    the saved weights on the rows named by `evaluated_on`."""

    sae: SparseAutoencoder
    """The trained SAE in original units (eval mode), as saved."""
    out: Path | None
    """Checkpoint folder, or None when `out` was not given."""
    steps: int
    """Optimizer steps taken in total (including those before a resume)."""
    tokens: int
    """Rows trained on in total."""
    seconds: float
    """Wall-clock time of this call's training loop."""
    tokens_per_s: float
    """Rows per second of this call's training loop (all ranks together)."""
    fvu: float
    """FVU of the saved weights on the `evaluated_on` rows."""
    l0: float
    """Mean active latents per row of the saved weights on those rows."""
    dead_fraction: float
    """Latents of the saved weights that fired on none of those rows."""
    dense_fraction: float
    """Latents of the saved weights that fired on more than `dense_threshold` of those rows."""
    evaluated_on: EvaluatedOn
    """`heldout`: the store's held-out split, rows training never read; `train`: the data
    has no held-out split, so the first `FALLBACK_EVAL_ROWS` training rows; `none`: not
    evaluated (data-parallel ranks other than 0), the figures are NaN."""
    train_window: dict[str, float]
    """Training figures of the last logging window, measured on the weights being trained
    (scaled units): fvu, l0, dead_fraction (over `dead_window` rows), dense_fraction."""
    input_scale: float
    """Factor the inputs were multiplied by during training."""
    world_size: int
    """Data-parallel processes."""
    resumed_from_step: int
    """Step the run resumed from (0 for a fresh run)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Every figure of `polysemy.analysis.reconstruction.evaluate` on the `evaluated_on` rows."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Logged training metrics: step, tokens, lr, fvu, l0, dead_fraction."""
    selection_dtype: str | None = None
    """TopK family: precision the latents were chosen in (`float32` / `bfloat16`); else None."""

    @property
    def heldout(self) -> dict[str, float] | None:
        """`metrics` when they were measured on held-out rows, else None."""
        return self.metrics if self.evaluated_on == "heldout" else None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict of the figures (no tensors)."""
        cfg = self.sae.config
        return {
            "out": None if self.out is None else str(self.out),
            "arch": cfg.arch,
            "d_in": cfg.d_in,
            "d_sae": cfg.d_sae,
            **({"d_out": cfg.d_out} if cfg.is_transcoder else {}),
            "k": cfg.k,
            "steps": self.steps,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "fvu": self.fvu,
            "l0": self.l0,
            "dead_fraction": self.dead_fraction,
            "dense_fraction": self.dense_fraction,
            "evaluated_on": self.evaluated_on,
            "train_window": dict(self.train_window),
            "input_scale": self.input_scale,
            "world_size": self.world_size,
            "resumed_from_step": self.resumed_from_step,
            "heldout": self.heldout,
            "selection_dtype": self.selection_dtype,
        }


# ---- one step ---------------------------------------------------------------------------


@dataclass
class _Loop:
    """What every step reads and updates: the model, its optimizer and the bookkeeping."""

    sae: SparseAutoencoder
    opt: torch.optim.Optimizer
    train: TrainConfig
    counters: Counters
    info: dist_utils.DistInfo
    scale: float
    grad_clip: float | None
    dead_window: int
    # Metric accumulators of the current logging window (tensors: no per-step host sync).
    sq_err: Tensor
    active: Tensor
    window_steps: int = 0

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return list(self.sae.parameters())


def train_step(loop: _Loop, x: Tensor, step: int) -> SAEOutput:
    """One optimizer step on the raw batch `x` (this rank's rows): forward, backward,
    all-reduce, clip, update, constraints, then the per-latent and metric bookkeeping."""
    sae, train, counters = loop.sae, loop.train, loop.counters
    if loop.scale != 1.0:
        x = x * loop.scale
    lr = train.lr_at(step, sae.d_sae)
    for group in loop.opt.param_groups:
        group["lr"] = lr
    dead_mask = counters.tokens_since_fired >= loop.dead_window if sae.uses_dead_mask else None
    result = sae(x, dead_mask=dead_mask, sparsity_scale=train.sparsity_scale_at(step))
    loss = sum(result.losses.values())
    loop.opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[union-attr]
    params = loop.params
    fire, stats = result.fire_counts, dict(result.stats)
    if loop.info.enabled:
        grads: list[Tensor] = [p.grad for p in params if p.grad is not None]
        names = sorted(stats)
        # One flat all-reduce: gradients and stats averaged, firing counts summed.
        extra = [fire] + [stats[n].reshape(1) for n in names]
        dist_utils.all_reduce_(
            grads + extra,
            loop.info,
            average=[True] * len(grads) + [False] + [True] * len(names),
        )
        stats = {n: extra[1 + i].reshape(()) for i, n in enumerate(names)}
    sae.remove_parallel_decoder_grad_()
    if loop.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, loop.grad_clip, foreach=True)
    loop.opt.step()
    sae.post_step_()
    sae.update_from_stats_(stats)
    # Bookkeeping, all on-device.
    global_batch = train.batch_size
    counters.tokens_since_fired.add_(global_batch).masked_fill_(fire > 0, 0)
    counters.window_fires.add_(fire)
    counters.window_rows.add_(global_batch)
    with torch.no_grad():
        # The reconstruction term is sum ||x - x_hat||^2 / (rows * denominator).
        recon = result.losses.get("fvu", result.losses.get("mse"))
        if recon is None:
            loop.sq_err.add_((result.x_hat - x).pow(2).sum().double())
        else:
            loop.sq_err.add_(
                recon.detach().double() * (x.shape[0] * sae.reconstruction_denominator)
            )
        loop.active.add_(fire.sum().double())
    loop.window_steps += 1
    if int(counters.window_rows) >= loop.dead_window:
        frac = counters.window_fires.double() / counters.window_rows.double()
        counters.last_dense_fraction.copy_((frac > train.dense_threshold).double().mean())
        counters.window_fires.zero_()
        counters.window_rows.zero_()
    return result


def _close_window(loop: _Loop, rows_per_step: int, variance: float) -> dict[str, float]:
    """The current logging window's training figures; starts the next window."""
    # Local rows only: FVU and L0 are per-rank estimates (the same in expectation).
    figures = {
        "fvu": float(loop.sq_err) / (loop.window_steps * rows_per_step * variance),
        "l0": float(loop.active) / (loop.window_steps * loop.train.batch_size),
        "dead_fraction": float(
            (loop.counters.tokens_since_fired >= loop.dead_window).double().mean()
        ),
    }
    loop.sq_err.zero_()
    loop.active.zero_()
    loop.window_steps = 0
    return figures


# ---- training ---------------------------------------------------------------------------


def train_sae(
    acts: Any,
    config: SAEConfig,
    train: TrainConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    force: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
    source: dict[str, Any] | None = None,
    target: Any = None,
) -> TrainResult:
    """Train an SAE of `config` on `acts` for `train.tokens` rows; save it to `out`.

    `acts`: an `ActivationStore`, a store folder / `.npy` / `.safetensors` path, or a 2-D
    float tensor. Transcoders (`config.arch` transcoder, skip-transcoder) read `acts` as
    their input and predict `target`, a store / path / tensor with the same rows (the MLP's
    output harvested in the same pass): `train_sae(mlp_in, config, train, target=mlp_out)`.
    With `resume`, an interrupted run's `<out>/state/` is continued (to the same final
    weights as an uninterrupted run); with no state there, training starts fresh.
    Under torchrun (WORLD_SIZE > 1) this trains data-parallel; only rank 0 writes.
    The returned figures are those of the saved weights on held-out rows (`evaluated_on`).

    Raises ValueError for NaN/Inf rows, a d_in mismatch, an `out` holding something else,
    or a state whose configuration differs from the one given.
    """
    if not isinstance(config, SAEConfig):
        raise TypeError(f"config must be an SAEConfig; got {type(config).__name__}")
    if not isinstance(train, TrainConfig):
        raise TypeError(f"train must be a TrainConfig; got {type(train).__name__}")
    info = dist_utils.init_from_env(device)
    dev = dist_utils.rank_device(device, info)
    out_path = None if out is None else Path(out)
    state_dir = None if out_path is None else out_path / STATE_DIR
    has_state = state_dir is not None and (state_dir / STATE_JSON).is_file()
    if out_path is not None:
        if has_state and not resume and not force:
            raise ValueError(
                f"out {str(out_path)!r} holds an interrupted training state; pass resume=True "
                "to continue it or force=True to start over"
            )
        if not has_state:
            runfolder.check_out(out_path, runfolder.SAE, force=force)
    resuming = resume and has_state

    rows = paired_rows(acts, target, config)
    data = TrainData(rows, batch_size=train.batch_size, seed=train.seed, info=info, device=dev)
    if data.d_in != config.train_width:
        if config.is_transcoder:
            raise ValueError(
                f"d_in/d_out mismatch: the transcoder reads d_in={config.d_in} and predicts "
                f"d_out={config.d_out} (rows of {config.train_width}) but the paired "
                f"activations {data.name!r} have width {data.d_in}"
            )
        raise ValueError(
            f"d_in mismatch: the SAE has d_in={config.d_in} but the activations {data.name!r} "
            f"have width {data.d_in}"
        )
    data.check_finite()

    sae = build_sae(config, generator=torch.Generator().manual_seed(train.seed)).to(dev)
    sae.train()
    sae.selection_dtype = train.resolved_selection_dtype(dev)
    opt = make_optimizer(sae, train)
    counters = Counters.zeros(config.d_sae, dev)
    start_step, history = 0, list[dict[str, float]]()
    if resuming:
        assert state_dir is not None
        start_step, scale, variance, history = load_state(
            state_dir, sae, opt, counters, data, config, train, dev
        )
    else:
        scale, variance = _init_from_sample(sae, data, train)
    sae.reconstruction_denominator = variance if sae.normalized_reconstruction else 1.0

    steps, global_batch = train.steps, train.batch_size
    loop = _Loop(
        sae=sae,
        opt=opt,
        train=train,
        counters=counters,
        info=info,
        scale=scale,
        grad_clip=train.grad_clip if train.grad_clip is not None else sae.default_grad_clip,
        dead_window=train.effective_dead_window,
        sq_err=torch.zeros((), dtype=torch.float64, device=dev),
        active=torch.zeros((), dtype=torch.float64, device=dev),
    )
    window = {"fvu": float("nan"), "l0": float("nan"), "dead_fraction": 0.0}
    if history:  # a resumed run reports the last logged window until it logs its own
        window = {key: float(history[-1][key]) for key in window}
    bar = progress_bar(
        steps * global_batch,
        desc=f"sae train {config.arch}",
        unit="tok",
        unit_scale=True,
        enabled=progress and info.is_main,
        initial=start_step * global_batch,
    )
    t0 = time.perf_counter()
    with bar:
        for step in range(start_step, steps):
            train_step(loop, data.next(), step)
            done = step + 1
            if done % train.log_every == 0 or done == steps:
                window = _close_window(loop, data.local_batch, variance)
                lr = train.lr_at(step, config.d_sae)
                history.append({"step": done, "tokens": done * global_batch, "lr": lr, **window})
                bar.set_postfix(
                    fvu=f"{window['fvu']:.3f}",
                    l0=f"{window['l0']:.1f}",
                    dead=f"{window['dead_fraction']:.2f}",
                )
            bar.update(global_batch)
            if (
                state_dir is not None
                and train.checkpoint_every is not None
                and done % train.checkpoint_every == 0
                and done < steps
                and info.is_main
            ):
                # Replace the state folder atomically: a kill leaves the previous checkpoint.
                with runfolder.atomic_folder(state_dir) as tmp:
                    write_state_files(
                        tmp, sae, opt, counters, data, train, done, scale, variance, history
                    )
                logger.info("checkpoint at step %d in %s", done, state_dir)
    seconds = time.perf_counter() - t0
    trained_steps = max(0, steps - start_step)
    train_window = {
        **window,
        "dead_fraction": float((counters.tokens_since_fired >= loop.dead_window).double().mean()),
        "dense_fraction": float(counters.last_dense_fraction),
    }

    selection = dtype_name(sae.selection_dtype) if sae.chooses_latents else None
    sae.release_scratch_()
    # The saved SAE is the parameters as trained (for schedule-free-signum the interpolation
    # y, not the average x: see `ScheduleFreeSignum`), in original units.
    final = copy.deepcopy(sae).eval()
    final.selection_dtype = None
    final.fold_input_scale_(scale)
    evaluated_on: EvaluatedOn = "none"
    metrics = {key: float("nan") for key in METRIC_KEYS}
    if info.is_main:
        evaluated_on, metrics = _evaluate_saved(final, data, dev, train.dense_threshold)
    result = TrainResult(
        sae=final,
        out=out_path,
        steps=steps,
        tokens=steps * global_batch,
        seconds=seconds,
        tokens_per_s=trained_steps * global_batch / seconds if seconds > 0 else 0.0,
        fvu=metrics["fvu"],
        l0=metrics["l0"],
        dead_fraction=metrics["dead_fraction"],
        dense_fraction=metrics["dense_fraction"],
        evaluated_on=evaluated_on,
        train_window=train_window,
        input_scale=scale,
        world_size=info.world_size,
        resumed_from_step=start_step,
        metrics=metrics,
        history=history,
        selection_dtype=selection,
    )
    if out_path is not None and info.is_main:
        training = {
            **train_dict(train),
            "lr": train.resolved_lr(config.d_sae),
            "steps": steps,
            "tokens_trained": steps * global_batch,
            "input_scale": scale,
            "world_size": info.world_size,
            "evaluated_on": evaluated_on,
            "final": {k: metrics[k] for k in ("fvu", "l0", "dead_fraction", "dense_fraction")},
            "train_window": train_window,
            "heldout": result.heldout,
        }
        with runfolder.atomic_folder(out_path) as tmp:
            write_checkpoint(
                tmp,
                final,
                source=_source_description(data, source),
                training=training,
                input_scale=scale,
            )
            write_state_files(
                tmp / STATE_DIR, sae, opt, counters, data, train, steps, scale, variance, history
            )
    dist_utils.shutdown(info)
    return result


def paired_rows(acts: Any, target: Any, config: SAEConfig) -> Any:
    """What `TrainData` reads: `acts` for an SAE; for a transcoder, `acts` and `target` side
    by side (a `PairedStore`, or the two tensors concatenated)."""
    if not config.is_transcoder:
        if target is not None:
            raise ParameterError(
                "target", f"None for arch {config.arch!r} (an SAE reconstructs its input)", target
            )
        return acts
    if target is None:
        if isinstance(acts, PairedStore):
            return acts
        raise ParameterError(
            "target",
            f"the activations to predict (a store, path or tensor) for arch {config.arch!r}",
            target,
        )
    if isinstance(acts, Tensor) or isinstance(target, Tensor):
        if not (isinstance(acts, Tensor) and isinstance(target, Tensor)):
            raise TypeError(
                "acts and target must both be tensors or both be stores/paths; got "
                f"{type(acts).__name__} and {type(target).__name__}"
            )
        if acts.ndim != 2 or target.ndim != 2 or acts.shape[0] != target.shape[0]:
            raise ValueError(
                "acts and target must be 2-D with the same rows; got shapes "
                f"{list(acts.shape)} and {list(target.shape)}"
            )
        return torch.cat([acts, target.to(acts.dtype)], dim=1)
    return PairedStore(acts, target)


def _init_from_sample(
    sae: SparseAutoencoder, data: TrainData, train: TrainConfig
) -> tuple[float, float]:
    """Input scale and FVU denominator from a seeded sample; b_dec at its geometric median.

    For a transcoder both come from the target half (the loss is measured there) and the
    one scale multiplies input and target alike, so folding it back stays `fold_input_scale_`.
    """
    sample = data.sample(train.init_sample_rows)
    measured = sample[:, sae.d_in :] if sae.config.is_transcoder else sample
    scale = 1.0
    if train.scale_inputs:
        mean_sq = measured.double().pow(2).sum(-1).mean().item()
        if mean_sq <= 0:
            raise ValueError(f"activations {data.name!r} are all zero; nothing to learn")
        scale = math.sqrt(measured.shape[1] / mean_sq)
    sample, measured = sample * scale, measured * scale
    # Total variance of the scaled data: the FVU denominator.
    variance = float(measured.double().var(dim=0, unbiased=False).sum().item())
    if variance <= 0:
        variance = 1.0
    if isinstance(sae, Transcoder):
        b_dec = sae.b_dec.detach().clone()
        sae.init_from_sample_(sample)
        if not train.init_b_dec:
            with torch.no_grad():
                sae.b_dec.copy_(b_dec)
    elif train.init_b_dec:
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(sample))
    return scale, variance


def _evaluate_saved(
    sae: SparseAutoencoder, data: TrainData, device: torch.device, dense_threshold: float
) -> tuple[EvaluatedOn, dict[str, float]]:
    """Metrics of the saved SAE: on the store's held-out rows, or (none there) on the first
    `FALLBACK_EVAL_ROWS` training rows."""
    acts: Any
    if data.store is not None and data.store.split_rows("heldout") > 0:
        evaluated_on: EvaluatedOn = "heldout"
        acts, config = data.store, EvalConfig(split="heldout", dense_threshold=dense_threshold)
    else:
        evaluated_on = "train"
        acts = data.store if data.store is not None else data.tensor
        config = EvalConfig(
            split="train", max_rows=FALLBACK_EVAL_ROWS, dense_threshold=dense_threshold
        )
    r = evaluate(sae, acts, config, device=device)
    return evaluated_on, {key: float(getattr(r, key)) for key in METRIC_KEYS}


def _source_description(data: TrainData, source: dict[str, Any] | None) -> dict[str, Any]:
    desc: dict[str, Any] = {}
    if data.store is not None:
        desc.update(data.store.source or {})
        desc["acts"] = str(data.store.path)
    else:
        desc["acts"] = data.name
    if source:
        desc.update(source)
    return desc
