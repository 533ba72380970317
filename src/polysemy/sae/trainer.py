"""Train an SAE on an activation store (or a tensor), resumably and data-parallel.

The recipe, shared by every architecture:
- inputs scaled by one factor so that E||x||^2 = d_in (from a sample), folded back into the
  saved weights so they work in original units;
- b_dec initialised at the geometric median of the sample (Weiszfeld), the encoder as the
  decoder's transpose (in `SparseAutoencoder.__init__`);
- Adam (foreach) or signum, linear learning-rate warm-up, linear decay to 0 over the last
  20% of steps; sparsity coefficient warm-up (relu, jumprelu); unit-norm decoder rows with
  the parallel gradient removed (where the architecture asks);
- dead latents (no firing for `dead_window` rows) feed TopK's AuxK loss; dense latents are
  counted over the same window.

Resumable state (`<out>/state/`: weights, optimizer, data position, counters; safetensors +
json, written atomically) lets `resume=True` continue to the same final weights as an
uninterrupted run. Under torchrun each rank reads its own rows, gradients are all-reduced
in one flat buffer, and rank 0 writes.

>>> result = train_sae("acts/minilm-l3", SAEConfig("topk", 384, 3072, k=32),
...                    TrainConfig(tokens=2_000_000), out="saes/l3")          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polysemy import runfolder
from polysemy.progress import progress_bar
from polysemy.sae import distributed as dist_utils
from polysemy.sae.base import SparseAutoencoder, geometric_median
from polysemy.sae.batchtopk import BatchTopKSAE
from polysemy.sae.config import TOPK_FAMILY, SAEConfig, TrainConfig
from polysemy.sae.io import read_safetensors, write_checkpoint

logger = logging.getLogger(__name__)

STATE_FORMAT = "polysemy.sae-state/1"
STATE_DIR = "state"
STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"


@dataclass(frozen=True)
class TrainResult:
    """What `train_sae` returns."""

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
    """Training FVU over the last logging window (scaled units; FVU is scale-free)."""
    l0: float
    """Mean active latents per row over the last logging window."""
    dead_fraction: float
    """Latents that did not fire during the last `dead_window` rows."""
    dense_fraction: float
    """Latents that fired on more than `dense_threshold` of the last window's rows."""
    input_scale: float
    """Factor the inputs were multiplied by during training."""
    world_size: int
    """Data-parallel processes."""
    resumed_from_step: int
    """Step the run resumed from (0 for a fresh run)."""
    heldout: dict[str, float] | None = None
    """Held-out reconstruction metrics (`polysemy.analysis.reconstruction`), when available."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Logged metrics: step, tokens, lr, fvu, l0, dead_fraction."""
    selection_dtype: str | None = None
    """TopK family: precision the latents were chosen in (`float32` / `bfloat16`); else None."""

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict of the figures (no tensors)."""
        cfg = self.sae.config
        return {
            "out": None if self.out is None else str(self.out),
            "arch": cfg.arch,
            "d_in": cfg.d_in,
            "d_sae": cfg.d_sae,
            "k": cfg.k,
            "steps": self.steps,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "fvu": self.fvu,
            "l0": self.l0,
            "dead_fraction": self.dead_fraction,
            "dense_fraction": self.dense_fraction,
            "input_scale": self.input_scale,
            "world_size": self.world_size,
            "resumed_from_step": self.resumed_from_step,
            "heldout": self.heldout,
            "selection_dtype": self.selection_dtype,
        }


# ---- data -------------------------------------------------------------------------------


class _Data:
    """Deterministic stream of this rank's share of each global batch, epoch after epoch.

    Position = (epoch, batch index in the epoch); `skip_to` replays a resumed run's position.
    """

    def __init__(
        self,
        source: Any,
        *,
        batch_size: int,
        seed: int,
        info: dist_utils.DistInfo,
        device: torch.device,
    ) -> None:
        from polysemy.activations.store import ActivationStore

        self.info = info
        self.device = device
        self.seed = seed
        self.global_batch = batch_size
        if batch_size % info.world_size:
            raise ValueError(
                f"batch_size must be divisible by the {info.world_size} data-parallel ranks; "
                f"got {batch_size}"
            )
        self.local_batch = batch_size // info.world_size
        self.store: ActivationStore | None = None
        self.tensor: Tensor | None = None
        if isinstance(source, Tensor):
            if source.ndim != 2:
                raise ValueError(
                    f"activations must be 2-D [rows, d_in]; got shape {list(source.shape)}"
                )
            if not source.is_floating_point():
                raise TypeError(f"activations must be floating point; got {source.dtype}")
            self.tensor = source
            self.rows, self.d_in = source.shape
            self.name = f"tensor[{self.rows}x{self.d_in}]"
            self.batches_per_epoch = self.rows // batch_size
            if self.batches_per_epoch == 0:
                raise ValueError(
                    f"batch_size {batch_size} is larger than the {self.rows} rows given"
                )
        else:
            self.store = source if isinstance(source, ActivationStore) else ActivationStore(source)
            self.rows, self.d_in = self.store.split_rows("train"), self.store.d_in
            self.name = str(self.store.path)
            smallest = self.rows // info.world_size
            self.batches_per_epoch = smallest // self.local_batch
            if self.batches_per_epoch == 0:
                raise ValueError(
                    f"batch_size {batch_size} is larger than the {self.rows} training rows of "
                    f"{self.name!r}" + (f" ({info.world_size} ranks)" if info.enabled else "")
                )
        self.epoch = 0
        self.index = 0
        self._it: Iterator[Tensor] | None = None

    def check_finite(self) -> None:
        from polysemy.activations.store import require_finite

        require_finite(self.tensor if self.tensor is not None else self.store)  # type: ignore[arg-type]

    def sample(self, rows: int) -> Tensor:
        """The same rows on every rank: a seeded sample for the input scale and b_dec."""
        if self.tensor is not None:
            g = torch.Generator().manual_seed(self.seed + 7919)
            idx = torch.randperm(self.rows, generator=g)[:rows]
            return self.tensor[idx.to(self.tensor.device)].to(self.device, torch.float32)
        assert self.store is not None
        n = min(rows, self.rows)
        parts, got = [], 0
        it = self.store.batches(min(n, 4096), seed=self.seed + 7919, drop_last=False)
        for b in it:
            parts.append(b)
            got += len(b)
            if got >= n:
                break
        return torch.cat(parts)[:n].to(self.device)

    def _epoch_iter(self, epoch: int) -> Iterator[Tensor]:
        info, seed = self.info, self.seed + 1_000_003 * epoch
        if self.tensor is not None:
            g = torch.Generator().manual_seed(seed)
            perm = torch.randperm(self.rows, generator=g)
            lo = info.rank * self.local_batch
            for b in range(self.batches_per_epoch):
                # This rank's slice of global batch b: the same rows a 1-process run uses.
                idx = perm[
                    b * self.global_batch + lo : b * self.global_batch + lo + self.local_batch
                ]
                yield self.tensor[idx.to(self.tensor.device)].to(self.device, torch.float32)
            return
        assert self.store is not None
        yield from self.store.batches(
            self.local_batch,
            seed=seed,
            rank=info.rank,
            world_size=info.world_size,
            device=self.device,
        )

    def skip_to(self, epoch: int, index: int) -> None:
        self.epoch, self.index = epoch, 0
        self._it = self._epoch_iter(epoch)
        for _ in range(index):
            next(self._it)
            self.index += 1

    def next(self) -> Tensor:
        if self._it is None:
            self._it = self._epoch_iter(self.epoch)
        if self.index >= self.batches_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
            self._it = self._epoch_iter(self.epoch)
        batch = next(self._it)
        self.index += 1
        return batch


# ---- optimizer --------------------------------------------------------------------------


class Signum(torch.optim.Optimizer):
    """Sign of the momentum (as sparsify's default optimizer): p -= lr * sign(m)."""

    def __init__(self, params: Any, lr: float, momentum: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            grads = [p.grad for p in params]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads, alpha=1 - group["momentum"])
            signs = torch._foreach_sign(bufs)
            torch._foreach_add_(params, signs, alpha=-group["lr"])


class ScheduleFreeSignum(torch.optim.Optimizer):
    """Sign steps with schedule-free averaging (Defazio et al. 2024, "The Road Less
    Scheduled"), the optimizer sparsify trains with by default.

    The parameter holds the interpolation `y = (1 - momentum) z + momentum x` where gradients
    are taken; the state keeps the base iterate `z`, and the average `x` is recovered from y
    each step (as the `schedulefree` wrapper does):

        x = (y - (1 - momentum) z) / momentum;  z <- z - lr * sign(grad(y))
        x <- (1 - c) x + c z,  c = lr^2 / (sum of lr^2 so far);  y <- (1 - momentum) z + momentum x

    Constraints applied to the parameters between steps (unit-norm decoder rows) therefore
    land in x scaled by 1 / momentum (~1.05). Keeping x and recovering z instead scaled every
    such correction by 1 / (1 - momentum) = 20 into z: on MiniLM layer 3 (200k tokens) that
    cost held-out FVU 0.263 against 0.20 and left 9% of latents dead (docs/sae.md).

    Evaluate (and save) `x`: `averaged(p)` gives it. No learning-rate decay is needed.
    """

    def __init__(self, params: Any, lr: float, momentum: float = 0.95) -> None:
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"momentum must be in (0, 1); got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, beta = group["lr"], group["momentum"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            zs = []
            for p in params:
                state = self.state[p]
                if "z" not in state:
                    state["z"] = p.detach().clone()
                    state["weight_sum"] = torch.zeros((), dtype=torch.float64)
                zs.append(state["z"])
            weight_sum = self.state[params[0]]["weight_sum"]
            weight_sum.add_(lr * lr)
            c = (lr * lr) / float(weight_sum) if float(weight_sum) > 0 else 1.0
            for p in params[1:]:
                self.state[p]["weight_sum"].copy_(weight_sum)
            signs = torch._foreach_sign([p.grad for p in params])
            # In place on the parameters: y -> x, z -> z - lr sign(g), x -> lerp to z, then y.
            torch._foreach_lerp_(params, zs, 1.0 - 1.0 / beta)  # (y - (1 - beta) z) / beta
            torch._foreach_add_(zs, signs, alpha=-lr)
            torch._foreach_lerp_(params, zs, c)
            torch._foreach_lerp_(params, zs, 1.0 - beta)

    def averaged(self, p: Tensor) -> Tensor:
        """The averaged iterate `x` of parameter `p` (itself before the first step)."""
        state = self.state.get(p, {})
        if "z" not in state:
            return p.detach()
        beta = self.param_groups[0]["momentum"]
        return torch.lerp(p.detach(), state["z"], 1.0 - 1.0 / beta)


def _make_optimizer(sae: SparseAutoencoder, train: TrainConfig) -> torch.optim.Optimizer:
    params = list(sae.parameters())
    if train.optimizer == "schedule-free-signum":
        return ScheduleFreeSignum(params, lr=train.lr)
    if train.optimizer == "signum":
        return Signum(params, lr=train.lr, momentum=train.betas[0])
    # foreach, not fused: the fused CPU kernel was ~3x faster on the optimizer step, but a run
    # resumed from saved moments did not reproduce the uninterrupted run bit for bit.
    return torch.optim.Adam(params, lr=train.lr, betas=train.betas, foreach=True)


def _optimizer_tensors(opt: torch.optim.Optimizer, sae: SparseAutoencoder) -> dict[str, Tensor]:
    out = {}
    for name, p in sae.named_parameters():
        for key, value in opt.state.get(p, {}).items():
            if isinstance(value, Tensor):
                out[f"optim.{name}.{key}"] = value
    return out


def _load_optimizer_tensors(
    opt: torch.optim.Optimizer, sae: SparseAutoencoder, tensors: dict[str, Tensor]
) -> None:
    for name, p in sae.named_parameters():
        prefix = f"optim.{name}."
        state = {
            # clone: fresh, aligned storage like an uninterrupted run's
            k[len(prefix) :]: v.to(p.device).clone()
            for k, v in tensors.items()
            if k.startswith(prefix)
        }
        if state:
            opt.state[p] = state


# ---- training ---------------------------------------------------------------------------


@dataclass
class _Counters:
    """Per-latent bookkeeping, all tensors so it round-trips through safetensors."""

    tokens_since_fired: Tensor  # [d_sae] int64
    window_fires: Tensor  # [d_sae] int64: rows fired on in the current dense window
    window_rows: Tensor  # [] int64
    last_dense_fraction: Tensor  # [] float64

    @classmethod
    def zeros(cls, d_sae: int, device: torch.device) -> _Counters:
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
    def from_tensors(cls, tensors: dict[str, Tensor], device: torch.device) -> _Counters:
        return cls(
            **{f.name: tensors[f"counters.{f.name}"].to(device) for f in dataclasses.fields(cls)}
        )


def _source_description(data: _Data, source: dict[str, Any] | None) -> dict[str, Any]:
    desc: dict[str, Any] = {}
    if data.store is not None:
        desc.update(data.store.source or {})
        desc["acts"] = str(data.store.path)
    else:
        desc["acts"] = data.name
    if source:
        desc.update(source)
    return desc


def _config_dict(config: SAEConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _train_dict(train: TrainConfig) -> dict[str, Any]:
    d = dataclasses.asdict(train)
    d["betas"] = list(train.betas)
    return d


_RESUME_IGNORED = {"checkpoint_every", "log_every"}


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
    evaluate_heldout: bool = True,
) -> TrainResult:
    """Train an SAE of `config` on `acts` for `train.tokens` rows; save it to `out`.

    `acts`: an `ActivationStore`, a store folder / `.npy` / `.safetensors` path, or a 2-D
    float tensor. With `resume`, an interrupted run's `<out>/state/` is continued (to the same
    final weights as an uninterrupted run); with no state there, training starts fresh.
    Under torchrun (WORLD_SIZE > 1) this trains data-parallel; only rank 0 writes.

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
                f"--out {str(out_path)!r} holds an interrupted training state; pass --resume to "
                "continue it or --force to start over"
            )
        if not has_state:
            runfolder.check_out(out_path, runfolder.SAE, force=force)
    resuming = resume and has_state

    data = _Data(acts, batch_size=train.batch_size, seed=train.seed, info=info, device=dev)
    if data.d_in != config.d_in:
        raise ValueError(
            f"d_in mismatch: the SAE has d_in={config.d_in} but the activations {data.name!r} "
            f"have width {data.d_in}"
        )
    data.check_finite()

    generator = torch.Generator().manual_seed(train.seed)
    from polysemy.sae import build_sae

    sae = build_sae(config, generator=generator).to(dev)
    sae.train()
    sae.selection_dtype = train.resolved_selection_dtype(dev)
    opt = _make_optimizer(sae, train)
    counters = _Counters.zeros(config.d_sae, dev)
    start_step, history = 0, list[dict[str, float]]()
    if resuming:
        assert state_dir is not None
        start_step, scale, variance, history = _load_state(
            state_dir, sae, opt, counters, data, config, train, dev
        )
    else:
        sample = data.sample(train.init_sample_rows)
        scale = 1.0
        if train.scale_inputs:
            mean_sq = sample.double().pow(2).sum(-1).mean().item()
            if mean_sq <= 0:
                raise ValueError(f"activations {data.name!r} are all zero; nothing to learn")
            scale = math.sqrt(config.d_in / mean_sq)
        sample = sample * scale
        # Total variance of the scaled data: the FVU denominator.
        variance = float(sample.double().var(dim=0, unbiased=False).sum().item())
        if variance <= 0:
            variance = 1.0
        if train.init_b_dec:
            with torch.no_grad():
                sae.b_dec.copy_(geometric_median(sample))
    sae.reconstruction_denominator = variance if sae.normalized_reconstruction else 1.0

    steps = train.steps
    dead_window = train.effective_dead_window
    grad_clip = (
        train.grad_clip if train.grad_clip is not None else (1.0 if config.arch == "relu" else None)
    )
    use_dead_mask = config.arch in TOPK_FAMILY
    params = list(sae.parameters())
    global_batch = train.batch_size

    # Metric accumulators (tensors: no per-step host sync).
    sq_err = torch.zeros((), dtype=torch.float64, device=dev)
    active = torch.zeros((), dtype=torch.float64, device=dev)
    window_steps = 0
    last = {"fvu": float("nan"), "l0": float("nan"), "dead_fraction": 0.0}
    if history:  # a resumed run reports the last logged window until it logs its own
        last = {key: float(history[-1][key]) for key in last}
    bar = progress_bar(
        steps * global_batch,
        desc=f"sae train {config.arch}",
        unit="tok",
        unit_scale=True,
        enabled=progress and info.is_main,
        initial=start_step * global_batch,
    )
    t0 = time.perf_counter()
    step = start_step
    with bar:
        for step in range(start_step, steps):
            x = data.next()
            if scale != 1.0:
                x = x * scale
            lr = train.lr_at(step)
            for group in opt.param_groups:
                group["lr"] = lr
            dead_mask = counters.tokens_since_fired >= dead_window if use_dead_mask else None
            result = sae(x, dead_mask=dead_mask, sparsity_scale=train.sparsity_scale_at(step))
            loss = sum(result.losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            fire = result.fire_counts
            min_pos = result.stats.get("min_positive")
            if info.enabled:
                reduce: list[Tensor] = [p.grad for p in params if p.grad is not None]
                extra = [fire] + ([min_pos.reshape(1)] if min_pos is not None else [])
                dist_utils.all_reduce_(
                    reduce + extra,
                    info,
                    average=[True] * len(reduce)
                    + [False]
                    + ([True] if min_pos is not None else []),
                )
                if min_pos is not None:
                    min_pos = extra[1].reshape(())
            sae.remove_parallel_decoder_grad_()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
            opt.step()
            sae.post_step_()
            if isinstance(sae, BatchTopKSAE) and min_pos is not None:
                sae.update_threshold_(min_pos)
            # Bookkeeping, all on-device.
            counters.tokens_since_fired.add_(global_batch).masked_fill_(fire > 0, 0)
            counters.window_fires.add_(fire)
            counters.window_rows.add_(global_batch)
            with torch.no_grad():
                # The reconstruction term is sum ||x - x_hat||^2 / (rows * denominator).
                recon = result.losses.get("fvu", result.losses.get("mse"))
                if recon is None:
                    sq_err.add_((result.x_hat - x).pow(2).sum().double())
                else:
                    sq_err.add_(
                        recon.detach().double() * (x.shape[0] * sae.reconstruction_denominator)
                    )
                active.add_(fire.sum().double())
            window_steps += 1
            if int(counters.window_rows) >= dead_window:
                frac = counters.window_fires.double() / counters.window_rows.double()
                counters.last_dense_fraction.copy_((frac > train.dense_threshold).double().mean())
                counters.window_fires.zero_()
                counters.window_rows.zero_()
            done = step + 1
            if done % train.log_every == 0 or done == steps:
                rows_in_window = window_steps * x.shape[0]
                # Local rows only: FVU and L0 are per-rank estimates (the same in expectation).
                last = {
                    "fvu": float(sq_err) / (rows_in_window * variance),
                    "l0": float(active) / (window_steps * global_batch),
                    "dead_fraction": float(
                        (counters.tokens_since_fired >= dead_window).double().mean()
                    ),
                }
                history.append({"step": done, "tokens": done * global_batch, "lr": lr, **last})
                sq_err.zero_()
                active.zero_()
                window_steps = 0
                bar.set_postfix(
                    fvu=f"{last['fvu']:.3f}",
                    l0=f"{last['l0']:.1f}",
                    dead=f"{last['dead_fraction']:.2f}",
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
                    _write_state_files(
                        tmp, sae, opt, counters, data, train, done, scale, variance, history
                    )
                logger.info("checkpoint at step %d in %s", done, state_dir)
    seconds = time.perf_counter() - t0
    trained_steps = max(0, steps - start_step)

    selection = _dtype_name(sae.selection_dtype) if config.arch in TOPK_FAMILY else None
    sae.release_scratch_()
    final = copy.deepcopy(sae).eval()
    final.selection_dtype = None
    if isinstance(opt, ScheduleFreeSignum):
        with torch.no_grad():  # evaluate the schedule-free average, not the interpolation
            for p_final, p in zip(final.parameters(), sae.parameters(), strict=True):
                p_final.copy_(opt.averaged(p))
            t = getattr(final, "threshold", None)
            if isinstance(t, torch.nn.Parameter):
                t.clamp_min_(0.0)
    final.fold_input_scale_(scale)
    dead_fraction = float((counters.tokens_since_fired >= dead_window).double().mean())
    heldout = None
    if (
        evaluate_heldout
        and info.is_main
        and data.store is not None
        and data.store.split_rows("heldout") > 0
    ):
        heldout = _evaluate_heldout(final, data.store, dev)
    result_obj = TrainResult(
        sae=final,
        out=out_path,
        steps=steps,
        tokens=steps * global_batch,
        seconds=seconds,
        tokens_per_s=trained_steps * global_batch / seconds if seconds > 0 else 0.0,
        fvu=last["fvu"],
        l0=last["l0"],
        dead_fraction=dead_fraction,
        dense_fraction=float(counters.last_dense_fraction),
        input_scale=scale,
        world_size=info.world_size,
        resumed_from_step=start_step,
        heldout=heldout,
        history=history,
        selection_dtype=selection,
    )
    if out_path is not None and info.is_main:
        training = {
            **_train_dict(train),
            "steps": steps,
            "tokens_trained": steps * global_batch,
            "input_scale": scale,
            "world_size": info.world_size,
            "final": {
                k: v
                for k, v in result_obj.summary().items()
                if k in ("fvu", "l0", "dead_fraction", "dense_fraction")
            },
            "heldout": heldout,
        }
        with runfolder.atomic_folder(out_path) as tmp:
            write_checkpoint(
                tmp,
                final,
                source=_source_description(data, source),
                training=training,
                input_scale=scale,
            )
            _write_state_files(
                tmp / STATE_DIR,
                sae,
                opt,
                counters,
                data,
                train,
                steps,
                scale,
                variance,
                history,
            )
    dist_utils.shutdown(info)
    return result_obj


def _evaluate_heldout(sae: SparseAutoencoder, store: Any, device: torch.device) -> dict[str, float]:
    from polysemy.analysis.reconstruction import evaluate

    r = evaluate(sae, store, split="heldout", device=device)
    return {
        key: float(getattr(r, key))
        for key in (
            "fvu",
            "mse",
            "explained_variance",
            "cosine",
            "l0",
            "dead_fraction",
            "dense_fraction",
            "l2_ratio",
        )
    }


# ---- resumable state --------------------------------------------------------------------


def _dtype_name(dtype: torch.dtype | None) -> str:
    """`torch.bfloat16` -> "bfloat16" (None: float32, the input's dtype)."""
    return str(dtype or torch.float32).removeprefix("torch.")


def _state_json(
    data: _Data,
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
        "sae": _config_dict(sae.config),
        "train": _train_dict(train),
        # What `selection_dtype` resolved to, so a resume on another CPU keeps it.
        "selection_dtype_resolved": _dtype_name(sae.selection_dtype),
        "history": history,
    }


def _write_state_files(
    folder: Path,
    sae: SparseAutoencoder,
    opt: torch.optim.Optimizer,
    counters: _Counters,
    data: _Data,
    train: TrainConfig,
    step: int,
    scale: float,
    variance: float,
    history: list[dict[str, float]],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in sae.state_dict().items()}
    tensors.update(_optimizer_tensors(opt, sae))
    tensors.update(counters.tensors())
    runfolder.atomic_save_safetensors(folder / STATE_TENSORS, tensors)
    runfolder.atomic_write_json(
        folder / STATE_JSON, _state_json(data, sae, train, step, scale, variance, history)
    )


_STATE_KEYS = ("step", "epoch", "index", "input_scale", "variance", "history")
"""Keys a resumable state.json must hold besides its format and configurations."""


def _load_state(
    state_dir: Path,
    sae: SparseAutoencoder,
    opt: torch.optim.Optimizer,
    counters: _Counters,
    data: _Data,
    config: SAEConfig,
    train: TrainConfig,
    device: torch.device,
) -> tuple[int, float, float, list[dict[str, float]]]:
    try:
        state = json.loads((state_dir / STATE_JSON).read_text())
    except ValueError as exc:
        raise ValueError(f"{str(state_dir / STATE_JSON)!r} is not valid JSON: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{str(state_dir)!r} must hold format {STATE_FORMAT!r}; got {got!r}")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"{str(state_dir / STATE_JSON)!r} lacks {'/'.join(missing)}")
    if state.get("sae") != _config_dict(config):
        raise ValueError(
            f"cannot resume {str(state_dir)!r}: it was trained with SAE config {state.get('sae')}, "
            f"not {_config_dict(config)}"
        )
    saved_train = {k: v for k, v in state.get("train", {}).items() if k not in _RESUME_IGNORED}
    given_train = {k: v for k, v in _train_dict(train).items() if k not in _RESUME_IGNORED}
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
    _load_optimizer_tensors(opt, sae, tensors)
    loaded = _Counters.from_tensors(tensors, device)
    for f in dataclasses.fields(counters):
        getattr(counters, f.name).copy_(getattr(loaded, f.name))
    data.skip_to(int(state["epoch"]), int(state["index"]))
    resolved = state.get("selection_dtype_resolved")
    if resolved in ("float32", "bfloat16"):
        sae.selection_dtype = getattr(torch, resolved)
    logger.info("resuming from step %d", state["step"])
    return (
        int(state["step"]),
        float(state["input_scale"]),
        float(state["variance"]),
        list(state["history"]),
    )
