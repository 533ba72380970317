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
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from polysemy.progress import progress_bar
from polysemy.toy.data import FeatureSampler, Layout
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
    """(step, W [n_instances, n_hidden, n_features]) pairs when `snapshot_every` or
    `snapshots` is set."""
    snapshot_b_final: list[Tensor] = field(default_factory=list)
    """b_final [n_instances, n_features] at each snapshot, in the order of `snapshots`."""
    seed_loss: Float[Tensor, "n_instances best_of"] | None = None
    """Final loss of every seed; the run keeps the argmin per instance."""
    chosen_seed: Int[Tensor, " n_instances"] | None = None
    """Index of the kept seed per instance."""
    seconds: float = 0.0
    """Wall-clock training time."""
    loss_history: list[tuple[int, Tensor]] = field(default_factory=list)
    """(step, loss [n_instances]) every `history_every(config)` steps, on one fixed batch of
    `HISTORY_SAMPLES` fresh inputs, when snapshots are taken (the kept seed's loss)."""

    @property
    def params(self) -> ToyParams:
        """The weights as a `ToyParams` (for `toy_forward` / `toy_loss`)."""
        return ToyParams(W=self.W, b_final=self.b_final, W_out=self.W_out)


def snapshot_steps(config: ToyConfig) -> list[int]:
    """The steps (0 = before training, `config.steps` = the end) at which W is kept.

    `snapshots=N`: N steps log-spaced from 1 to the end, the first replaced by 0 (log spacing
    puts most snapshots early, where the weights move most); rounding may merge a few on
    short runs. `snapshot_every=N`: 0, every N steps and the end. Both: the union.
    """
    import numpy as np

    steps: set[int] = set()
    if config.snapshot_every:
        steps.update(range(0, config.steps, config.snapshot_every))
        steps.add(config.steps)
    if config.snapshots:
        steps.update((0, config.steps))
        if config.snapshots >= 3:
            grid = np.geomspace(1, config.steps, config.snapshots - 1)
            steps.update(round(float(s)) for s in grid)
    return sorted(steps)


HISTORY_POINTS = 100
"""Loss-history points recorded along a run with snapshots (plus step 0)."""
HISTORY_SAMPLES = 512
"""Inputs of the fixed batch the loss history is measured on (drawn once, never trained on)."""


