"""Ablation: effects equal a full rerun, planted readout directions are found, random ones are
not, and bad targets are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from polysemy.analysis.ablation import AblateConfig, ablate
from polysemy.analysis.ablation_calibration import PlantedDictionary, calibrate_ablation
from polysemy.analysis.folder import read_analysis
from polysemy.analysis.replay import encode_examples, mean_pool, pad_examples
from polysemy.models import patch_site
from polysemy.validation import ParameterError

from .conftest import random_sae

LAST = "encoder.layer.1.output"
FIRST = "encoder.layer.0.output"


def test_feature_effect_equals_a_full_rerun(tiny_bert, sentences) -> None:
    sae = random_sae(32, seed=1)
    result = ablate(tiny_bert, sentences, sae=sae, site=FIRST, targets=("feature:5", "neuron:3"),
                    examples=6, random=4, batch_size=4, directions_per_pass=3)  # fmt: skip
    assert result.effects.shape == (2, 6) and result.null_effects.shape == (2, 4, 6)
    for row, doc in enumerate(sentences[:6]):
        batch = pad_examples(encode_examples(tiny_bert.tokenizer, [doc], seq_len=128), 0)
        model_in = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        with torch.no_grad():
            clean = mean_pool(tiny_bert.model(**model_in).last_hidden_state, batch.attention_mask)

            text = batch.text

            def remove_feature(x: torch.Tensor, text: torch.Tensor = text) -> torch.Tensor:
                z = sae.encode(x[text])[:, 5]
                x = x.clone()
                x[text] -= z[:, None] * sae.W_dec[5]
                return x

            def zero_neuron(x: torch.Tensor, text: torch.Tensor = text) -> torch.Tensor:
                x = x.clone()
                x[..., 3][text] = 0.0
                return x

            for t, fn in enumerate((remove_feature, zero_neuron)):
                with patch_site(tiny_bert, FIRST, fn):
                    h = tiny_bert.model(**model_in).last_hidden_state
                expected = 1 - F.cosine_similarity(mean_pool(h, batch.attention_mask), clean)
                assert float(result.effects[t, row]) == pytest.approx(float(expected), abs=1e-6)


def test_planted_readout_direction_is_found_and_blind_ones_are_not(tiny_bert, sentences) -> None:
    g = torch.Generator().manual_seed(0)
    r = F.normalize(torch.randn(32, generator=g), dim=0)
    other = torch.randn(32, generator=g)
    other = F.normalize(other - (other @ r) * r, dim=0)
    sae = PlantedDictionary(torch.stack([r, other]))
    result = ablate(tiny_bert, sentences, sae=sae, site=LAST, targets=("feature:0", "feature:1"),
                    readout_direction=r, examples=120, random=39)  # fmt: skip
    by = {t.target: t for t in result.results}
    assert result.effect == "readout"
    assert by["feature:0"].verdict == "effect" and by["feature:0"].frac_above_null > 0.8
    assert by["feature:1"].verdict == "no effect"
    assert by["feature:1"].mean_effect < 1e-5
    # The planted feature moves the readout where it fires and not where it is silent.
    if by["feature:0"].effect_silent is not None:
        assert by["feature:0"].effect_silent.estimate < 1e-6
    randoms = [t for t in result.results if t.target.startswith("random:")]
    assert len(randoms) == 39
    assert result.false_positive_rate is not None
    assert result.false_positive_rate.estimate <= 0.1


def test_loss_effect_and_modes_on_a_causal_lm(tiny_gpt2, gpt2_docs, tmp_path: Path) -> None:
    sae = random_sae(32, seed=2)
    runs = {}
    for mode in ("remove", "project_out", "mean", "resample"):
        runs[mode] = ablate(tiny_gpt2, gpt2_docs, sae=sae, site="h.0.output",
                            targets=("feature:1",), feature_mode=mode, examples=20,
                            random=19)  # fmt: skip
        assert runs[mode].effect == "loss"
    assert not torch.equal(runs["remove"].effects, runs["mean"].effects)
    assert not torch.equal(runs["mean"].effects, runs["resample"].effects)
    out = tmp_path / "abl"
    result = ablate(tiny_gpt2, gpt2_docs, site="h.0.output", targets=("neuron:2",),
                    neuron_mode="mean", examples=20, random=19, out=out)  # fmt: skip
    folder = read_analysis(out, "ablate")
    entry = folder.summary["results"][0]
    assert entry["target"] == "neuron:2" and set(entry) >= {"mean_effect", "ci", "quantiles",
                                                             "frac_above_null"}  # fmt: skip
    assert folder.summary["null"]["directions"] == 19
    effects = folder.tensors("effects.safetensors")
    torch.testing.assert_close(effects["targets"], result.effects)
    # With 19 directions a signed effect cannot pass a two-sided 5% rank test: never "effect".
    assert all(t.verdict != "effect" for t in result.results)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": ("neuron:32",)}, r"^targets must be neurons below the site's width 32"),
        ({"targets": ("feature:64",), "sae": True}, r"^targets must be features below d_sae=64"),
        ({"targets": ("feature:1",)}, r"^sae must be given"),
        ({"targets": ("unit:1",)}, r"^targets must be a list of feature:F or neuron:N"),
        ({"targets": ()}, r"^targets must be at least one"),
        ({"targets": ("neuron:1",), "examples": 10_000}, r"^examples must be at most"),
        ({"targets": ("neuron:1",), "site": "encoder.layer.7.output"}, r"^site must be a site"),
        ({"targets": ("neuron:1",), "random": 1}, r"^random must be an int >= 2"),
        ({"targets": ("neuron:1",), "effect": "loss"}, r"^effect must be embedding or readout"),
    ],
)
def test_bad_input_names_the_parameter(tiny_bert, sentences, tmp_path, kwargs, message) -> None:
    kwargs = dict(kwargs)
    sae = random_sae(32) if kwargs.pop("sae", False) else None
    kwargs.setdefault("site", FIRST)
    out = tmp_path / "never"
    with pytest.raises(ParameterError, match=message):
        ablate(tiny_bert, sentences[:300], sae=sae, out=out, examples=kwargs.pop("examples", 5),
               **kwargs)  # fmt: skip
    assert not out.exists()


def test_sae_width_mismatch(tiny_bert, sentences) -> None:
    with pytest.raises(ParameterError, match=r"^sae must be an SAE with d_in=32"):
        ablate(tiny_bert, sentences, sae=random_sae(16), site=FIRST, targets=("feature:0",))


def test_config_parses_a_comma_string() -> None:
    assert AblateConfig(targets="feature:1,neuron:2").targets == ("feature:1", "neuron:2")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="repeat"):
        AblateConfig(targets=("neuron:1", "neuron:1"))


def test_calibration_rates(tiny_bert, sentences) -> None:
    cal = calibrate_ablation(tiny_bert, sentences, trials=2, examples=60, random=39, orthogonal=2)
    assert cal.false_negative.estimate == 0.0
    assert cal.false_positive_planted.estimate == 0.0
    assert cal.false_positive_random.n == 78
    assert cal.false_positive_random.estimate <= 0.1
    assert set(cal.to_dict()) >= {"false_negative", "false_positive_random_embedding"}
