"""Pruning: exact masks, weights restored, the prunable fraction, toy models, the folder."""

from __future__ import annotations

import pytest
import torch

from polysemy.analysis.folder import read_analysis
from polysemy.analysis.pruning import (
    PruningConfig,
    analyze_pruning,
    keep_masks,
    prunable_fraction,
    prune_toy,
    pruned,
)
from polysemy.validation import ParameterError

FAST = dict(toy_steps=300, toy_samples=2000, resamples=100)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"fractions": (0.5, 1.5)}, r"fractions must be a number in \[0, 1\]"),
        ({"fractions": (-0.1,)}, r"fractions must be a number in \[0, 1\]"),
        ({"scopes": ("global", "rows")}, "scopes must be one of global, per_layer"),
        ({"tolerance": 0.0}, "tolerance must be a number in"),
        ({"toy_sparsity": (1.2,)}, r"toy_sparsity must be a number in \[0, 1\]"),
        ({"examples": 1}, "examples must be 0"),
        ({"random_draws": 0}, "random_draws must be an int >= 1"),
        ({"toy_sparsity": ()}, "toy_sparsity must be at least one value when toy is set"),
        ({"examples": 0, "toy": False}, "examples must be an int >= 2 when toy models are off"),
    ],
)
def test_config_refuses(options, match) -> None:
    with pytest.raises(ParameterError, match=match):
        PruningConfig(**options)


def test_config_adds_zero_and_sorts() -> None:
    assert PruningConfig(fractions="0.5,0.2").fractions == (0.0, 0.2, 0.5)


def test_masks_prune_exactly_the_smallest() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 5, generator=g), torch.randn(3, 10, generator=g) * 10
    kept = keep_masks([a, b], 0.5, "global")
    assert sum(int((~m).sum()) for m in kept) == 25
    pairs = list(zip([a, b], kept, strict=True))
    largest_pruned = max(float(w[~m].abs().max()) for w, m in pairs if (~m).any())
    smallest_kept = min(float(w[m].abs().min()) for w, m in pairs if m.any())
    assert largest_pruned <= smallest_kept
    per = keep_masks([a, b], 0.5, "per_layer")
    assert [int((~m).sum()) for m in per] == [10, 15]
    small, large = keep_masks([a], 0.2, "global")[0], keep_masks([a], 0.6, "global")[0]
    assert bool((large <= small).all())  # nested: what 0.2 prunes, 0.6 prunes too


def test_pruned_restores_the_weights_even_on_error() -> None:
    w = torch.randn(6, 6)
    before = w.clone()
    with pytest.raises(RuntimeError), pruned([w], keep_masks([w], 0.5, "global")):
        assert int((w == 0).sum()) == 18
        raise RuntimeError("boom")
    assert torch.equal(w, before)


def test_prunable_fraction_interpolates_the_first_crossing() -> None:
    q = torch.tensor([0.0, 0.2, 0.4, 0.6])
    loss = torch.tensor([[0.0, 0.005, 0.015, 0.002], [0.0, 0.0, 0.0, 0.0], [0.02, 0, 0, 0]])
    got = prunable_fraction(q, loss, 0.01)
    torch.testing.assert_close(got, torch.tensor([0.3, 0.6, 0.0], dtype=torch.float64))


def test_planted_zero_columns_are_pruned_for_free() -> None:
    """A toy model storing 5 of 20 features on an orthogonal basis (W = [Q, 0]: 75% of its
    weights exactly zero): magnitude pruning loses nothing up to 0.75; random pruning loses
    from the first step."""
    g = torch.Generator().manual_seed(0)
    W = torch.zeros(5, 20)
    W[:, :5] = torch.linalg.qr(torch.randn(5, 5, generator=g))[0]
    x = torch.rand(3000, 20, generator=g) * (torch.rand(3000, 20, generator=g) < 0.1)
    config = PruningConfig(fractions=(0.2, 0.4, 0.6, 0.75, 0.8, 0.9), tolerance=1e-3, **FAST)
    toy, per = prune_toy(W, torch.zeros(20), torch.ones(20), x, config, sparsity=0.9)
    curves = {c.scheme: c for c in toy.curves}
    assert curves["global"].loss[:5] == pytest.approx([0] * 5, abs=1e-9)
    assert 0.75 <= curves["global"].prunable.estimate <= 0.8
    assert curves["random"].prunable.estimate < 0.2
    assert curves["global"].verdict == "effect"
    assert per["global.loss"].shape == (7, 3000) and per["random.loss"].shape == (19, 7, 3000)
    assert toy.represented == 5


