"""Fidelity and ablation on the real MiniLM (slow): calibrated ends and a planted readout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polysemy.analysis.ablation import ablate
from polysemy.analysis.ablation_calibration import PlantedDictionary
from polysemy.analysis.fidelity import analyze_fidelity
from polysemy.models import load_model

from .test_fidelity import Identity, Zero

pytestmark = pytest.mark.slow
SITE = "encoder.layer.3.output"


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


def test_fidelity_ends_on_minilm(minilm, sentences) -> None:
    kw = dict(site=SITE, examples=200, resamples=200)
    perfect = analyze_fidelity(minilm, Identity(384), sentences, **kw)
    assert perfect.embedding_cosine == pytest.approx(1.0, abs=1e-5)
    assert perfect.similarity_spearman == pytest.approx(1.0, abs=1e-6)
    zero = analyze_fidelity(minilm, Zero(384), sentences, **kw)
    assert zero.recovered_vs_zero == pytest.approx(0.0, abs=1e-9)
    assert zero.embedding_cosine < 0.9


def test_planted_readout_on_minilm(minilm, sentences) -> None:
    g = torch.Generator().manual_seed(0)
    r = F.normalize(torch.randn(384, generator=g), dim=0)
    other = torch.randn(384, generator=g)
    other = F.normalize(other - (other @ r) * r, dim=0)
    result = ablate(minilm, sentences, sae=PlantedDictionary(torch.stack([r, other])),
                    site="encoder.layer.5.output", targets=("feature:0", "feature:1"),
                    readout_direction=r, examples=200, random=39)  # fmt: skip
    by = {t.target: t for t in result.results}
    assert by["feature:0"].verdict == "effect"
    assert by["feature:1"].verdict == "no effect"
    assert result.false_positive_rate is not None and result.false_positive_rate.estimate <= 0.1
