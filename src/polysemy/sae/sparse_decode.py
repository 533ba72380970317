"""The sparse path of the TopK family: gather only the active latents, forward and backward.

A TopK SAE keeps k of d_sae latents per row, so the dense decoder `z @ W_dec` multiplies
mostly zeros, and autograd through `pre.gather(idx)` would build a dense `[batch, d_sae]`
gradient for the encoder. Here the active latents are a `SparseCode` (a CSR-like list of
(row, latent) pairs) and two autograd functions touch only those pairs:

- `selected_preacts`: the pre-activations at the selected pairs, whose backward computes
  `dW_enc = (x - b_dec)^T @ sparse(grad)` as an `embedding_bag` over the pairs grouped by
  latent: no `[batch, d_sae]` temporary;
- `sparse_decode`: `x_hat = sum_j acts_j W_dec[idx_j]` (`embedding_bag`), whose backward
  gives `grad_acts` with `sampled_addmm` (dot products only at the pairs) and `dW_dec` with
  the same latent-grouped `embedding_bag`.

Both are tested equal (forward and gradients) to the dense autograd path.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


class SparseCode(NamedTuple):
    """Active (row, latent) pairs of one batch, sorted by row, plus their transpose."""

    rows: Int[Tensor, " nnz"]
    """Row of each pair (non-decreasing)."""
    cols: Int[Tensor, " nnz"]
    """Latent of each pair."""
    offsets: Int[Tensor, " batch"]
    """Start of each row's pairs in `cols` (embedding_bag offsets)."""
    crow: Int[Tensor, " batch_plus_1"]
    """CSR row pointer (`offsets` followed by nnz)."""
    perm: Int[Tensor, " nnz"]
    """Permutation that sorts the pairs by latent (stable)."""
    col_offsets: Int[Tensor, " d_sae"]
    """Start of each latent's pairs in `perm` order."""
    rows_by_latent: Int[Tensor, " nnz"]
    """`rows[perm]`: the rows of the pairs in latent order."""
    batch: int
    d_sae: int

    @classmethod
    def from_topk(cls, indices: Int[Tensor, "batch k"], d_sae: int) -> SparseCode:
        """Pairs from per-row TopK indices, which must be sorted within each row."""
        batch, k = indices.shape
        device = indices.device
        rows = torch.arange(batch, device=device).repeat_interleave(k)
        crow = torch.arange(0, batch * k + 1, k, device=device)
        return cls._build(rows, indices.reshape(-1), crow, batch, d_sae)

    @classmethod
    def from_flat(cls, flat: Int[Tensor, " nnz"], batch: int, d_sae: int) -> SparseCode:
        """Pairs from sorted flat indices `row * d_sae + latent` (BatchTopK)."""
        rows = torch.div(flat, d_sae, rounding_mode="floor")
        cols = flat - rows * d_sae
        counts = torch.bincount(rows, minlength=batch)
        crow = torch.zeros(batch + 1, dtype=torch.long, device=flat.device)
        crow[1:] = counts.cumsum(0)
        return cls._build(rows, cols, crow, batch, d_sae)

    @classmethod
    def _build(cls, rows: Tensor, cols: Tensor, crow: Tensor, batch: int, d_sae: int) -> SparseCode:
        perm = torch.argsort(cols, stable=True)
        col_counts = torch.bincount(cols, minlength=d_sae)
        col_offsets = torch.zeros(d_sae, dtype=torch.long, device=cols.device)
        col_offsets[1:] = col_counts.cumsum(0)[:-1]
        return cls(rows, cols, crow[:-1], crow, perm, col_offsets, rows[perm], batch, d_sae)

    def by_latent(self, values: Float[Tensor, " nnz"], dense: Float[Tensor, "batch d"]) -> Tensor:
        """`sparse(values)^T @ dense`: `[d_sae, d]`, summing each latent's rows of `dense`."""
        # embedding_bag over latent-grouped pairs: bag = latent, items = rows of `dense`.
        return F.embedding_bag(
            self.rows_by_latent,
            dense,
            self.col_offsets,
            per_sample_weights=values[self.perm].to(dense.dtype),
            mode="sum",
        )


