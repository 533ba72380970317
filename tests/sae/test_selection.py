"""Choosing the k active latents fast: the grouped exact top-k, the reused pre-activation
buffer and the bfloat16 selection matmul (whose chosen values are recomputed exactly)."""

from __future__ import annotations

import pytest
import torch

from polysemy.sae import SAEConfig, TrainConfig, build_sae, train_sae
from polysemy.sae.fast_topk import GROUP, flat_topk, row_topk
from polysemy.sae.sparse_decode import SparseCode


def _sorted_values(values: torch.Tensor) -> torch.Tensor:
    return values.sort(dim=1, descending=True).values


@pytest.mark.parametrize("d, k", [(3072, 32), (1536, 64), (512, 32), (96, 5), (100, 7)])
def test_row_topk_has_the_values_of_torch_topk(d: int, k: int) -> None:
    g = torch.Generator().manual_seed(d + k)
    # A per-column offset makes some groups far likelier to win, as trained encoders do.
    pre = torch.randn(257, d, generator=g) + 2 * torch.randn(d, generator=g)
    values, idx = row_topk(pre, k)
    assert values.shape == idx.shape == (257, k)
    assert torch.equal(pre.gather(1, idx), values)  # the indices point at the values
    assert all(len(set(r)) == k for r in idx.tolist())  # no column chosen twice in a row
    expected = pre.topk(k, dim=1).values
    assert torch.equal(_sorted_values(values), expected)


def test_row_topk_with_ties_at_the_kth_value() -> None:
    # Integer values in a small range: many ties, including at the k-th place.
    g = torch.Generator().manual_seed(1)
    d, k = GROUP * 64, 16
    pre = torch.randint(0, 6, (300, d), generator=g).float()
    values, idx = row_topk(pre, k)
    assert torch.equal(_sorted_values(values), pre.topk(k, dim=1).values)
    assert torch.equal(pre.gather(1, idx), values)
    # no column chosen twice in a row
    assert all(len(set(r)) == k for r in idx.tolist())


def test_row_topk_rejects_a_bad_k() -> None:
    with pytest.raises(ValueError, match=r"k must be in \[1, 8\]; got 9"):
        row_topk(torch.zeros(2, 8), 9)


@pytest.mark.parametrize("row_length", [3072, 31 * 64, 1000])
def test_flat_topk_has_the_values_of_torch_topk(row_length: int) -> None:
    g = torch.Generator().manual_seed(row_length)
    # Strong per-column offsets: a sample that missed columns would misjudge the threshold.
    rows = torch.randn(600, row_length, generator=g) + 3 * torch.randn(row_length, generator=g)
    flat = torch.relu(rows).reshape(-1)
    n_keep = 32 * 600
    values, idx = flat_topk(flat, n_keep, row_length=row_length)
    assert values.shape == idx.shape == (n_keep,)
    assert torch.equal(flat[idx], values)
    assert idx.unique().numel() == n_keep
    assert torch.equal(values.sort().values, flat.topk(n_keep).values.sort().values)


def test_flat_topk_with_ties_and_with_too_few_positive_values() -> None:
    g = torch.Generator().manual_seed(5)
    ties = torch.randint(0, 4, (400 * 256,), generator=g).float()
    values, idx = flat_topk(ties, 5000, row_length=256)
    assert torch.equal(values.sort().values, ties.topk(5000).values.sort().values)
    assert torch.equal(ties[idx], values)
    # Adversarial: exactly the sampled positions (stride 31) hold the large values, so the
    # sample puts the threshold above all other values and too few candidates pass; the
    # fallback still returns the exact top n.
    skewed = torch.rand(400 * 256, generator=g)
    skewed[::31] += 10.0
    values, idx = flat_topk(skewed, 5000, row_length=256)
    assert torch.equal(values.sort().values, skewed.topk(5000).values.sort().values)
    assert torch.equal(skewed[idx], values)
    with pytest.raises(ValueError, match=r"n_keep must be in \[1, 8\] for a 1-D tensor; got 9"):
        flat_topk(torch.zeros(8), 9)


