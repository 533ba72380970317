"""TopK SAE: keep the k largest pre-activations per row (Gao et al. 2024, "Scaling and
evaluating sparse autoencoders").

    z = ReLU(TopK_k((x - b_dec) @ W_enc + b_enc))

Training loss: reconstruction (normalised by the data variance, so it reads as FVU) plus
AuxK: the residual `x - x_hat` reconstructed from the `k_aux` largest pre-activations of the
dead latents, weighted by `aux_coefficient` (1/32), which keeps dead latents learning
(section A.2). Decoder rows are unit norm.

The training forward computes the dense encoder matmul once without autograd (it is needed
to choose the k latents), then attaches a sparse backward (`sparse_decode`): gradients reach
`W_enc` only at the selected pre-activations and `W_dec` only at the active rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from polysemy.sae.base import SAEOutput, SparseAutoencoder, fvu_loss
from polysemy.sae.fast_topk import row_topk
from polysemy.sae.sparse_decode import SparseCode, selected_preacts, sparse_decode


class TopKSAE(SparseAutoencoder):
    """ReLU of the k largest pre-activations per row."""

    arch = "topk"
    uses_dead_mask = True  # AuxK reconstructs the residual from dead latents
    chooses_latents = True

    @property
    def k(self) -> int:
        assert self.config.k is not None
        return self.config.k

    def activation(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        vals, idx = row_topk(pre, self.k)
        return torch.zeros_like(pre).scatter_(1, idx, F.relu(vals))

    def select(
        self, pre: Float[Tensor, "batch d_sae"]
    ) -> tuple[Int[Tensor, "batch k"], Float[Tensor, "batch k"]]:
        """Indices (ascending within each row) and pre-activations of the top k."""
        vals, idx = row_topk(pre, self.k)
        idx, order = idx.sort(dim=1)  # the sparse path wants sorted pairs per row
        return idx, vals.gather(1, order)

    def decode_sparse(
        self, indices: Int[Tensor, "batch k"], values: Float[Tensor, "batch k"]
    ) -> Float[Tensor, "batch d_in"]:
        """`decode` of a TopK code given as indices and values (no dense latents)."""
        return (
            F.embedding_bag(indices, self.W_dec, per_sample_weights=values, mode="sum") + self.b_dec
        )

    # ---- the training forward ---------------------------------------------------------

    def _encode_pairs(self, x: Tensor) -> tuple[Tensor, SparseCode, Tensor, Tensor]:
        """Pre-activations, the TopK code and its (autograd-attached) activations."""
        if self.config.sparse_decode:
            # [batch, d_sae], reused next step; maybe in a lower precision (selection_dtype)
            dtype = self.selection_dtype if self.training else None
            pre = self.scratch_pre_activations(x, dtype)
            idx, vals = self.select(pre)
            code = SparseCode.from_topk(idx, self.d_sae)
            acts = self._attached_acts(code, vals, x)
        else:
            pre = self.pre_activations(x)
            with torch.no_grad():
                idx, _ = self.select(pre)
            code = SparseCode.from_topk(idx, self.d_sae)
            acts = F.relu(pre.gather(1, idx)).reshape(-1)
        return pre, code, acts, idx

    def _attached_acts(self, code: SparseCode, vals: Tensor, x: Tensor) -> Tensor:
        """ReLU of the pre-activations at the pairs of `code`, `[nnz]`, with the sparse backward.

        `vals` are their values as the selection computed them, recomputed exactly first when
        the selection ran in a lower precision (`selection_dtype`).
        """
        if vals.dtype != x.dtype:
            vals = self.exact_preacts(code, x)
        return F.relu(
            selected_preacts(code, vals.reshape(-1), x, self.b_dec, self.W_enc, self.b_enc)
        )

    def _decode_pairs(self, code: SparseCode, acts: Tensor) -> Tensor:
        """`sparse(acts) @ W_dec` by the sparse or the dense path."""
        if self.config.sparse_decode:
            return sparse_decode(code, acts, self.W_dec)
        z = torch.zeros(code.batch, self.d_sae, dtype=acts.dtype, device=acts.device)
        z = z.index_put((code.rows, code.cols), acts)  # dense [batch, d_sae]
        return z @ self.W_dec

    def _forward(self, x: Tensor, *, dead_mask: Tensor | None, sparsity_scale: float) -> SAEOutput:
        pre, code, acts, idx = self._encode_pairs(x)
        x_hat, losses, fire = self._reconstruct(x, pre, code, acts, dead_mask)
        values = acts.detach().view(idx.shape)
        return SAEOutput(x_hat, idx, values, losses, fire, {})

    def _reconstruct(
        self, x: Tensor, pre: Tensor, code: SparseCode, acts: Tensor, dead_mask: Tensor | None
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """`x_hat`, the losses (FVU, and AuxK while training) and the fire counts of a code."""
        x_hat = self._decode_pairs(code, acts) + self.b_dec
        losses = {"fvu": fvu_loss(x, x_hat, self.reconstruction_denominator)}
        if dead_mask is not None and self.training and self.config.aux_coefficient > 0:
            aux = self._auxk_loss(x, x_hat, pre, dead_mask)
            if aux is not None:
                losses["aux"] = aux
        fire = torch.zeros(self.d_sae, dtype=torch.long, device=x.device)
        fire.index_add_(0, code.cols, (acts.detach() > 0).long())
        return x_hat, losses, fire

    def _auxk_loss(
        self,
        x: Tensor,
        x_hat: Tensor,
        pre: Tensor,
        dead_mask: Tensor,
        *,
        encoder_input: Tensor | None = None,
    ) -> Tensor | None:
        """AuxK: reconstruct the residual `x - x_hat` from the top `k_aux` dead latents.

        `encoder_input`: what the encoder read, when it is not `x` (transcoders)."""
        encoder_input = x if encoder_input is None else encoder_input
        n_dead = int(dead_mask.sum())
        if n_dead == 0:
            return None
        k_aux = min(self.config.effective_k_aux, n_dead)
        with torch.no_grad():
            # Only the dead columns compete: [batch, n_dead], cheap while few are dead.
            dead_idx = dead_mask.nonzero().squeeze(1)
            vals, j = pre.detach()[:, dead_idx].topk(k_aux, dim=1, sorted=False)
            idx, order = dead_idx[j].sort(dim=1)
            vals = vals.gather(1, order)
        code = SparseCode.from_topk(idx, self.d_sae)
        if self.config.sparse_decode:
            acts = self._attached_acts(code, vals, encoder_input)
        else:
            acts = F.relu(pre.gather(1, idx)).reshape(-1)
        residual = (x - x_hat).detach()
        residual_hat = self._decode_pairs(code, acts)  # no b_dec: it models the residual
        # Normalised by the residual's own size (Gao et al. A.2), scaled down while only a few
        # latents are dead (as sparsify does) so AuxK never dominates.
        denom = residual.pow(2).sum(-1).mean().clamp_min(1e-12)
        aux = (residual_hat - residual).pow(2).sum(-1).mean() / denom
        scale = min(1.0, n_dead / self.config.effective_k_aux)
        return self.config.aux_coefficient * scale * aux