def history_every(config: ToyConfig) -> int:
    """Steps between loss-history points: about `HISTORY_POINTS` over the run."""
    return max(1, config.steps // HISTORY_POINTS)


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
    """Buffers and the fused step for `n` stacked models (instances x seeds).

    The output bias rides along in the matmuls: the hidden activations carry an extra
    constant-1 column (`h_aug [n, B, m+1]`) and the second-layer weights an extra bias row,
    so `out = h_aug @ W2_aug` needs no separate broadcast add, and `h_aug^T @ r` yields the
    bias gradient (the batch sum of r) in the same matmul as the weight gradient.
    """

    def __init__(
        self,
        config: ToyConfig,
        params: ToyParams,
        importance: Tensor,
        sampler: FeatureSampler,
        *,
        planes: bool | None = None,
    ) -> None:
        self.config = config
        self.model = config.model
        self.sampler = sampler
        n, m, f = params.W.shape
        self.planes = _use_planes(m, f) if planes is None else planes
        B = config.batch_size
        device, dtype = params.W.device, params.W.dtype
        self.n, self.m, self.f = n, m, f
        # One flat buffer for every parameter (and one for every gradient), so the optimizer
        # update is a handful of in-place ops over contiguous memory.
        #   tied models: P_aug [n, m+1, f]   (rows 0..m-1 = W, row m = b)
        #   abs:         W1 [n, m, f] followed by W_out_aug [n, f, m+1] (column m = b)
        size_w1 = n * m * f if self.model == "abs" else 0
        total = size_w1 + n * (m + 1) * f
        self.flat = torch.zeros(total, device=device, dtype=dtype)
        self.grad = torch.zeros_like(self.flat)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self._denom = torch.empty_like(self.flat)
        decay = torch.zeros_like(self.flat)  # 1 on weights, 0 on the bias
        self.W_out: Tensor | None = None
        self.gW_out_aug: Tensor | None = None
        if self.model == "abs":
            assert params.W_out is not None
            self.W = self.flat[:size_w1].view(n, m, f)
            self.gW = self.grad[:size_w1].view(n, m, f)
            self.W2_aug = self.flat[size_w1:].view(n, f, m + 1)
            self.gW_out_aug = self.grad[size_w1:].view(n, f, m + 1)
            self.W_out = self.W2_aug[:, :, :m]
            self.b = self.W2_aug[:, :, m]
            self.W_out.copy_(params.W_out)
            decay[:size_w1] = 1.0
            decay[size_w1:].view(n, f, m + 1)[:, :, :m] = 1.0
        else:
            self.W2_aug = self.flat.view(n, m + 1, f)
            self.gP_aug = self.grad.view(n, m + 1, f)
            self.W = self.W2_aug[:, :m, :]
            self.gW = self.gP_aug[:, :m, :]
            self.b = self.W2_aug[:, m, :]
            decay.view(n, m + 1, f)[:, :m, :] = 1.0
        self.decay_mask = decay
        self.W.copy_(params.W)
        self.b.copy_(params.b_final)
        # c_f = 2 I_f / (B f): d(mean_{b,f} I_f e^2)/de = c_f e.
        self.c = (importance * (2.0 / (B * f))).to(device, dtype)  # (n, f)
        self.Wneg = torch.empty(n, m, f, device=device, dtype=dtype)
        self.gW1 = torch.empty(n, m, f, device=device, dtype=dtype)
        self.Wc = torch.empty(n, f, m, device=device, dtype=dtype)  # (W2 * c)^T
        self.step_count = 0
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        # Batch last ([n, f, B], layout `ifb`) makes the matmuls 10-25% faster when n_hidden
        # is small next to n_features (n=200, m=20) and 25% slower when it is not (n=100,
        # m=40), measured on CPU; the choice is deterministic. Tiny models use planes.
        self.layout: Layout = "ifb" if (4 * m <= f or f <= 8) else "ibf"
        if self.planes:
            self.layout = "fib"
            self._init_planes(B, kw)
            return
        # Preallocated activations.
        if self.layout == "ifb":
            self.t = torch.empty(n, f, B, **kw)  # -x^T
            self.h_aug = torch.ones(n, m + 1, B, **kw)  # row m stays 1
            self.h = torch.empty(n, m, B, **kw)
            self.dh = torch.empty(n, m, B, **kw)
        else:
            self.t = torch.empty(n, B, f, **kw)  # -x
            self.h_aug = torch.ones(n, B, m + 1, **kw)  # column m stays 1
            self.h = torch.empty(n, B, m, **kw)
            self.dh = torch.empty(n, B, m, **kw)
        # (bmm into the strided augmented view would fall back to one matmul per instance,
        # so h gets its own buffer and is copied over: a small copy, m << n_features.)
        self.out = torch.empty_like(self.t)
        self.r = self.out if self.model == "linear" else torch.empty_like(self.out)

    def _init_planes(self, B: int, kw: dict[str, Any]) -> None:
        """Feature-major buffers for tiny models: one contiguous [n, B] plane per feature or
        hidden unit, and the weights as [n, 1] columns that broadcast over the batch. Batched
        matmuls of 1x2 matrices would spend their time in per-instance overhead."""
        n, m, f = self.n, self.m, self.f
        self.t = torch.empty(f, n, B, **kw)  # -x, plane per feature
        self.out = torch.empty(f, n, B, **kw)
        self.r = self.out if self.model == "linear" else torch.empty_like(self.out)
        self.h = torch.empty(m, n, B, **kw)
        self.dh = torch.empty(m, n, B, **kw)
        self.prod = torch.empty(m, f, n, B, **kw)  # products before the batch sums
        self.G2 = torch.empty(m + 1, f, n, **kw)  # second-layer (+ bias) gradient sums
        self.G1 = torch.empty(m, f, n, **kw)
        # [n, 1] columns of the weights (views: they follow the in-place updates).
        self.wneg_cols = [[self.Wneg[:, k, j].unsqueeze(-1) for j in range(f)] for k in range(m)]
        if self.model == "abs":
            assert self.W_out is not None
            W2, Wc = self.W_out.transpose(1, 2), self.Wc.transpose(1, 2)  # (n, m, f)
        else:
            W2, Wc = self.W, self.Wc.view(n, m, f)
        self.w2_cols = [[W2[:, k, j].unsqueeze(-1) for j in range(f)] for k in range(m)]
        self.wc_cols = [[Wc[:, k, j].unsqueeze(-1) for j in range(f)] for k in range(m)]
        self.b_cols = [self.b[:, j].unsqueeze(-1) for j in range(f)]

    def params(self) -> ToyParams:
        return ToyParams(
            W=self.W.clone(),
            b_final=self.b.clone(),
            W_out=None if self.W_out is None else self.W_out.clone(),
        )

    def forward_backward(self) -> None:
        """Draw a batch and write the gradient of the summed loss into `self.grad`."""
        self.sampler.sample_neg_(self.t, layout=self.layout)
        if self.planes:
            _grads_into_planes(self, self.t)
        elif self.layout == "ifb":
            _grads_into(self, self.t)
        else:
            _grads_into_ibf(self, self.t)

    def adam_step(self, lr: float) -> None:
        cfg = self.config
        self.step_count += 1
        k = self.step_count
        g, p = self.grad, self.flat
        wd = cfg.weight_decay
        if wd and cfg.optimizer == "adam":
            g.addcmul_(p, self.decay_mask, value=wd)
        self.exp_avg.lerp_(g, 1.0 - _BETA1)
        self.exp_avg_sq.mul_(_BETA2).addcmul_(g, g, value=1.0 - _BETA2)
        bc1 = 1.0 - _BETA1**k
        bc2 = 1.0 - _BETA2**k
        torch.sqrt(self.exp_avg_sq, out=self._denom)
        self._denom.div_(math.sqrt(bc2)).add_(_EPS)
        if wd and cfg.optimizer == "adamw":
            p.addcmul_(p, self.decay_mask, value=-lr * wd)
        p.addcdiv_(self.exp_avg, self._denom, value=-lr / bc1)


def _grads_into(e: _Engine, t: Tensor) -> None:
    """Gradient of sum_i loss_i for the batch `t` = -x^T [n, f, B], written into `e.grad`."""
    model = e.model
    relu_hidden = model in ("relu-hidden", "abs")
    # h_pre^T = W x^T = (-W) t: negate the small W rather than the big t.
    torch.neg(e.W, out=e.Wneg)
    hT = torch.bmm(e.Wneg, t, out=e.h)  # (n, m, B)
    if relu_hidden:
        torch.relu_(hT)
    e.h_aug[:, : e.m].copy_(hT)
    W2t_aug = e.W2_aug if model == "abs" else e.W2_aug.transpose(1, 2)  # (n, f, m+1)
    out = torch.bmm(W2t_aug, e.h_aug, out=e.out)  # (n, f, B) = (h W2 + b)^T
    # r = (y - target) * [out > 0]; target x = -t, or |x| = |t| for abs.
    r = _residual_(e, out, t)
    # Second layer and bias in one matmul; the per-feature scale c commutes with it.
    if model == "abs":
        assert e.gW_out_aug is not None and e.W_out is not None
        torch.bmm(r, e.h_aug.transpose(1, 2), out=e.gW_out_aug)  # (n, f, m+1)
        e.gW_out_aug.mul_(e.c.unsqueeze(-1))
        torch.mul(e.W_out, e.c.unsqueeze(-1), out=e.Wc)  # (n, f, m)
        Wc = e.Wc.transpose(1, 2)  # (n, m, f)
        beta = 0.0
    else:
        torch.bmm(e.h_aug, r.transpose(1, 2), out=e.gP_aug)  # (n, m+1, f)
        e.gP_aug.mul_(e.c.unsqueeze(1))
        Wc = e.Wc.view(e.n, e.m, e.f)
        torch.mul(e.W, e.c.unsqueeze(1), out=Wc)  # (n, m, f)
        beta = 1.0
    dhT = torch.bmm(Wc, r, out=e.dh)  # (n, m, B)
    if relu_hidden:
        dhT = torch.ops.aten.threshold_backward.grad_input(dhT, hT, 0.0, grad_input=dhT)
    # dW1 = dh^T x = -(dh^T t); tied models add it to the second-layer term. (A bmm into a
    # contiguous buffer: baddbmm_ on the strided W rows falls back to one addmm per instance.)
    if beta:
        torch.bmm(dhT, t.transpose(1, 2), out=e.gW1)  # (n, m, f)
        e.gW.sub_(e.gW1)
    else:
        torch.bmm(dhT, t.transpose(1, 2), out=e.gW).neg_()


def _grads_into_ibf(e: _Engine, t: Tensor) -> None:
    """`_grads_into` for the batch `t` = -x as [n, B, f] (better when n_hidden is a large
    fraction of n_features)."""
    model = e.model
    relu_hidden = model in ("relu-hidden", "abs")
    # h_pre = x W^T = t (-W)^T: negate the small W rather than the big t.
    torch.neg(e.W, out=e.Wneg)
    h = torch.bmm(t, e.Wneg.transpose(1, 2), out=e.h)  # (n, B, m)
    if relu_hidden:
        torch.relu_(h)
    e.h_aug[:, :, : e.m].copy_(h)
    W2_aug = e.W2_aug.transpose(1, 2) if model == "abs" else e.W2_aug  # (n, m+1, f)
    out = torch.bmm(e.h_aug, W2_aug, out=e.out)  # (n, B, f) = h W2 + b
    # r = (y - target) * [out > 0]; target x = -t, or |x| = |t| for abs.
    r = _residual_(e, out, t)
    # Second layer and bias in one matmul; the per-feature scale c commutes with it.
    if model == "abs":
        assert e.gW_out_aug is not None and e.W_out is not None
        torch.bmm(r.transpose(1, 2), e.h_aug, out=e.gW_out_aug)  # (n, f, m+1)
        e.gW_out_aug.mul_(e.c.unsqueeze(-1))
        torch.mul(e.W_out, e.c.unsqueeze(-1), out=e.Wc)  # (n, f, m)
        Wc = e.Wc
        beta = 0.0
    else:
        torch.bmm(e.h_aug.transpose(1, 2), r, out=e.gP_aug)  # (n, m+1, f)
        e.gP_aug.mul_(e.c.unsqueeze(1))
        Wc_t = e.Wc.view(e.n, e.m, e.f)
        torch.mul(e.W, e.c.unsqueeze(1), out=Wc_t)  # (n, m, f)
        Wc = Wc_t.transpose(1, 2)  # (n, f, m)
        beta = 1.0
    dh = torch.bmm(r, Wc, out=e.dh)  # (n, B, m)
    if relu_hidden:
        dh = torch.ops.aten.threshold_backward.grad_input(dh, h, 0.0, grad_input=dh)
    # dW1 = dh^T x = -(dh^T t); tied models add it to the second-layer term. (A bmm into a
    # contiguous buffer: baddbmm_ on the strided W rows falls back to one addmm per instance.)
    if beta:
        torch.bmm(dh.transpose(1, 2), t, out=e.gW1)  # (n, m, f)
        e.gW.sub_(e.gW1)
    else:
        torch.bmm(dh.transpose(1, 2), t, out=e.gW).neg_()


def _use_planes(n_hidden: int, n_features: int) -> bool:
    """Tiny models train faster as elementwise ops on feature planes than as batched
    matmuls (measured on CPU: see benchmarks/toy_throughput.py)."""
    return n_hidden * n_features <= _PLANES_MAX


_PLANES_MAX = 4


def _residual_(e: _Engine, out: Tensor, t: Tensor) -> Tensor:
    """r = (y - target) * [out > 0] (no mask for linear), written into e.r; layout-free."""
    if e.model == "linear":
        return out.add_(t)
    if e.model == "abs":
        r = torch.abs(t, out=e.r)
        torch.sub(out, r, out=r)
    else:
        r = torch.add(out, t, out=e.r)
    return torch.ops.aten.threshold_backward.grad_input(r, out, 0.0, grad_input=r)


def _grads_into_planes(e: _Engine, t: Tensor) -> None:
    """`_grads_into` for feature-major planes: t is -x as [n_features, n_instances, batch]."""
    model, m, f = e.model, e.m, e.f
    relu_hidden = model in ("relu-hidden", "abs")
    torch.neg(e.W, out=e.Wneg)
    h, out = e.h, e.out
    for k in range(m):  # h_k = sum_j x_j W[k, j] = sum_j t_j (-W[k, j])
        torch.mul(t[0], e.wneg_cols[k][0], out=h[k])
        for j in range(1, f):
            h[k].addcmul_(t[j], e.wneg_cols[k][j])
    if relu_hidden:
        torch.relu_(h)
    for j in range(f):  # out_j = b_j + sum_k h_k W2[k, j]
        torch.addcmul(e.b_cols[j], h[0], e.w2_cols[0][j], out=out[j])
        for k in range(1, m):
            out[j].addcmul_(h[k], e.w2_cols[k][j])
    r = _residual_(e, out, t)
    # Batch sums of h_k r_j (second layer) and of r_j (bias).
    torch.mul(h.unsqueeze(1), r.unsqueeze(0), out=e.prod)  # (m, f, n, B)
    torch.sum(e.prod, dim=-1, out=e.G2[:m])
    torch.sum(r, dim=-1, out=e.G2[m])
    if model == "abs":
        assert e.gW_out_aug is not None and e.W_out is not None
        e.gW_out_aug.copy_(e.G2.permute(2, 1, 0)).mul_(e.c.unsqueeze(-1))  # (n, f, m+1)
        torch.mul(e.W_out, e.c.unsqueeze(-1), out=e.Wc)
    else:
        e.gP_aug.copy_(e.G2.permute(2, 0, 1)).mul_(e.c.unsqueeze(1))  # (n, m+1, f)
        torch.mul(e.W, e.c.unsqueeze(1), out=e.Wc.view(e.n, m, f))
    dh = e.dh
    for k in range(m):  # dh_k = sum_j r_j (W2 c)[k, j]
        torch.mul(r[0], e.wc_cols[k][0], out=dh[k])
        for j in range(1, f):
            dh[k].addcmul_(r[j], e.wc_cols[k][j])
    if relu_hidden:
        torch.ops.aten.threshold_backward.grad_input(dh, h, 0.0, grad_input=dh)
    # dW1 = dh^T x = -(batch sums of dh_k t_j).
    torch.mul(dh.unsqueeze(1), t.unsqueeze(0), out=e.prod)
    torch.sum(e.prod, dim=-1, out=e.G1)
    G1 = e.G1.permute(2, 0, 1)  # (n, m, f)
    if model == "abs":
        e.gW.copy_(G1).neg_()
    else:
        e.gW.sub_(G1)


def _loss_and_grads(
    config: ToyConfig,
    params: ToyParams,
    x: Float[Tensor, "n_instances batch n_features"],
    *,
    planes: bool = False,
) -> tuple[Tensor, ToyParams]:
    """(per-instance loss, gradients) of the summed loss at `params` for the batch `x`.

    Runs the same hand-derived backward as training (for testing against autograd).
    """
    importance = torch.tensor(config.importance, dtype=x.dtype)
    cfg = _replace_batch(config, x.shape[1])
    sampler = FeatureSampler(config.sparsity, config.n_features, signed=config.model == "abs")
    e = _Engine(cfg, params, importance, sampler, planes=planes)
    if e.planes:
        _grads_into_planes(e, (-x).permute(2, 0, 1).contiguous())
    elif e.layout == "ifb":
        _grads_into(e, (-x).transpose(1, 2).contiguous())
    else:
        _grads_into_ibf(e, (-x).contiguous())
    loss = toy_loss(config.model, params, x, importance)
    if e.gW_out_aug is not None:
        gb, gW_out = e.gW_out_aug[:, :, e.m], e.gW_out_aug[:, :, : e.m].clone()
    else:
        gb, gW_out = e.gP_aug[:, e.m, :], None
    grads = ToyParams(W=e.gW.clone(), b_final=gb.clone(), W_out=gW_out)
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
    num_threads: int | None = None,
    init: ToyParams | None = None,
) -> ToyRun:
    """Train every instance of `config` (x `best_of` seeds) at once; keep the best seed each.

    Deterministic for a given config, seed and device (also across thread counts: the
    tests check 1 and 2 threads give identical weights). `num_threads` sets torch's CPU
    threads for the duration of the call (restored after). None means 1: measured on a
    2-core machine, a second thread never made these batched small matmuls faster (16.9 vs
    18.2 ms per n=200 step with the machine otherwise idle) and made steps 15-40x slower as
    soon as other processes competed for the cores (OpenMP threads spin-waiting on a
    preempted sibling). To use several cores, train independent sweeps in separate processes.

    `init`, when given, is the starting point of every instance ([n_instances, ...], shared by
    all `best_of` seeds, which then differ only in their data) instead of the random
    initialization; used to start from a hand-built solution.
    """
    if num_threads is not None and not (isinstance(num_threads, int) and num_threads >= 1):
        raise ValueError(f"num_threads must be None or an int >= 1; got {num_threads!r}")
    before = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(num_threads if num_threads is not None else 1)
    try:
        return _train_toy(config, torch.device(device), progress, init)
    finally:
        torch.set_num_threads(before)


