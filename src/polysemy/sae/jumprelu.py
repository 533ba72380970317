"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction
Fidelity with JumpReLU Sparse Autoencoders").

    z = pre * H(pre - threshold)         # per-latent thresholds, threshold [d_sae] >= 0
    loss = FVU-style reconstruction + lambda * L0          (or lambda * (L0 / target - 1)^2)

H has zero gradient almost everywhere, so thresholds learn through a straight-through
estimator with a rectangle-kernel pseudo-derivative of bandwidth eps (section 4):
d/dtheta JumpReLU(z) = -(theta/eps) K((z - theta)/eps), d/dtheta H(z - theta) =
-(1/eps) K((z - theta)/eps), with K(u) = 1[|u| < 1/2]. Decoder rows are unit norm.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from polysemy.sae.base import SAEOutput, SparseAutoencoder, fire_counts_dense
from polysemy.sae.config import SAEConfig


def _rectangle(u: Tensor) -> Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * (pre > threshold)
        # [d_sae]: pseudo-derivative summed over the batch.
        grad_threshold = (-(threshold / eps) * _rectangle((pre - threshold) / eps) * grad).sum(0)
        return grad_pre, grad_threshold, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = (-(1.0 / eps) * _rectangle((pre - threshold) / eps) * grad).sum(0)
        return torch.zeros_like(pre), grad_threshold, None


class JumpReLUSAE(SparseAutoencoder):
    """Per-latent thresholds trained by a straight-through estimator."""

    arch = "jumprelu"

    def __init__(
        self,
        config: SAEConfig,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(config, generator=generator, device=device, dtype=dtype)
        self.threshold = nn.Parameter(
            torch.full((config.d_sae,), config.jumprelu_init_threshold, device=device, dtype=dtype)
        )

    def activation(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return pre * (pre > self.threshold)

    def _forward(self, x: Tensor, *, dead_mask: Tensor | None, sparsity_scale: float) -> SAEOutput:
        pre = self.pre_activations(x)  # [batch, d_sae]
        eps = self.config.jumprelu_bandwidth
        z = _JumpReLU.apply(pre, self.threshold, eps)
        x_hat = self.decode(z)
        losses = {"fvu": (x_hat - x).pow(2).sum(-1).mean() / self.reconstruction_denominator}
        coefficient = self.config.effective_sparsity_coefficient * sparsity_scale
        if coefficient > 0:
            l0 = _Step.apply(pre, self.threshold, eps).sum(-1).mean()
            target = self.config.target_l0
            penalty = l0 if target is None else (l0 / target - 1.0).pow(2)
            losses["l0"] = coefficient * penalty
        return SAEOutput(x_hat, None, None, losses, fire_counts_dense(z.detach()), {})

    @torch.no_grad()
    def post_step_(self) -> None:
        super().post_step_()
        self.threshold.clamp_min_(0.0)  # a negative threshold would let negative pre through
