"""Edge ablation: equal to the linear edge where the model is linear, close to it through
attention and LayerNorm, apart from it through an MLP; planted edges called causal and
non-edges not; the folder, the standalone call and validation."""

from __future__ import annotations

import pytest
import torch
from tests.analysis.test_circuits import _bert_saes
from torch import Tensor, nn

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.analysis.circuits import analyze_circuits
from polysemy.analysis.circuits_calibration import planted_circuit
from polysemy.analysis.edge_ablation import ablate_edges
from polysemy.analysis.edge_ablation_calibration import calibrate_edge_ablation
from polysemy.analysis.folder import read_analysis
from polysemy.validation import ParameterError

PLANTED = dict(site_up="up.output", site_down="block.output", resamples=100, shuffles=1)


class _LinearBlock(nn.Module):
    """Every token reads the mean of the sequence through M: linear in h, no softmax, no norm."""

    def __init__(self, M: Tensor) -> None:
        super().__init__()
        self.M = nn.Parameter(M, requires_grad=False)

    def forward(self, h: Tensor) -> Tensor:
        return (h @ self.M).mean(1, keepdim=True).expand_as(h) + 0.0


def _ids(n: int, seed: int = 1) -> Tensor:
    return torch.randint(0, 64, (n, 8), generator=torch.Generator().manual_seed(seed))


def test_linear_model_ablation_is_the_edge_exactly() -> None:
    model, sae_up, sae_down = planted_circuit(seed=0)
    model.block = _LinearBlock(model.block.M)
    r = analyze_circuits(model, sae_up, sae_down, _ids(16), examples=16, top_k=3, top=10,
                         ablate=10, **PLANTED)  # fmt: skip
    ab = r.ablation
    assert ab is not None and ab["n_edges"] == 10
    for e, linear in zip(ab["edges"], r.edges, strict=True):
        assert (e["up"], e["down"]) == (linear["up"], linear["down"])
        assert e["effect"] == pytest.approx(e["weight"], rel=1e-4, abs=1e-5)
        assert e["weight"] == pytest.approx(linear["weight"], rel=1e-6)
    assert ab["agreement"]["relative_gap"] < 1e-4
    assert ab["agreement"]["spearman_contexts"]["estimate"] > 0.999


def test_planted_edges_causal_and_non_edges_not() -> None:
    cal = calibrate_edge_ablation(seed=0)
    assert cal.true_positive.n == 24 and cal.false_positive.n > 100
    assert cal.false_positive.estimate == 0.0
    assert cal.true_positive.estimate >= 0.5  # the rest inconclusive, none "not causal"
    assert cal.inconclusive == 24 - round(24 * cal.true_positive.estimate)
    # Random edges into b from equally active features: b's other planted parent is often
    # among them, so that null is strict here; non-edges still do not clear it.
    assert cal.false_positive_edges.estimate <= 0.01
    assert cal.true_positive_edges.estimate >= 0.3
    for e in cal.result.ablation["edges"]:
        assert e["up"] not in e["null_edges"]["up"] and len(e["null_edges"]["up"]) == 20
    # Attention pattern and LayerNorm scale move under the ablation, but no MLP: nearly equal.
    assert cal.spearman_planted > 0.9 and cal.relative_gap_planted < 0.2


def test_mlp_between_sites_parts_effect_from_edge(tmp_path, sentences) -> None:
    loaded = tiny_encoder(seed=0)
    up, down = _bert_saes()
    out = tmp_path / "circ"
    r = analyze_circuits(loaded, up, down, sentences, examples=12, top_k=4, top=6, ablate=4,
                         ablate_random=10, resamples=100, shuffles=2, out=out)  # fmt: skip
    ab = r.summary()["ablation"]
    assert ab["n_edges"] == 4 and ab["random"] == 10 and ab["contexts"] == 12
    assert ab["agreement"]["relative_gap"] > 0.05  # the MLP (and the unfrozen softmax)
    for e in ab["edges"]:
        assert e["ci"]["low"] <= e["effect"] <= e["ci"]["high"] and e["ci"]["n"] == 12
        assert e["verdict"] in ("causal", "not causal", "inconclusive")
        assert e["verdict_edges"] in ("causal", "not causal", "inconclusive")
    folder = read_analysis(out, "circuits")
    tensors = folder.tensors("edges.safetensors")
    assert tensors["ablation_effects"].shape == (4, 12)
    assert tensors["ablation_null"].shape == (4, 10, 12)
    assert tensors["ablation_null_edges"].shape == (4, 10, 12)
    assert tensors["ablation_null_up"].shape == (4, 10)
    assert set(ab["random_edges"]) >= {"causal_fraction", "ci", "quantiles"}
    assert folder.summary["ablation"]["causal_fraction"] == ab["causal_fraction"]
    # The standalone call ablates the same edges to the same effects.
    alone = ablate_edges(loaded, up, down, sentences, [(e["up"], e["down"]) for e in ab["edges"]],
                         examples=12, ablate_random=10, resamples=100)  # fmt: skip
    torch.testing.assert_close(alone.effects, tensors["ablation_effects"], atol=1e-5, rtol=1e-4)
    assert alone.agreement is None


def test_pair_never_on_together_is_not_causal() -> None:
    model, sae_up, sae_down = planted_circuit(seed=0)
    ids = torch.zeros(4, 8, dtype=torch.long)  # one token: only its two features are on
    on_up = (sae_up.encode(model.embed.weight[0:1]) > 0).flatten().nonzero().flatten()
    off = int(next(a for a in range(12) if a not in on_up.tolist()))
    r = ablate_edges(model, sae_up, sae_down, ids, [(off, 0)], examples=4, ablate_random=4,
                     site_up="up.output", site_down="block.output", resamples=100)  # fmt: skip
    e = r.edges[0]
    assert e["contexts"] == 0 and e["effect"] == 0.0 and e["verdict"] == "not causal"
    assert r.causal_fraction.estimate == 0.0


@pytest.mark.parametrize(
    ("options", "match"),
    [({"ablate": -1}, "ablate must be"), ({"ablate_random": 1}, "ablate_random must be")],
)
def test_config_validation(options, match) -> None:
    model, sae_up, sae_down = planted_circuit(seed=0)
    with pytest.raises(ParameterError, match=match):
        analyze_circuits(model, sae_up, sae_down, _ids(4), examples=4, **PLANTED, **options)


def test_edges_out_of_range_refused() -> None:
    model, sae_up, sae_down = planted_circuit(seed=0)
    with pytest.raises(ParameterError, match="edges must be"):
        ablate_edges(model, sae_up, sae_down, _ids(4), [(12, 0)], examples=4,
                     site_up="up.output", site_down="block.output")  # fmt: skip
