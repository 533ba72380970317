"""BatchTopK SAE (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders").

Training keeps the k x batch largest activations over the whole batch (so rows may use more
or fewer than k latents, k on average); inference cannot see a batch, so it uses a single
global threshold learned as the running average of the smallest activation kept in each
training batch:

    training:  z = top_{k*batch}(ReLU(pre)) over the batch
    inference: z = pre * (pre > threshold)            # threshold [d_sae], one value repeated

The threshold is stored per latent (all equal) so the checkpoint format is JumpReLU's.
Losses as TopK (FVU-style reconstruction plus AuxK on dead latents).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from polysemy.sae.base import SAEOutput, fire_counts_dense, fvu_loss
from polysemy.sae.config import SAEConfig
from polysemy.sae.fast_topk import flat_topk
from polysemy.sae.sparse_decode import SparseCode
from polysemy.sae.topk import TopKSAE


class BatchTopKSAE(TopKSAE):
    """Top k x batch over the batch while training; a learned global threshold at inference."""

    arch = "batchtopk"
    threshold: Tensor
    threshold_updates: Tensor

    def __init__(
        self,
        config: SAEConfig,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(config, generator=generator, device=device, dtype=dtype)
        self.register_buffer("threshold", torch.zeros(config.d_sae, device=device, dtype=dtype))
        # How many batches the running average has seen (0: the first sets it outright).
        self.register_buffer("threshold_updates", torch.zeros((), dtype=torch.long, device=device))

    def activation(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return pre * (pre > self.threshold.clamp_min(0))

    def _forward(self, x: Tensor, *, dead_mask: Tensor | None, sparsity_scale: float) -> SAEOutput:
        if not self.training:
            z = self.activation(self.pre_activations(x))
            x_hat = self.decode(z)
            losses = {"fvu": fvu_loss(x, x_hat, self.reconstruction_denominator)}
            return SAEOutput(x_hat, None, None, losses, fire_counts_dense(z.detach()), {})
        batch = x.shape[0]
        with torch.no_grad():
            # [batch, d_sae], reused next step; maybe in a lower precision (selection_dtype)
            pre = self.scratch_pre_activations(x, self.selection_dtype)
            flat = F.relu(pre).reshape(-1)
            n_keep = min(self.k * batch, flat.numel())
            _, flat_idx = flat_topk(flat, n_keep, row_length=self.d_sae)
            flat_idx, _ = flat_idx.sort()  # row-major order: pairs sorted by row
            vals = pre.reshape(-1)[flat_idx]
        code = SparseCode.from_flat(flat_idx, batch, self.d_sae)
        if self.config.sparse_decode:
            acts = self._attached_acts(code, vals, x)
        else:
            pre = self.pre_activations(x)
            acts = F.relu(pre.reshape(-1)[flat_idx])
        x_hat, losses, fire = self._reconstruct(x, pre, code, acts, dead_mask)
        with torch.no_grad():
            positive = acts.detach()[acts.detach() > 0]
            min_positive = positive.min() if positive.numel() else acts.new_zeros(())
        return SAEOutput(x_hat, None, None, losses, fire, {"min_positive": min_positive})

    @torch.no_grad()
    def update_from_stats_(self, stats: dict[str, Tensor]) -> None:
        if "min_positive" in stats:
            self.update_threshold_(stats["min_positive"])

    def _inference_tensors_loaded_(self) -> None:
        # A loaded threshold is a learned one: the running average must not restart from it.
        self.threshold_updates.fill_(1)

    @torch.no_grad()
    def update_threshold_(self, min_positive: Tensor) -> None:
        """Fold one batch's smallest kept activation into the running-average threshold."""
        m = self.config.batchtopk_threshold_momentum
        value = min_positive.to(self.threshold.dtype)
        if int(self.threshold_updates) == 0:
            self.threshold.fill_(float(value))
        else:
            self.threshold.mul_(m).add_((1 - m) * value)
        self.threshold_updates.add_(1)
