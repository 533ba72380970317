"""The sparse TopK path equals dense autograd, forward and backward (also in float64 gradcheck)."""

from __future__ import annotations

import torch

from polysemy.sae.sparse_decode import SparseCode, selected_preacts, sparse_decode


def _setup(dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(0)
    batch, d_in, d_sae, k = 6, 5, 11, 3
    x = torch.randn(batch, d_in, generator=g, dtype=dtype)
    W_enc = torch.randn(d_in, d_sae, generator=g, dtype=dtype, requires_grad=True)
    b_enc = torch.randn(d_sae, generator=g, dtype=dtype, requires_grad=True)
    b_dec = torch.randn(d_in, generator=g, dtype=dtype, requires_grad=True)
    W_dec = torch.randn(d_sae, d_in, generator=g, dtype=dtype, requires_grad=True)
    with torch.no_grad():
        pre = (x - b_dec) @ W_enc + b_enc
        idx = pre.topk(k, dim=1).indices.sort(dim=1).values
    return x, W_enc, b_enc, b_dec, W_dec, idx, k, d_sae


def test_gradcheck_of_both_functions() -> None:
    x, W_enc, b_enc, b_dec, W_dec, idx, _, d_sae = _setup()
    code = SparseCode.from_topk(idx, d_sae)

    def f(W_enc, b_enc, b_dec, W_dec):
        with torch.no_grad():
            vals = ((x - b_dec) @ W_enc + b_enc).gather(1, idx).reshape(-1)
        acts = selected_preacts(code, vals, x, b_dec, W_enc, b_enc)
        return sparse_decode(code, acts, W_dec) + b_dec

    assert torch.autograd.gradcheck(f, (W_enc, b_enc, b_dec, W_dec))


def test_matches_dense_autograd_and_input_gradient() -> None:
    x, W_enc, b_enc, b_dec, W_dec, idx, _, d_sae = _setup()
    x = x.clone().requires_grad_(True)
    code = SparseCode.from_topk(idx, d_sae)
    with torch.no_grad():
        vals = ((x - b_dec) @ W_enc + b_enc).gather(1, idx).reshape(-1)
    y1 = sparse_decode(code, selected_preacts(code, vals, x, b_dec, W_enc, b_enc), W_dec)
    pre = (x - b_dec) @ W_enc + b_enc
    z = torch.zeros_like(pre).scatter(1, idx, pre.gather(1, idx))
    y2 = z @ W_dec
    torch.testing.assert_close(y1, y2)
    g = torch.randn_like(y1)
    grads1 = torch.autograd.grad(y1, (x, W_enc, b_enc, b_dec, W_dec), g)
    grads2 = torch.autograd.grad(y2, (x, W_enc, b_enc, b_dec, W_dec), g)
    for a, b in zip(grads1, grads2, strict=True):
        torch.testing.assert_close(a, b)


def test_flat_code_with_empty_rows() -> None:
    d_sae = 7
    # rows 0 and 2 active, row 1 empty: flat = row * d_sae + latent, sorted
    flat = torch.tensor([0 * d_sae + 1, 0 * d_sae + 5, 2 * d_sae + 3])
    code = SparseCode.from_flat(flat, batch=3, d_sae=d_sae)
    assert code.rows.tolist() == [0, 0, 2] and code.cols.tolist() == [1, 5, 3]
    W_dec = torch.randn(d_sae, 4, dtype=torch.float64)
    out = sparse_decode(code, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), W_dec)
    torch.testing.assert_close(out[0], W_dec[1] + 2 * W_dec[5])
    torch.testing.assert_close(out[1], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(out[2], 3 * W_dec[3])
