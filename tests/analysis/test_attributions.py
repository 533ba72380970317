"""Attributions: captum's methods on a tiny BERT, planted top tokens, stability and its null."""

from __future__ import annotations

import json

import pytest
import torch

from polysemy.analysis.attributions import (
    AttributionsConfig,
    TargetFunction,
    analyze_attributions,
    make_baseline,
    random_ranking_null,
    shared_positions,
    target_reading,
    token_scores,
    top_k_overlap,
)
from polysemy.analysis.attributions_calibration import calibrate_attributions
from polysemy.analysis.folder import read_analysis
from polysemy.analysis.replay import Example, encode_examples
from polysemy.models.sites import get_site
from polysemy.validation import ParameterError

from .conftest import random_sae

SITE = "encoder.layer.1.output"
FAST = dict(steps=8, seeds=2, noise_samples=3, resamples=100, examples=4)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"methods": ("saliency", "lime")}, "methods must be one of saliency"),
        ({"methods": "saliency,saliency"}, "methods must be a list without repeats"),
        ({"baselines": ("zero", "ones")}, "baselines must be one of zero, pad, mask, noise"),
        ({"target": "feature"}, "target must be feature:F, neuron:N or direction"),
        ({"target": "neuron:-1"}, "target must be"),
        ({"examples": 1}, "examples must be an int >= 2"),
        ({"top_k": 0}, "top_k must be an int >= 1"),
        ({"noise_std": 0.0}, "noise_std must be a number > 0"),
    ],
)
def test_config_refuses(options, match) -> None:
    with pytest.raises(ParameterError, match=match):
        AttributionsConfig(**options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"target": "feature:64"}, "target must be a feature below d_sae=64"),
        ({"target": "neuron:32"}, "target must be a neuron below the site's width 32"),
        ({"target": "direction"}, "direction must be a file"),
        ({"target": ""}, "target must be"),
    ],
)
def test_out_of_range_targets_write_nothing(tiny_bert, tmp_path, options, match) -> None:
    out = tmp_path / "never"
    with pytest.raises(ParameterError, match=match):
        analyze_attributions(tiny_bert, sae=random_sae(32), site=SITE, out=out, **options)
    assert not out.exists()


def test_direction_of_the_wrong_width_is_refused(tiny_bert) -> None:
    with pytest.raises(ParameterError, match="direction must be a direction of 32 numbers"):
        analyze_attributions(tiny_bert, target="direction", site=SITE, direction=torch.ones(7))


def _sentence(tiny_bert, site_name: str, d: torch.Tensor):
    ex = encode_examples(
        tiny_bert.tokenizer, ["the quick brown fox jumps over the dog"], seq_len=32
    )
    ids = torch.tensor([ex[0].ids])
    text = torch.tensor(ex[0].text)
    site = get_site(tiny_bert, site_name)
    reading = target_reading("direction", -1, None, d)
    f = TargetFunction(tiny_bert, site, reading, torch.ones_like(ids), text)
    table = tiny_bert.model.get_input_embeddings().weight.detach()
    return f, table[ids], text, table


def test_integrated_gradients_are_complete(tiny_bert) -> None:
    """Σ_t IG_t = f(e) - f(b) (completeness), for every baseline; saliency is >= 0."""
    d = torch.randn(32, generator=torch.Generator().manual_seed(1))
    f, embeds, text, table = _sentence(tiny_bert, SITE, d)
    for kind in ("zero", "pad", "mask", "noise"):
        base = make_baseline(kind, embeds, text, table, tiny_bert.tokenizer, seed=3)
        assert torch.equal(base[0, ~text], embeds[0, ~text])  # special tokens stay
        scores, delta = token_scores(f, embeds, "integrated_gradients", baseline=base, steps=64)
        with torch.no_grad():
            gap = float(f(embeds)[0] - f(base)[0])
        assert float(scores.sum()) == pytest.approx(gap, rel=0.02, abs=1e-3)
        assert delta is not None and delta < 0.02
    sal, _ = token_scores(f, embeds, "saliency")
    assert bool((sal >= 0).all())
    one, _ = token_scores(f, embeds, "smoothgrad", stdev=0.01, seed=5)
    two, _ = token_scores(f, embeds, "smoothgrad", stdev=0.01, seed=5)
    other, _ = token_scores(f, embeds, "smoothgrad", stdev=0.01, seed=6)
    assert torch.equal(one, two) and not torch.equal(one, other)  # seeded, without global state


