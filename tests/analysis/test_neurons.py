"""Neurons as choruses: exact shares under an oracle SAE, the rotated null, the folder
contract, the basis warning and every bad input."""

from __future__ import annotations

import json

import pytest
import torch

from polysemy.analysis.folder import read_analysis
from polysemy.analysis.neurons import (
    NeuronsConfig,
    analyze_neurons,
    effective_numbers,
    is_privileged,
    random_rotation,
)
from polysemy.cli import main
from polysemy.sae import SAEConfig, build_sae


def true_mass(store, sae, power):
    # T[f, j] = n_f E|a|^p |F[f, j]|^p; the oracle decodes exactly, so shares are these.
    return store.planted_count.double()[:, None] * sae.W_dec.detach().double().abs() ** power


@pytest.mark.parametrize(("share", "power"), [("squared", 2), ("abs", 1)])
def test_oracle_shares_are_the_planted_loadings(make_planted, share, power) -> None:
    store, sae = make_planted()
    r = analyze_neurons(sae, store, texts=False, top_features=4, share=share)
    mass = true_mass(store, sae, power)
    # Expected share ~ n_f |F[f,j]| / sum_g n_g |F[g,j]| (the magnitudes' mean cancels up to
    # sampling: the shares use the realised magnitudes, so compare loosely).
    expected = (mass / mass.sum(0)).t()  # (d_in, n_features)
    carried = mass.sum(0) > 0
    got = torch.zeros_like(expected)
    got.scatter_(1, r.top_features, r.shares)
    assert r.error_share.max() < 1e-4  # the oracle reconstructs exactly
    top_true = expected.argmax(1)
    assert (r.top_features[carried, 0] == top_true[carried]).float().mean() >= 0.9
    assert torch.allclose(got[carried].max(1).values, expected[carried].max(1).values, atol=0.1)
    eff = effective_numbers(mass)
    assert torch.allclose(r.effective_features[carried], eff[carried], rtol=0.2)


def test_rotated_basis_is_the_null(make_planted) -> None:
    store, sae = make_planted()
    r = analyze_neurons(sae, store, texts=False)
    # Sparse planted loadings: a handful of features per neuron; random directions see all 16.
    assert r.effective_features_median.high < r.baseline_effective_features_median.low
    assert r.verdict == "effect"
    assert r.baseline_effective_features.numel() == store.d_in


def test_random_rotation_is_orthogonal_and_seeded() -> None:
    q = random_rotation(12, seed=3)
    assert torch.allclose(q @ q.t(), torch.eye(12), atol=1e-5)
    assert torch.equal(q, random_rotation(12, seed=3))
    assert not torch.equal(q, random_rotation(12, seed=4))


@pytest.mark.parametrize(
    ("site", "privileged"),
    [
        ("encoder.layer.3.intermediate.intermediate_act_fn.output", True),
        ("h.2.mlp.act.output", True),
        ("encoder.layer.3.output", False),
        ("h.1.output", False),
        ("embeddings.output", False),
    ],
)
def test_basis_from_site_name(site: str, privileged: bool) -> None:
    assert is_privileged(site) is privileged
    assert is_privileged(site, "arbitrary") is False
    assert is_privileged(site, "privileged") is True


def test_folder_contract_and_contexts(make_planted, tmp_path) -> None:
    store, sae = make_planted(traced=True)
    out = tmp_path / "an"
    r = analyze_neurons(sae, store, out=out, neurons=(0, 5), top_contexts=4, window=3)
    folder = read_analysis(out, "neurons")
    records = folder.json("neurons.json")
    assert [rec["neuron"] for rec in records] == [0, 5]
    for rec in records:
        assert set(rec) >= {"neuron", "effective_features", "features"}
        shares = [s for _, s in rec["features"]]
        assert shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-9
    contexts = folder.json("contexts.json")
    groups = contexts[0]["groups"]
    assert sum(len(g["contexts"]) for g in groups) == 4
    first = groups[0]["contexts"][0]
    assert "[[" in first["text"] and "]]" in first["text"]
    # The dominant feature of a context is one the neuron actually carries.
    assert sae.W_dec[groups[0]["feature"], 0] != 0
    assert folder.summary["n_neurons"] == 2 == r.neurons.numel()
    assert folder.tensors("neurons.safetensors")["effective_features"].shape == (2,)


def test_residual_site_is_warned(make_planted, caplog) -> None:
    store, sae = make_planted()
    r = analyze_neurons(sae, store, texts=False, basis="arbitrary")
    assert r.privileged is False and "arbitrary axes" in (r.warning or "")


