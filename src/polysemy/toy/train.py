"""Train a whole sweep of toy models at once, fast.

All instances and all `best_of` seeds live in one batched tensor (instance index
`k * n_instances + i` for seed k of configuration i). The hot loop never calls autograd: the
backward pass is derived by hand and written as batched matmuls (`bmm`/`baddbmm` into
preallocated buffers), the optimizer is Adam over one flat parameter buffer updated in place,
the data are drawn in place (see `polysemy.toy.data.FeatureSampler`, which yields -x), and
nothing synchronizes with Python (no `.item()`) until the end.

Gradients, for one instance with c_f = 2 I_f / (batch * n_features), x = -t:

    h_pre = x W^T,  h = h_pre (or ReLU(h_pre) for relu-hidden / abs)
    out   = h W2 + b                (W2 = W, or W_out^T for abs)
    r     = (y - target) * [out > 0]   (no mask for linear)
    dL/db  = c * sum_batch r
    dL/dW2 = (h^T r) * c            (column scaling by c commutes with the matmul)
    dh     = r (W2 * c)^T, masked by [h_pre > 0] for relu-hidden / abs
    dL/dW1 = dh^T x = -(dh^T t)     (tied models: dL/dW = dL/dW1 + dL/dW2)

`_loss_and_grads` is checked against autograd in the tests.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from polysemy.progress import progress_bar
from polysemy.toy.data import FeatureSampler
from polysemy.toy.model import ToyConfig, ToyParams, init_params, toy_loss

log = logging.getLogger(__name__)

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8
# Seed offset of the evaluation stream, so eval data never repeat training data.
_EVAL_SEED_OFFSET = 0x5EED


@dataclass(frozen=True)
class ToyRun:
    """A trained sweep: one model per instance (the best of `config.best_of` seeds)."""

    config: ToyConfig
    """The configuration that produced this run."""
    W: Float[Tensor, "n_instances n_hidden n_features"]
    """Feature directions (for `abs`: the first layer W1)."""
    b_final: Float[Tensor, "n_instances n_features"]
    """Output bias."""
    loss: Float[Tensor, " n_instances"]
    """Final loss per instance on `config.eval_samples` fresh samples."""
    W_out: Float[Tensor, "n_instances n_features n_hidden"] | None = None
    """Untied second layer of the `abs` model, else None."""
    snapshots: list[tuple[int, Tensor]] = field(default_factory=list)
    """(step, W [n_instances, n_hidden, n_features]) pairs when `snapshot_every` is set."""
    seed_loss: Float[Tensor, "n_instances best_of"] | None = None
    """Final loss of every seed; the run keeps the argmin per instance."""
    chosen_seed: Int[Tensor, " n_instances"] | None = None
    """Index of the kept seed per instance."""
    seconds: float = 0.0
    """Wall-clock training time."""

    @property
    def params(self) -> ToyParams:
        """The weights as a `ToyParams` (for `toy_forward` / `toy_loss`)."""
        return ToyParams(W=self.W, b_final=self.b_final, W_out=self.W_out)


def lr_at(config: ToyConfig, step: int) -> float:
    """Learning rate at 0-based `step`: linear warm-up, then constant / linear / cosine."""
    warm = min(config.warmup_steps, config.steps)
    if step < warm:
        return config.lr * (step + 1) / warm
    span = max(config.steps - warm, 1)
    q = (step - warm) / span  # in [0, 1)
    if config.lr_schedule == "linear":
        return config.lr * (1.0 - q)
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * q))
    return config.lr


class _Engine:
    """Buffers and the fused step for `n` stacked models (instances x seeds)."""

    def __init__(
        self,
        config: ToyConfig,
        params: ToyParams,
        importance: Tensor,
        sampler: FeatureSampler,
    ) -> None:
        self.config = config
        self.model = config.model
        self.sampler = sampler
        W = params.W
        n, m, f = W.shape
        B = config.batch_size
        device, dtype = W.device, W.dtype
        self.n = n
        # One flat buffer for every parameter (and one for every gradient), so the optimizer
        # update is a handful of in-place ops over contiguous memory.
        n_w = n * m * f
        n_wo = n * f * m if self.model == "abs" else 0
        total = n_w + n_wo + n * f
        self.flat = torch.empty(total, device=device, dtype=dtype)
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self._denom = torch.empty_like(self.flat)
        self.n_decay = n_w + n_wo  # weight decay applies to weights, not to the bias
        self.W = self.flat[:n_w].view(n, m, f)
        self.gW = self.grad[:n_w].view(n, m, f)
        self.W_out: Tensor | None = None
        self.gW_out: Tensor | None = None
        if self.model == "abs":
            assert params.W_out is not None
            self.W_out = self.flat[n_w : n_w + n_wo].view(n, f, m)
            self.gW_out = self.grad[n_w : n_w + n_wo].view(n, f, m)
            self.W_out.copy_(params.W_out)
        self.b = self.flat[n_w + n_wo :].view(n, f)
        self.gb = self.grad[n_w + n_wo :].view(n, f)
        self.W.copy_(W)
        self.b.copy_(params.b_final)
        # c_f = 2 I_f / (B f): d(mean_{b,f} I_f e^2)/de = c_f e.
        self.c = (importance * (2.0 / (B * f))).to(device, dtype)  # (n, f)
        self.c_row = self.c.view(n, 1, f)
        # Preallocated activations.
        self.t = torch.empty(n, B, f, device=device, dtype=dtype)  # -x
        self.out = torch.empty(n, B, f, device=device, dtype=dtype)
        self.r = self.out if self.model == "linear" else torch.empty_like(self.out)
        self.h = torch.empty(n, B, m, device=device, dtype=dtype)
        self.dh = torch.empty(n, B, m, device=device, dtype=dtype)
        self.Wneg = torch.empty(n, m, f, device=device, dtype=dtype)
        self.Wc = torch.empty(n, f, m, device=device, dtype=dtype)  # (W2 * c)^T
        self.b_row = self.b.view(n, 1, f)
        self.step_count = 0

    def params(self) -> ToyParams:
        return ToyParams(
            W=self.W.clone(),
            b_final=self.b.clone(),
            W_out=None if self.W_out is None else self.W_out.clone(),
        )

    def forward_backward(self) -> None:
        """Draw a batch and write the gradient of the summed loss into `self.grad`."""
        self.sampler.sample_neg_(self.t)
        _grads_into(self, self.t)

    def adam_step(self, lr: float) -> None:
        cfg = self.config
        self.step_count += 1
        k = self.step_count
        g, p = self.grad, self.flat
        wd = cfg.weight_decay
        if wd and cfg.optimizer == "adam":
            g[: self.n_decay].add_(p[: self.n_decay], alpha=wd)
        self.exp_avg.lerp_(g, 1.0 - _BETA1)
        self.exp_avg_sq.mul_(_BETA2).addcmul_(g, g, value=1.0 - _BETA2)
        bc1 = 1.0 - _BETA1**k
        bc2 = 1.0 - _BETA2**k
        torch.sqrt(self.exp_avg_sq, out=self._denom)
        self._denom.div_(math.sqrt(bc2)).add_(_EPS)
        if wd and cfg.optimizer == "adamw":
            p[: self.n_decay].mul_(1.0 - lr * wd)
        p.addcdiv_(self.exp_avg, self._denom, value=-lr / bc1)


def _grads_into(e: _Engine, t: Tensor) -> None:
    """Gradient of sum_i loss_i for the batch -x = `t`, written into e.gW, e.gW_out, e.gb."""
    model = e.model
    relu_hidden = model in ("relu-hidden", "abs")
    # h_pre = x W^T = t (-W)^T: negate the small W rather than the big t.
    torch.neg(e.W, out=e.Wneg)
    h = torch.bmm(t, e.Wneg.transpose(1, 2), out=e.h)  # (n, B, m)
    if relu_hidden:
        torch.relu_(h)
    if model == "abs":
        assert e.W_out is not None
        W2 = e.W_out.transpose(1, 2)  # (n, m, f)
    else:
        W2 = e.W
    out = torch.baddbmm(e.b_row, h, W2, out=e.out)  # (n, B, f)
    # r = (y - target) * [out > 0]; target x = -t, or |x| = |t| for abs.
    if model == "linear":
        r = out.add_(t)
    elif model == "abs":
        r = torch.abs(t, out=e.r)
        torch.sub(out, r, out=r)
        r = torch.ops.aten.threshold_backward.grad_input(r, out, 0.0, grad_input=r)
    else:
        r = torch.add(out, t, out=e.r)
        r = torch.ops.aten.threshold_backward.grad_input(r, out, 0.0, grad_input=r)
    # Bias and second-layer gradients: column scaling by c after the reduction.
    torch.sum(r, dim=1, out=e.gb)
    e.gb.mul_(e.c)
    if model == "abs":
        assert e.gW_out is not None and e.W_out is not None
        torch.bmm(r.transpose(1, 2), h, out=e.gW_out)  # (n, f, m)
        e.gW_out.mul_(e.c.unsqueeze(-1))
        torch.mul(e.W_out, e.c.unsqueeze(-1), out=e.Wc)  # (n, f, m)
        gW1 = e.gW
        beta = 0.0
    else:
        torch.bmm(h.transpose(1, 2), r, out=e.gW)  # (n, m, f)
        e.gW.mul_(e.c_row)
        torch.mul(e.W, e.c_row, out=e.Wc.view(e.W.shape))
        gW1 = e.gW
        beta = 1.0
    Wc = e.Wc if model == "abs" else e.Wc.view(e.W.shape).transpose(1, 2)  # (n, f, m)
    dh = torch.bmm(r, Wc, out=e.dh)  # (n, B, m)
    if relu_hidden:
        dh = torch.ops.aten.threshold_backward.grad_input(dh, h, 0.0, grad_input=dh)
    # dW1 = dh^T x = -(dh^T t); tied models add it to dW2.
    gW1.baddbmm_(dh.transpose(1, 2), t, beta=beta, alpha=-1.0)


def _loss_and_grads(
    config: ToyConfig, params: ToyParams, x: Float[Tensor, "n_instances batch n_features"]
) -> tuple[Tensor, ToyParams]:
    """(per-instance loss, gradients) of the summed loss at `params` for the batch `x`.

    Runs the same hand-derived backward as training (for testing against autograd).
    """
    importance = torch.tensor(config.importance, dtype=x.dtype)
    cfg = _replace_batch(config, x.shape[1])
    sampler = FeatureSampler(config.sparsity, config.n_features, signed=config.model == "abs")
    e = _Engine(cfg, params, importance, sampler)
    t = (-x).contiguous()
    _grads_into(e, t)
    loss = toy_loss(config.model, params, x, importance)
    grads = ToyParams(
        W=e.gW.clone(),
        b_final=e.gb.clone(),
        W_out=None if e.gW_out is None else e.gW_out.clone(),
    )
    return loss, grads


def _replace_batch(config: ToyConfig, batch_size: int) -> ToyConfig:
    import dataclasses

    return dataclasses.replace(config, batch_size=batch_size)


def evaluate_loss(
    config: ToyConfig,
    params: ToyParams,
    *,
    n_samples: int | None = None,
    seed: int | None = None,
    repeat: int = 1,
    chunk: int = 1024,
) -> Float[Tensor, " n_instances"]:
    """Mean loss per instance on fresh samples (same samples for every copy when `repeat`).

    `params` may stack `repeat` copies of the config's instances (seed-major); every copy
    sees the same data, so their losses compare without sampling noise between them.
    """
    n_samples = config.eval_samples if n_samples is None else n_samples
    seed = config.seed + _EVAL_SEED_OFFSET if seed is None else seed
    device, dtype = params.W.device, params.W.dtype
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    sampler = FeatureSampler(
        config.sparsity,
        config.n_features,
        kind=config.feature_kind,
        signed=config.model == "abs",
        generator=gen,
        device=device,
        dtype=dtype,
    )
    importance = torch.tensor(config.importance, dtype=dtype, device=device).repeat(repeat, 1)
    total = torch.zeros(params.W.shape[0], dtype=torch.float64, device=device)
    done = 0
    with torch.no_grad():
        while done < n_samples:
            b = min(chunk, n_samples - done)
            x = sampler.sample(b).repeat(repeat, 1, 1)  # (repeat * I, b, f)
            total += toy_loss(config.model, params, x, importance).double() * b
            done += b
    return (total / n_samples).to(dtype)


def train_toy(
    config: ToyConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> ToyRun:
    """Train every instance of `config` (x `best_of` seeds) at once; keep the best seed each.

    Deterministic for a given config, seed and device.
    """
    device = torch.device(device)
    started = time.perf_counter()
    n_inst, K = config.n_instances, config.best_of
    n = n_inst * K
    init_gen = torch.Generator()  # on CPU, so initial weights agree across devices
    init_gen.manual_seed(config.seed)
    params = init_params(
        config.model,
        n,
        config.n_features,
        config.n_hidden,
        generator=init_gen,
        device=device,
    )
    data_gen = torch.Generator(device=device)
    data_gen.manual_seed(config.seed + 1)
    sparsity = list(config.sparsity) * K  # seed-major: index k * n_inst + i
    importance = torch.tensor(config.importance, dtype=torch.float32).repeat(K, 1)
    sampler = FeatureSampler(
        sparsity,
        config.n_features,
        kind=config.feature_kind,
        signed=config.model == "abs",
        generator=data_gen,
        device=device,
    )
    engine = _Engine(config, params, importance, sampler)
    every = config.snapshot_every
    snaps: list[tuple[int, Tensor]] = [(0, engine.W.clone())] if every else []
    update_every = max(1, min(100, config.steps // 100))
    with progress_bar(
        config.steps, desc=f"toy {config.model} x{n}", unit="step", enabled=progress
    ) as bar:
        for step in range(config.steps):
            engine.forward_backward()
            engine.adam_step(lr_at(config, step))
            if every and (step + 1) % every == 0 and step + 1 < config.steps:
                snaps.append((step + 1, engine.W.clone()))
            if (step + 1) % update_every == 0:
                bar.update(update_every)
    if every:
        snaps.append((config.steps, engine.W.clone()))
    final = engine.params()
    seed_loss = evaluate_loss(config, final, repeat=K).view(K, n_inst)  # (K, n_inst)
    chosen = torch.nan_to_num(seed_loss, nan=math.inf).argmin(dim=0)  # (n_inst,)
    pick = chosen * n_inst + torch.arange(n_inst, device=chosen.device)  # flat index of each winner
    loss = seed_loss.gather(0, chosen.view(1, -1)).view(n_inst)
    if not bool(torch.isfinite(loss).all()):
        log.warning("some instances ended with a non-finite loss (lr too high?)")
    run = ToyRun(
        config=config,
        W=final.W[pick].cpu(),
        b_final=final.b_final[pick].cpu(),
        W_out=None if final.W_out is None else final.W_out[pick].cpu(),
        loss=loss.cpu(),
        snapshots=[(s, w[pick].cpu()) for s, w in snaps],
        seed_loss=seed_loss.t().contiguous().cpu(),
        chosen_seed=chosen.cpu(),
        seconds=time.perf_counter() - started,
    )
    log.info("trained %d toy models (%d steps) in %.1f s", n, config.steps, run.seconds)
    return run
