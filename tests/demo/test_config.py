"""Tests for polysemy/demo/config.py: presets and validation."""

from __future__ import annotations

import dataclasses

import pytest

from polysemy.demo.config import PRESETS, DemoConfig, preset
from polysemy.validation import ParameterError


def test_presets_shrink_in_order() -> None:
    full, quick, tiny = (preset(name) for name in PRESETS)
    assert full == DemoConfig()
    for field in ("tokens", "sae_tokens", "analysis_rows", "fidelity_examples",
                  "circuits_examples"):  # fmt: skip
        assert getattr(full, field) > getattr(quick, field) > getattr(tiny, field), field


def test_sites_follow_the_layer() -> None:
    config = preset("quick", layer=2)
    assert config.mlp_site == "encoder.layer.2.intermediate.intermediate_act_fn.output"
    assert config.resid_site == "encoder.layer.2.output"
    assert config.attn_site == "encoder.layer.3.intermediate.input"  # one attention block on
    assert config.to_dict()["layer"] == 2


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("tokens", 3, r"tokens must be an int >= 64; got 3"),
        ("k", 0, r"k must be an int >= 1; got 0"),
        ("sae_tokens", 10, r"sae_tokens must be an int >= 1024; got 10"),
        ("resamples", 50, r"resamples must be an int >= 100"),
        ("model", "", r"model must be a non-empty string"),
        ("seq_len", 4096, r"seq_len must be an int in \[4, 512\]"),
        ("tokens", True, r"tokens must be an int"),
        ("circuits_examples", 1, r"circuits_examples must be an int >= 2; got 1"),
        ("circuits_ablate", -1, r"circuits_ablate must be an int >= 0; got -1"),
    ],
)
def test_config_refuses(field: str, value: object, match: str) -> None:
    with pytest.raises(ParameterError, match=match) as info:
        DemoConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.parameter == field
    assert "\n" not in str(info.value)


def test_preset_refuses_unknown_names() -> None:
    with pytest.raises(ParameterError, match="preset must be one of full, quick, tiny"):
        preset("huge")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="steps must be a field of DemoConfig"):
        preset("quick", steps=3)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("tiny").tokens = 5  # type: ignore[misc]