def _sae_and_data(dtype: torch.dtype | None):
    config = SAEConfig(arch="topk", d_in=48, d_sae=GROUP * 48, k=8)
    sae = build_sae(config, generator=torch.Generator().manual_seed(0)).train()
    sae.selection_dtype = dtype
    x = torch.randn(512, 48, generator=torch.Generator().manual_seed(1))
    return sae, x


def test_scratch_buffer_is_reused_and_equals_the_plain_preactivations() -> None:
    sae, x = _sae_and_data(None)
    first = sae.scratch_pre_activations(x)
    ptr = first.data_ptr()
    torch.testing.assert_close(first, sae.pre_activations(x).detach())
    second = sae.scratch_pre_activations(x * 2)
    assert second.data_ptr() == ptr  # no new 50 MB allocation per step
    sae.release_scratch_()
    assert sae._scratch is None  # nothing [batch, d_sae] kept in a copied or saved SAE
    again = sae.scratch_pre_activations(x)
    assert again.data_ptr() != ptr
    torch.testing.assert_close(again, sae.pre_activations(x).detach())


def test_bfloat16_selection_keeps_exact_values_and_nearly_the_same_latents() -> None:
    sae32, x = _sae_and_data(None)
    sae16, _ = _sae_and_data(torch.bfloat16)
    out32, out16 = sae32(x), sae16(x)
    # The chosen latents' values are float32 pre-activations, not bfloat16 roundings.
    exact = sae32.pre_activations(x).detach().clamp_min(0).gather(1, out16.latent_indices)
    torch.testing.assert_close(out16.latent_values, exact, rtol=0, atol=1e-6)
    assert out16.x_hat.dtype == torch.float32
    same = sum(
        len(set(a) & set(b))
        for a, b in zip(out16.latent_indices.tolist(), out32.latent_indices.tolist(), strict=True)
    )
    agreement = same / out32.latent_indices.numel()
    assert agreement >= 0.95
    # Inference never uses the lower precision.
    sae16.eval()
    torch.testing.assert_close(sae16(x).x_hat, sae32.eval()(x).x_hat)


def test_exact_preacts_at_the_pairs_of_a_code() -> None:
    sae, x = _sae_and_data(None)
    idx = sae.pre_activations(x).detach().topk(8, dim=1).indices.sort(dim=1).values
    code = SparseCode.from_topk(idx, sae.d_sae)
    got = sae.exact_preacts(code, x)
    torch.testing.assert_close(got, sae.pre_activations(x).detach().gather(1, idx).reshape(-1))


def test_training_with_bfloat16_selection_matches_float32_quality() -> None:
    g = torch.Generator().manual_seed(2)
    features = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)
    codes = (torch.rand(8192, 64, generator=g) < 0.05) * torch.rand(8192, 64, generator=g)
    acts = codes @ features
    config = SAEConfig(arch="topk", d_in=32, d_sae=128, k=4)
    fvu = {}
    for dtype in ("float32", "bfloat16"):
        train = TrainConfig(tokens=8192 * 12, batch_size=512, seed=0, selection_dtype=dtype)
        result = train_sae(acts, config, train)
        assert result.sae.selection_dtype is None  # the returned SAE encodes exactly
        fvu[dtype] = result.fvu
    assert fvu["float32"] < 0.6  # it learned something
    assert abs(fvu["bfloat16"] - fvu["float32"]) < 0.01


def test_selection_dtype_is_validated_and_auto_resolves_on_cpu() -> None:
    with pytest.raises(ValueError, match="selection_dtype must be one of auto, float32, bfloat16"):
        TrainConfig(selection_dtype="float16")  # type: ignore[arg-type]
    cpu = torch.device("cpu")
    assert TrainConfig(selection_dtype="float32").resolved_selection_dtype(cpu) == torch.float32
    assert TrainConfig(selection_dtype="bfloat16").resolved_selection_dtype(cpu) == torch.bfloat16
    assert TrainConfig().resolved_selection_dtype(cpu) in (torch.float32, torch.bfloat16)