def test_separable_site_gives_the_exact_attribution(tiny_bert) -> None:
    """At `embeddings.output` each token's value depends on its own embedding only, so
    integrated gradients from zero equal d·h_t(e_t) - d·h_t(0) per token."""
    d = torch.randn(32, generator=torch.Generator().manual_seed(2))
    f, embeds, text, table = _sentence(tiny_bert, "embeddings.output", d)
    base = make_baseline("zero", embeds, text, table, tiny_bert.tokenizer, seed=0)
    scores, _ = token_scores(f, embeds, "integrated_gradients", baseline=base, steps=128)
    from polysemy.models.sites import read_sites

    with torch.no_grad(), read_sites(tiny_bert, ["embeddings.output"]) as r:
        h = r.run(inputs_embeds=embeds)["embeddings.output"][0]
        h0 = r.run(inputs_embeds=base)["embeddings.output"][0]
    exact = ((h - h0) @ d)[text]
    torch.testing.assert_close(scores[text].float(), exact, rtol=0.02, atol=2e-3)


def test_shared_positions_skip_the_edited_word() -> None:
    a = Example([101, 5, 6, 7, 8, 102], [False, True, True, True, True, False])
    b = Example([101, 5, 9, 9, 7, 8, 102], [False, True, True, True, True, True, False])
    pa, pb = shared_positions(a, b)
    assert pa == [1, 3, 4] and pb == [1, 4, 5]


def test_top_k_overlap_and_random_null() -> None:
    assert top_k_overlap(torch.tensor([4.0, 3, 2, 1]), torch.tensor([1.0, 3, 2, 4]), 2) == 0.5
    null = random_ranking_null([10] * 50, 3, 500, seed=0)
    assert abs(float(null["spearman"].mean())) < 0.02
    assert float(null["top_k"].mean()) == pytest.approx(0.3, abs=0.02)  # k / n


def test_analysis_folder_and_determinism(tiny_bert, tmp_path) -> None:
    out = tmp_path / "attr"
    result = analyze_attributions(tiny_bert, target="neuron:3", site=SITE, out=out, **FAST)
    folder = read_analysis(out, "attributions")
    assert folder.summary["n"] == 4 and folder.summary["target"] == "neuron:3"
    comparisons = folder.summary["comparisons"]
    for name in (
        "control/saliency",
        "control/integrated_gradients",
        "baselines/zero~mask",
        "baselines/mask~noise",
        "seeds/integrated_gradients(noise)",
        "seeds/smoothgrad",
    ):
        s = comparisons[name]["spearman"]
        assert -1.0 <= s["ci"][0] <= s["mean"] <= s["ci"][1] <= 1.0
        assert abs(s["null_mean"]) < 0.15 and s["verdict"] in ("effect", "no effect",
                                                                "inconclusive")  # fmt: skip
    tensors = folder.tensors("stability.safetensors")
    assert tensors["control/saliency.spearman"].shape == (4,)
    records = json.loads((out / "attributions.json").read_text())
    assert len(records) == 4 and len(records[0]["tokens"]) == len(records[0]["scores"]["saliency"])
    again = analyze_attributions(tiny_bert, target="neuron:3", site=SITE, **FAST)
    for key, value in result.per_example.items():
        torch.testing.assert_close(again.per_example[key], value, equal_nan=True)


def test_feature_target_only_on_sentences_where_it_fires(tiny_bert) -> None:
    sae = random_sae(32)
    result = analyze_attributions(
        tiny_bert, sae=sae, target="feature:5", site=SITE, methods="gradient_x_input",
        baselines="zero", **FAST,
    )  # fmt: skip
    assert bool((result.per_example["target"] > 0).all())
    assert set(result.summary()["comparisons"]) == {"control/gradient_x_input"}


def test_calibration_recovers_the_planted_token() -> None:
    cal = calibrate_attributions(trials=8, stability_trials=20, steps=16)
    exact = cal.recovery["exact"]
    assert exact["integrated_gradients"].estimate >= 7 / 8
    assert exact["integrated_gradients"].estimate > cal.chance["exact"].high
    assert cal.stability_false_negative.estimate == 0.0
    assert cal.stability_false_positive.estimate <= 0.1
    assert cal.to_dict()["recovery"]["deep"]["saliency"]["n"] == 8


@pytest.mark.slow
def test_minilm_stability_and_planted_token() -> None:
    from polysemy.models import load_model

    minilm = load_model("minilm")
    result = analyze_attributions(
        minilm, target="neuron:7", site="encoder.layer.3.output", examples=12, steps=16,
        seeds=2, noise_samples=4, resamples=200,
    )  # fmt: skip
    comparisons = result.summary()["comparisons"]
    ig = comparisons["control/integrated_gradients"]["spearman"]
    assert ig["verdict"] == "effect" and ig["mean"] > ig["null_range"][1]
    assert result.ig_delta is not None and result.ig_delta < 0.1
    cal = calibrate_attributions(minilm, trials=10, stability_trials=10, steps=32)
    assert cal.recovery["exact"]["integrated_gradients"].estimate >= 0.9
