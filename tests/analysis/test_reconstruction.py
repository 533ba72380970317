"""Reconstruction metrics: golden values on a hand-computed example, batch-size invariance,
validation branches."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from polysemy.analysis.reconstruction import ReconstructionResult, evaluate


class AffineReLUSAE(nn.Module):
    """A real ReLU SAE in our checkpoint convention (DESIGN.md section 4)."""

    def __init__(self, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor) -> None:
        super().__init__()
        self.W_enc = nn.Parameter(W_enc)
        self.b_enc = nn.Parameter(b_enc)
        self.W_dec = nn.Parameter(W_dec)
        self.b_dec = nn.Parameter(b_dec)

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec + self.b_dec


def golden_sae() -> AffineReLUSAE:
    # latents 0 and 1 copy the positive part of each coordinate; latent 2 never fires
    W_enc = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    W_dec = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    return AffineReLUSAE(W_enc, torch.zeros(3), W_dec, torch.zeros(2))


# x_hat = relu(x): only the last row is reconstructed wrongly (as 0).
GOLDEN_X = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [-2.0, 0.0]])


def test_golden_values_by_hand() -> None:
    r = evaluate(golden_sae(), GOLDEN_X, batch_size=3)
    # mean x = (0.5, 1.5); Σ||x - mean||² = 13 + 11 = 24; Σ||x - x̂||² = ||(-2, 0)||² = 4
    assert r.fvu == pytest.approx(4 / 24)
    assert r.mse == pytest.approx(4 / (4 * 2))
    # residual per dim: (0, 0, 0, -2) with mean -0.5 -> Σ(r - r̄)² = 3; (0, 0, 0, 0) -> 0
    assert r.explained_variance == pytest.approx(1 - 3 / 24)
    # cos = 1, 1, 1 and 0 (nothing reconstructed); same for the norm ratio
    assert r.cosine == pytest.approx(0.75)
    assert r.l2_ratio == pytest.approx(0.75)
    # active latents per row: 1, 1, 2, 0
    assert r.l0 == pytest.approx(1.0)
    assert r.dead_fraction == pytest.approx(1 / 3)
    # latents 0 and 1 fire on half the rows: dense at 10%, not at 50% ("more than")
    assert r.dense_fraction == pytest.approx(2 / 3)
    assert r.latent_frequency.tolist() == [0.5, 0.5, 0.0]
    assert r.rows == 4 and r.d_sae == 3
    strict = evaluate(golden_sae(), GOLDEN_X, dense_threshold=0.5)
    assert strict.dense_fraction == 0.0


def test_zero_rows_are_skipped_by_cosine_and_l2_ratio() -> None:
    x = torch.cat([GOLDEN_X[:3], torch.zeros(1, 2)])
    r = evaluate(golden_sae(), x)
    assert r.cosine == pytest.approx(1.0)
    assert r.l2_ratio == pytest.approx(1.0)
    assert r.fvu == 0.0


def test_b_dec_offset_and_nonzero_bias() -> None:
    # shifting the data and b_dec together changes nothing: metrics see only the residual
    shift = torch.tensor([100.0, -50.0])
    sae = golden_sae()
    with torch.no_grad():
        sae.b_dec.copy_(shift)
    r = evaluate(sae, GOLDEN_X + shift)
    assert r.fvu == pytest.approx(4 / 24, rel=1e-6)
    assert r.explained_variance == pytest.approx(1 - 3 / 24, rel=1e-6)


def random_case(rows: int = 1000, d_in: int = 16, d_sae: int = 48) -> tuple[AffineReLUSAE, Tensor]:
    g = torch.Generator().manual_seed(0)
    # a large common offset, as in residual streams: a naive Σx² - n·mean² would cancel badly
    x = torch.randn(rows, d_in, generator=g) + 30.0
    W_dec = torch.randn(d_sae, d_in, generator=g) / d_in**0.5
    sae = AffineReLUSAE(
        W_dec.T.clone(),
        torch.randn(d_sae, generator=g) * 0.1 - 0.3,
        W_dec,
        torch.full((d_in,), 30.0),
    )
    return sae, x


def reference(sae: AffineReLUSAE, x: Tensor) -> dict[str, float]:
    """The formulas written directly on the whole set in float64."""
    with torch.no_grad():
        z = sae.encode(x)
        xh = sae.decode(z).double()
    x = x.double()
    resid = x - xh
    var = ((x - x.mean(0)) ** 2).sum()
    cos = (x * xh).sum(1) / (x.norm(dim=1) * xh.norm(dim=1))
    return {
        "fvu": float((resid**2).sum() / var),
        "explained_variance": float(1 - ((resid - resid.mean(0)) ** 2).sum() / var),
        "cosine": float(cos.mean()),
        "l2_ratio": float((xh.norm(dim=1) / x.norm(dim=1)).mean()),
        "l0": float((z != 0).sum(1).double().mean()),
        "dead_fraction": float(((z != 0).sum(0) == 0).double().mean()),
        "dense_fraction": float(((z != 0).double().mean(0) > 0.1).double().mean()),
    }


@pytest.mark.parametrize("batch_size", [1, 7, 64, 333, 1000, 4096])
def test_matches_whole_set_formulas_for_any_batch_size(batch_size: int) -> None:
    sae, x = random_case()
    r = evaluate(sae, x, batch_size=batch_size)
    ref = reference(sae, x)
    for name, value in ref.items():
        assert getattr(r, name) == pytest.approx(value, rel=1e-5, abs=1e-9), name


def test_batch_size_invariance_catches_per_batch_averaging() -> None:
    sae, x = random_case()
    results = [evaluate(sae, x, batch_size=b) for b in (10, 100, 1000)]
    assert max(r.fvu for r in results) - min(r.fvu for r in results) < 1e-6 * results[0].fvu
    # the bug this guards against: the mean of per-batch FVUs is visibly different
    with torch.no_grad():
        per_batch = []
        for chunk in x.split(10):
            xh = sae.decode(sae.encode(chunk))
            per_batch.append(
                float(((chunk - xh) ** 2).sum() / ((chunk - chunk.mean(0)) ** 2).sum())
            )
    assert abs(sum(per_batch) / len(per_batch) - results[0].fvu) > 0.05 * results[0].fvu


def test_max_rows_and_training_flag_restored() -> None:
    sae, x = random_case()
    sae.train()
    r = evaluate(sae, x, batch_size=64, max_rows=100)
    assert r.rows == 100
    assert r.fvu == pytest.approx(reference(sae, x[:100])["fvu"], rel=1e-5)
    assert sae.training


def test_metrics_dict_has_the_contract_keys() -> None:
    r = evaluate(golden_sae(), GOLDEN_X)
    assert isinstance(r, ReconstructionResult)
    keys = {"fvu", "mse", "explained_variance", "cosine", "l0", "dead_fraction"}
    keys |= {"dense_fraction", "l2_ratio"}
    assert keys <= set(r.metrics())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"dense_threshold": 1.5}, r"dense_threshold must be a number in \[0, 1\]; got 1.5"),
        ({"max_rows": 0}, "max_rows must be an int >= 1; got 0"),
        ({"split": "test"}, "split must be one of train, heldout, all; got 'test'"),
        ({"splt": "test"}, "splt must be a field of EvalConfig"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        evaluate(golden_sae(), GOLDEN_X, **kwargs)


def test_refuses_nan_rows_naming_them() -> None:
    x = GOLDEN_X.clone()
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf \(rows \[2\]"):
        evaluate(golden_sae(), x, batch_size=2)


def test_refuses_width_mismatch_and_bad_inputs() -> None:
    with pytest.raises(ValueError, match="d_in=2 but the activations have d_in=3"):
        evaluate(golden_sae(), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="2-D tensor"):
        evaluate(golden_sae(), torch.zeros(4))
    with pytest.raises(TypeError, match="acts must be a Tensor"):
        evaluate(golden_sae(), [[1.0, 2.0]])
    with pytest.raises(ValueError, match="zero variance"):
        evaluate(golden_sae(), torch.ones(5, 2))
    with pytest.raises(ValueError, match="no rows"):
        evaluate(golden_sae(), torch.zeros(0, 2))


def test_store_path_and_split_match_the_rows_read_directly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from polysemy.activations.store import ActivationStore, StoreWriter

    sae, x = random_case(rows=900)
    with StoreWriter(tmp_path / "s", d_in=16, dtype="float32", source={}, shard_rows=100) as w:
        w.append(x)
    store = ActivationStore(tmp_path / "s")
    for split in ("heldout", "train", "all"):
        lo, hi = store.split_range(split)
        by_path = evaluate(sae, str(tmp_path / "s"), split=split, batch_size=64)
        direct = evaluate(sae, x[lo:hi], batch_size=hi - lo)
        assert by_path.rows == hi - lo
        assert by_path.fvu == pytest.approx(direct.fvu, rel=1e-6)
        assert by_path.dead_fraction == direct.dead_fraction


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk", "jumprelu"])
def test_every_polysemy_architecture(arch: str) -> None:
    from polysemy.sae import sae_from_weights

    ref, x = random_case()
    extra: dict = {}
    if arch in ("topk", "batchtopk"):
        extra["k"] = 5
    if arch in ("jumprelu", "batchtopk"):
        extra["threshold"] = torch.full((48,), 0.2)
    sae = sae_from_weights(
        arch,
        W_enc=ref.W_enc.data,
        b_enc=ref.b_enc.data,
        W_dec=ref.W_dec.data,
        b_dec=ref.b_dec.data,
        **extra,
    )
    sae.train()  # evaluation must use the inference rule (batchtopk: the threshold)
    r = evaluate(sae, x, batch_size=100)
    assert sae.training
    with torch.no_grad():
        sae.eval()
        z = sae.encode(x)
    assert r.l0 == pytest.approx(float((z != 0).sum(1).double().mean()))
    if arch == "topk":
        assert r.l0 <= 5
    assert 0.0 <= r.dead_fraction <= 1.0 and r.fvu > 0
