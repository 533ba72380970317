"""Recovery of planted features: golden values, chunking invariance, validation."""

from __future__ import annotations

import math

import pytest
import torch

from polysemy.analysis.recovery import load_truth, recovery_scores


def test_golden_values_by_hand() -> None:
    truth = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    c = math.cos(math.radians(30))
    W_dec = torch.tensor(
        [
            [3.0, 0.0, 0.0],  # feature 0 exactly (norm does not matter)
            [0.0, c, 0.5],  # 30 degrees from feature 1, 60 from feature 2
            [0.0, 0.0, -1.0],  # anti-parallel to feature 2: cosine -1, not a recovery
            [2.0, 0.0, 0.0],  # duplicate of latent 0
            [1.0, 0.0, 0.0],  # another duplicate of latent 0
        ]
    )
    r = recovery_scores(W_dec, truth)
    # true -> best learned: 1, cos 30°, cos 60° = 0.5
    assert r.max_cosine.tolist() == pytest.approx([1.0, c, 0.5])
    assert r.best_latent.tolist()[:2] == [0, 1]
    assert r.mean_max_cosine == pytest.approx((1 + c + 0.5) / 3)
    # learned -> best true: 1, c, 0 (−1 vs the others' 0), 1, 1
    assert r.mean_max_cosine_learned == pytest.approx((1 + c + 0 + 1 + 1) / 5)
    assert r.fraction_recovered == pytest.approx(1 / 3)  # only feature 0 is above 0.9
    # pairs above 0.9: (0,3), (0,4), (3,4); latents 3 and 4 repeat an earlier one
    assert r.duplicate_pairs == 3
    assert r.duplicate_latents == 2
    assert (r.n_features, r.d_sae, r.threshold) == (3, 5, 0.9)
    lower = recovery_scores(W_dec, truth, threshold=0.8)
    assert lower.fraction_recovered == pytest.approx(2 / 3)  # cos 30° = 0.866 > 0.8


@pytest.mark.parametrize("chunk_size", [1, 3, 17, 1024])
def test_chunking_does_not_change_the_result(chunk_size: int) -> None:
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(40, 8, generator=g)
    W_dec = torch.cat([truth[:30] + 0.05 * torch.randn(30, 8, generator=g), truth[:5]])
    full = recovery_scores(W_dec, truth, chunk_size=4096)
    part = recovery_scores(W_dec, truth, chunk_size=chunk_size)
    assert part.metrics() == pytest.approx(full.metrics())
    assert torch.equal(part.best_latent, full.best_latent)
    assert full.duplicate_latents == 5  # the 5 exact copies at the end
    assert full.duplicate_pairs == 5


def test_zero_decoder_row_is_not_nan() -> None:
    truth = torch.eye(2)
    r = recovery_scores(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), truth)
    assert r.mean_max_cosine_learned == pytest.approx(0.5)
    assert not math.isnan(r.mean_max_cosine)


@pytest.mark.parametrize(
    ("W_dec", "truth", "kwargs", "err", "match"),
    [
        (torch.eye(3), torch.eye(2), {}, ValueError, "d_in=3 but truth features have d_in=2"),
        (torch.zeros(3), torch.eye(3), {}, ValueError, "W_dec must be a non-empty 2-D"),
        ([[1.0]], torch.eye(1), {}, TypeError, "W_dec must be a torch.Tensor"),
        (torch.eye(2), torch.full((2, 2), float("nan")), {}, ValueError, "truth contains NaN"),
        (torch.eye(2), torch.eye(2), {"threshold": 1.5}, ValueError, r"threshold must be"),
        (torch.eye(2), torch.eye(2), {"chunk_size": 0}, ValueError, "chunk_size must be"),
    ],
)
def test_bad_input(W_dec, truth, kwargs, err, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(err, match=match):
        recovery_scores(W_dec, truth, **kwargs)


def test_load_truth(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    feats = torch.randn(5, 3)
    save_file({"features": feats}, str(tmp_path / "truth.safetensors"))
    assert torch.equal(load_truth(str(tmp_path)), feats)
    assert torch.equal(load_truth(str(tmp_path / "truth.safetensors")), feats)
    with pytest.raises(FileNotFoundError, match=r"expected a truth\.safetensors"):
        load_truth(str(tmp_path / "missing"))
    save_file({"other": feats}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="no 'features' tensor"):
        load_truth(str(tmp_path / "bad.safetensors"))
    (tmp_path / "pickle.safetensors").write_bytes(b"\x80\x04\x95 not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_truth(str(tmp_path / "pickle.safetensors"))