def _decode_forward(code: SparseCode, acts: Tensor, W_dec: Tensor) -> Tensor:
    # [batch, d_in]: each bag (row) sums acts_j * W_dec[cols_j]; empty rows give zeros.
    return F.embedding_bag(
        code.cols, W_dec, code.offsets, per_sample_weights=acts.to(W_dec.dtype), mode="sum"
    )


def sampled_dots(code: SparseCode, a: Tensor, b: Tensor) -> Tensor:
    """`(a @ b^T)[rows, cols]` for every pair, without the dense product: `[nnz]`."""
    if code.cols.numel() == 0:
        return a.new_zeros(0)
    with warnings.catch_warnings():
        # CSR tensors are "beta" in torch; the pattern is valid by construction.
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            code.crow,
            code.cols,
            a.new_zeros(code.cols.numel()),
            (code.batch, code.d_sae),
            check_invariants=False,
        )
        return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, code: SparseCode, acts: Tensor, W_dec: Tensor) -> Tensor:  # type: ignore[override]
        ctx.code = code
        ctx.save_for_backward(acts, W_dec)
        return _decode_forward(code, acts, W_dec)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[None, Tensor | None, Tensor | None]:  # type: ignore[override]
        acts, W_dec = ctx.saved_tensors
        code: SparseCode = ctx.code
        grad_out = grad_out.contiguous()
        grad_acts = grad_W_dec = None
        if ctx.needs_input_grad[1]:
            # d x_hat[r] / d acts_j = W_dec[c_j]: one dot product per pair.
            grad_acts = sampled_dots(code, grad_out, W_dec).to(acts.dtype)
        if ctx.needs_input_grad[2]:
            grad_W_dec = code.by_latent(acts, grad_out)  # [d_sae, d_in]
        return None, grad_acts, grad_W_dec


class _SelectedPreacts(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        code: SparseCode,
        values: Tensor,
        x: Tensor,
        b_dec: Tensor,
        W_enc: Tensor,
        b_enc: Tensor,
    ) -> Tensor:
        ctx.code = code
        ctx.save_for_backward(x, b_dec, W_enc)
        # `values` were computed without autograd by the caller (the dense encoder matmul,
        # needed anyway to choose the pairs); a copy keeps autograd's version checks simple.
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        x, b_dec, W_enc = ctx.saved_tensors
        code: SparseCode = ctx.code
        grad = grad.contiguous()
        grad_x = grad_b_dec = grad_W_enc = grad_b_enc = None
        # Sum of the gradient per latent: [d_sae].
        per_latent = torch.zeros(code.d_sae, dtype=grad.dtype, device=grad.device)
        per_latent.index_add_(0, code.cols, grad)
        if ctx.needs_input_grad[4]:
            x_c = x - b_dec  # [batch, d_in]
            grad_W_enc = code.by_latent(grad, x_c).t().contiguous()  # [d_in, d_sae]
        if ctx.needs_input_grad[5]:
            grad_b_enc = per_latent
        if ctx.needs_input_grad[3]:
            grad_b_dec = -(W_enc @ per_latent)  # pre = (x - b_dec) @ W_enc + b_enc
        if ctx.needs_input_grad[2]:
            grad_x = _decode_forward(code, grad, W_enc.t().contiguous())
        return None, None, grad_x, grad_b_dec, grad_W_enc, grad_b_enc


def sparse_decode(
    code: SparseCode, acts: Float[Tensor, " nnz"], W_dec: Float[Tensor, "d_sae d_in"]
) -> Float[Tensor, "batch d_in"]:
    """`sparse(acts) @ W_dec` (no bias), with a backward that touches only active rows."""
    return _SparseDecode.apply(code, acts, W_dec)  # type: ignore[no-any-return]


def selected_preacts(
    code: SparseCode,
    values: Float[Tensor, " nnz"],
    x: Float[Tensor, "batch d_in"],
    b_dec: Float[Tensor, " d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
) -> Float[Tensor, " nnz"]:
    """Pre-activations `((x - b_dec) @ W_enc + b_enc)[rows, cols]` given their `values`.

    The caller computes `values` (without autograd); this attaches the sparse backward.
    """
    return _SelectedPreacts.apply(code, values, x, b_dec, W_enc, b_enc)  # type: ignore[no-any-return]