def test_model_is_unchanged_and_folder_written(tiny_bert, sentences, tmp_path) -> None:
    before = {k: v.clone() for k, v in tiny_bert.model.state_dict().items()}
    out = tmp_path / "prune"
    result = analyze_pruning(
        tiny_bert, sentences, examples=16, fractions=(0.5, 0.9), toy_sparsity=(0.0,),
        out=out, **FAST,
    )  # fmt: skip
    after = tiny_bert.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    folder = read_analysis(out, "pruning")
    assert set(folder.summary["curves"]) == {"global", "per_layer", "random"}
    assert folder.summary["weights"] == result.weights == 2 * (4 * 32 * 32 + 2 * 32 * 64)
    tensors = folder.tensors("curves.safetensors")
    assert tensors["global.cosine"].shape == (3, 16)
    torch.testing.assert_close(tensors["global.cosine"][0], torch.ones(16, dtype=torch.float64))
    assert tensors["toy0.global.loss"].shape == (3, 2000)
    assert tensors["random.cosine"].shape == (19, 3, 16)
    layers = folder.json("layers.json")
    assert len(layers) == 12 and all(len(v) == 3 for v in layers.values())
    full = analyze_pruning(tiny_bert, sentences, examples=8, fractions=(1.0,), toy=False,
                           resamples=100)  # fmt: skip
    assert {c.scheme: c.loss[-1] for c in full.curves}["global"] > 0.0  # every weight pruned


def test_calibration_rates() -> None:
    from polysemy.analysis.pruning_calibration import calibrate_pruning

    cal = calibrate_pruning(trials=2, samples=500, resamples=100)
    assert cal.recovered.n == 2 and cal.false_negative.estimate == 0.0
    assert cal.to_dict()["false_positive"]["n"] == 2


def test_rank_test_needs_19_masks() -> None:
    from polysemy.analysis.pruning import random_mask_range

    null, decidable = random_mask_range(torch.arange(19, dtype=torch.float64))
    assert decidable and null.high == 18.0 and null.low == 0.0
    assert not random_mask_range(torch.arange(18, dtype=torch.float64))[1]


def test_toy_only_needs_no_model(tmp_path) -> None:
    result = analyze_pruning(None, examples=0, toy_sparsity=(0.0, 0.99), **FAST)
    assert result.curves == () and [t.sparsity for t in result.toys] == [0.0, 0.99]
    for toy in result.toys:
        q = {c.scheme: c.prunable for c in toy.curves}
        assert q["global"].estimate > q["random"].high
    with pytest.raises(ParameterError, match="examples must be 0"):
        analyze_pruning(None, examples=5, **FAST)


@pytest.mark.slow
def test_minilm_magnitude_beats_random_and_weights_come_back(sentences) -> None:
    from polysemy.models import load_model

    minilm = load_model("minilm")
    before = {k: v.clone() for k, v in minilm.model.state_dict().items()}
    result = analyze_pruning(
        minilm, sentences, examples=40, fractions=(0.1, 0.3, 0.5, 0.7), toy=False,
        tolerance=0.01, resamples=200,
    )  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in minilm.model.state_dict().items())
    curves = {c.scheme: c for c in result.curves}
    assert curves["global"].loss[0] == pytest.approx(0.0, abs=1e-6)
    assert curves["global"].loss[-1] > curves["global"].loss[1]
    assert curves["global"].prunable.estimate > curves["random"].prunable.estimate
    assert result.weights == 6 * (4 * 384 * 384 + 2 * 384 * 1536)