def test_bad_inputs(make_planted, tmp_path) -> None:
    store, sae = make_planted()
    wide = build_sae(SAEConfig(arch="relu", d_in=store.d_in + 1, d_sae=8))
    with pytest.raises(ValueError, match=r"^sae must be an SAE with d_in=24"):
        analyze_neurons(wide, store, texts=False)
    with pytest.raises(ValueError, match=r"^neurons must be indices in \[0, 24\); got 24"):
        analyze_neurons(sae, store, texts=False, neurons=(1, 24))
    with pytest.raises(ValueError, match=r"no tokens/doc/pos.*--no-texts"):
        analyze_neurons(sae, store, out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="monosemantic_threshold"):
        NeuronsConfig(monosemantic_threshold=1.5)


def test_cli_json_and_errors(make_planted, tmp_path, capsys) -> None:
    store, sae = make_planted()
    from polysemy.sae import save_sae

    save_sae(sae, tmp_path / "sae", source={}, training={})
    args = ["analyze", "neurons", "--sae", str(tmp_path / "sae"), "--acts", str(store.path)]
    assert main([*args, "--out", str(tmp_path / "a"), "--no-texts", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"n_neurons", "effective_features_median", "monosemantic_fraction"} <= set(out)
    assert set(out["baseline"]) >= {"effective_features_median", "monosemantic_fraction"}
    assert out["n_neurons"] == 24
    assert main([*args, "--out", str(tmp_path / "b"), "--no-texts", "--neurons", "99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --neurons must be indices in [0, 24)") and err.count("\n") == 1
    assert main([*args, "--out", str(tmp_path / "c")]) == 2
    assert "--no-texts" in capsys.readouterr().err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_toy_relu_hidden_calibration_with_oracle_sae() -> None:
    from polysemy.analysis.chorus_calibration import calibrate_neurons_toy

    c = calibrate_neurons_toy(n_features=16, n_hidden=8, sparsity=(0.9, 0.97), steps=800,
                              rows=3000)  # fmt: skip
    assert c.sae == "oracle" and c.live_neurons <= 16 and c.top1.n == c.live_neurons
    # With the exact decoder the reported voices follow the hidden layer's loadings.
    assert c.top1.estimate >= 0.6 and c.top1_in_top3.estimate >= c.top1.estimate
    assert c.effective_spearman > 0.9
    assert abs(c.effective_median - c.true_effective_median) < 0.2 * c.true_effective_median
    assert c.effective_median < c.baseline_effective_median  # privileged vs rotated basis
    assert len(c.per_instance) == 2 and all(p["live"] <= 8 for p in c.per_instance)


def test_planted_calibration_rates_are_consistent() -> None:
    from polysemy.analysis.chorus_calibration import calibrate_neurons

    c = calibrate_neurons(n_features=32, d_in=16, tokens=5000, train_tokens=30_000, lr=4e-3,
                          batch_size=256)  # fmt: skip
    assert c.top1.n == c.top3.n == 16
    assert c.top3_recovered.n <= c.top3_defined.n <= 16
    assert c.top3.estimate <= c.top1_in_top3.estimate  # a right top-3 set holds the top one
    assert c.top1.estimate > 0.3  # chance is about 1 in 32
    assert c.recipe["d_sae"] == 32 and c.recipe["k"] == 5


def test_oracle_recovers_a_planted_chorus(make_planted) -> None:
    # The well-posed store: every neuron carries exactly 3 features with distinct loadings
    # (24 features on 3 of 24 neurons each, a square dictionary the oracle inverts exactly).
    store, sae = make_planted(n_features=24, d_in=24, neuron_support=3, chorus=3, active=3.0)
    r = analyze_neurons(sae, store, texts=False, top_features=3)
    mass = true_mass(store, sae, 2)  # (n_features, d_in)
    true_top = mass.topk(3, dim=0).indices.t()  # (d_in, 3), in order
    assert torch.equal(r.top_features[:, 0], true_top[:, 0])
    assert all(
        set(a) == set(b) for a, b in zip(r.top_features.tolist(), true_top.tolist(), strict=True)
    )
    assert r.effective_features.max() < 3.0 < r.baseline_effective_features_median.low


def test_planted_chorus_calibration_is_well_posed() -> None:
    from polysemy.analysis.chorus_calibration import calibrate_neurons

    # 48 features on 2 of 32 neurons, exactly 3 per neuron, a small trained TopK SAE.
    c = calibrate_neurons(n_features=48, d_in=32, neuron_support=2, chorus=3, tokens=10_000,
                          train_tokens=100_000, lr=4e-3, batch_size=256, d_sae=96, k=5)  # fmt: skip
    assert c.top3.n == c.top3_defined.n == 32  # every neuron has a true top 3
    assert c.recovered >= 40
    assert c.top1.estimate >= 0.8 and c.top3.estimate >= 0.7
