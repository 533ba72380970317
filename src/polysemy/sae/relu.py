"""ReLU SAE with the April-2024 recipe (Conerly et al., "Circuits Updates, April 2024").

    z = ReLU((x - b_dec) @ W_enc + b_enc)
    loss = mean_rows ||x - x_hat||^2 + lambda * mean_rows sum_i z_i ||W_dec[i]||

The L1 penalty is weighted by each decoder row's norm instead of constraining the rows to
unit norm (so the optimiser cannot shrink z by growing W_dec); lambda (default 5, inputs
scaled so E||x||^2 = d_in) ramps up from 0 over the first 5% of training, and the gradient
norm is clipped to 1. Decoder rows start with norm 0.1 and the encoder as their transpose.
"""

from __future__ import annotations

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from polysemy.sae.base import SAEOutput, SparseAutoencoder, fire_counts_dense, fvu_loss


class ReLUSAE(SparseAutoencoder):
    """ReLU encoder, L1 penalty weighted by decoder row norms."""

    arch = "relu"
    unit_norm_decoder = False
    decoder_init_norm = 0.1
    normalized_reconstruction = False
    default_grad_clip = 1.0  # the April-2024 recipe clips the gradient norm to 1

    def activation(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return F.relu(pre)

    def _forward(self, x: Tensor, *, dead_mask: Tensor | None, sparsity_scale: float) -> SAEOutput:
        z = F.relu(self.pre_activations(x))  # [batch, d_sae]
        x_hat = self.decode(z)
        losses = {"mse": fvu_loss(x, x_hat, self.reconstruction_denominator)}
        coefficient = self.config.effective_sparsity_coefficient * sparsity_scale
        if coefficient > 0:
            # z @ ||W_dec[i]||: [batch], the norm-weighted L1 of each row.
            l1 = (z @ self.W_dec.norm(dim=1)).mean()
            losses["l1"] = coefficient * l1
        return SAEOutput(x_hat, None, None, losses, fire_counts_dense(z.detach()), {})
