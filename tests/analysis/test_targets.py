"""The one target syntax every analysis takes: feature:F, neuron:N, and direction where allowed."""

from __future__ import annotations

import pytest

from polysemy.analysis.targets import parse_target
from polysemy.validation import ParameterError


def test_targets_parse_and_bad_ones_name_the_parameter() -> None:
    assert parse_target("feature:12") == ("feature", 12)
    assert parse_target("neuron:0") == ("neuron", 0)
    assert parse_target("direction", parameter="target", direction=True) == ("direction", -1)
    with pytest.raises(ParameterError, match="targets must be a list of feature:F or neuron:N"):
        parse_target("direction")
    with pytest.raises(ParameterError, match="target must be feature:F, neuron:N or direction"):
        parse_target("feature:-1", parameter="target", direction=True)
    for bad in ("latent:3", "feature:", "neuron:x"):
        with pytest.raises(ParameterError):
            parse_target(bad)