def _check_init(config: ToyConfig, init: ToyParams) -> None:
    m, f = config.n_hidden, config.n_features
    want = {"W": (config.n_instances, m, f), "b_final": (config.n_instances, f)}
    if config.model == "abs":
        want["W_out"] = (config.n_instances, f, m)
    for name, shape in want.items():
        value = getattr(init, name)
        if value is None or tuple(value.shape) != shape:
            got = None if value is None else tuple(value.shape)
            raise ValueError(f"init.{name} must have shape {shape}; got {got}")


def _train_toy(
    config: ToyConfig, device: torch.device, progress: bool, init: ToyParams | None = None
) -> ToyRun:
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
        std=config.init_std,
    )
    if init is not None:
        _check_init(config, init)

        def seeds(t: Tensor) -> Tensor:  # (n_inst, ...) -> (K * n_inst, ...), seed-major
            return t.detach().to(device, torch.float32).repeat(K, *([1] * (t.dim() - 1)))

        params = ToyParams(
            W=seeds(init.W),
            b_final=seeds(init.b_final),
            W_out=None if init.W_out is None else seeds(init.W_out),
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
        shared=config.shared_data,
        generator=data_gen,
        device=device,
    )
    engine = _Engine(config, params, importance, sampler)
    keep = set(snapshot_steps(config))
    snaps: list[tuple[int, Tensor, Tensor]] = []
    if 0 in keep:
        snaps.append((0, engine.W.clone(), engine.b.clone()))
    update_every = max(1, min(100, config.steps // 100))
    # The loss along training, only with snapshots (it costs an evaluation every k steps):
    # one fixed batch from its own seed, so the curve's wiggles are training, not sampling.
    every = history_every(config) if keep else 0
    history: list[tuple[int, Tensor]] = []

    if every:  # the batch evaluate_loss(n_samples=..., seed=...) would draw, drawn once
        hgen = torch.Generator(device=device)
        hgen.manual_seed(config.seed + _EVAL_SEED_OFFSET + 1)
        hx = FeatureSampler(
            config.sparsity, config.n_features, kind=config.feature_kind,
            signed=config.model == "abs", generator=hgen, device=device,
        ).sample(min(HISTORY_SAMPLES, config.eval_samples)).repeat(K, 1, 1)  # fmt: skip
        himp = importance.to(device)

    def record(step: int) -> None:
        with torch.no_grad():
            loss = toy_loss(config.model, engine.params(), hx, himp)
        history.append((step, loss))

    if every:
        record(0)
    with progress_bar(
        config.steps, desc=f"toy {config.model} x{n}", unit="step", enabled=progress
    ) as bar:
        for step in range(config.steps):
            engine.forward_backward()
            engine.adam_step(lr_at(config, step))
            if step + 1 in keep:
                snaps.append((step + 1, engine.W.clone(), engine.b.clone()))
            if every and ((step + 1) % every == 0 or step + 1 == config.steps):
                record(step + 1)
            if (step + 1) % update_every == 0:
                bar.update(update_every)
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
        snapshots=[(s, w[pick].cpu()) for s, w, _ in snaps],
        snapshot_b_final=[b[pick].cpu() for _, _, b in snaps],
        seed_loss=seed_loss.t().contiguous().cpu(),
        chosen_seed=chosen.cpu(),
        seconds=time.perf_counter() - started,
        loss_history=[(s, h[pick].cpu()) for s, h in history],
    )
    log.info("trained %d toy models (%d steps) in %.1f s", n, config.steps, run.seconds)
    return run
