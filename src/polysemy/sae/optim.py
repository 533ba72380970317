"""The optimizers SAE training can use, and their state as flat tensors (for safetensors).

- `adam`: `torch.optim.Adam` (foreach);
- `signum`: the sign of a momentum buffer (`Signum`);
- `schedule-free-signum`: sign steps with schedule-free averaging (`ScheduleFreeSignum`).

`make_optimizer` builds the one a `TrainConfig` names, at its resolved learning rate
(`TrainConfig.resolved_lr`); `optimizer_tensors` / `load_optimizer_tensors` carry the
per-parameter state through the resumable state file under `optim.<param>.<key>` names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from polysemy.sae.base import SparseAutoencoder
from polysemy.sae.config import TrainConfig
from polysemy.validation import ParameterError


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

    The trainer evaluates and saves `y`, the parameter itself, not `x` (`averaged(p)`).
    Every statistic training keeps is measured at y (dead-latent counters, batchtopk's
    threshold), and the sign steps let z's decoder rows drift far off the unit sphere (mean
    norm 4 after 585 steps on a Zipf synthetic set), so x = (y - (1 - momentum) z) / momentum
    inherits shrunken, non-unit decoder rows (mean norm 0.85): x scored held-out FVU 0.239
    with 8% dead latents where y scored 0.218 (x renormalised: 0.218). Saving x while
    reporting y's training figures was what made this optimizer's reported FVU too good.
    No learning-rate decay is needed.
    """

    def __init__(self, params: Any, lr: float, momentum: float = 0.95) -> None:
        if not 0.0 < momentum < 1.0:
            raise ParameterError("momentum", "in (0, 1)", momentum)
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


def make_optimizer(sae: SparseAutoencoder, train: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer `train.optimizer` names over `sae`'s parameters, at the peak lr."""
    params = list(sae.parameters())
    lr = train.resolved_lr(sae.d_sae)
    if train.optimizer == "schedule-free-signum":
        return ScheduleFreeSignum(params, lr=lr)
    if train.optimizer == "signum":
        return Signum(params, lr=lr, momentum=train.betas[0])
    # foreach, not fused: the fused CPU kernel was ~3x faster on the optimizer step, but a run
    # resumed from saved moments did not reproduce the uninterrupted run bit for bit.
    return torch.optim.Adam(params, lr=lr, betas=train.betas, foreach=True)


def optimizer_tensors(opt: torch.optim.Optimizer, sae: SparseAutoencoder) -> dict[str, Tensor]:
    """The optimizer's per-parameter tensors as `optim.<param name>.<state key>`."""
    out = {}
    for name, p in sae.named_parameters():
        for key, value in opt.state.get(p, {}).items():
            if isinstance(value, Tensor):
                out[f"optim.{name}.{key}"] = value
    return out


def load_optimizer_tensors(
    opt: torch.optim.Optimizer, sae: SparseAutoencoder, tensors: dict[str, Tensor]
) -> None:
    """Restore what `optimizer_tensors` wrote (keys of other parameters are ignored)."""
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
