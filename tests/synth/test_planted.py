from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from polysemy.activations.store import ActivationStore
from polysemy.synth.planted import (
    CHUNK_ROWS,
    SynthConfig,
    bernoulli_positions,
    feature_groups,
    feature_probabilities,
    generate_activations,
    generate_chunks,
    plant_chorus,
    plant_dictionary,
    write_synth_store,
)

SMALL = SynthConfig(n_features=64, d_in=16, active=4, tokens=5000, seed=3)


def test_dictionary_unit_rows_and_seeded():
    f = plant_dictionary(100, 20, seed=1)
    assert f.shape == (100, 20) and f.dtype == torch.float32
    assert torch.allclose(f.norm(dim=1), torch.ones(100), atol=1e-5)
    assert torch.equal(f, plant_dictionary(100, 20, seed=1))
    assert not torch.equal(f, plant_dictionary(100, 20, seed=2))


def test_bernoulli_positions_exact_rates():
    rng = np.random.default_rng(0)
    p = np.array([0.0, 0.002, 0.1, 0.5, 1.0])
    rows = 50_000
    r, c = bernoulli_positions(p, rows, rng)
    assert r.min() >= 0 and r.max() < rows
    assert len(np.unique(r * 5 + c)) == len(r)  # no (row, feature) twice
    rate = np.bincount(c, minlength=5) / rows
    sd = np.sqrt(p * (1 - p) / rows)
    assert np.all(np.abs(rate - p) <= 5 * sd + 1e-12), rate
    assert rate[0] == 0 and rate[-1] == 1


def test_probabilities_sum_to_active_and_decay():
    flat = feature_probabilities(SynthConfig(n_features=100, active=5, tokens=1))
    assert torch.allclose(flat, torch.full((100,), 0.05, dtype=torch.float64))
    zipf = feature_probabilities(
        SynthConfig(n_features=100, active=30, tokens=1, frequency_decay=1.5)
    )
    assert float(zipf.sum()) == pytest.approx(30.0)
    assert float(zipf.max()) <= 1.0 and zipf[0] == 1.0  # head capped, mass moved down
    assert torch.all(zipf[1:] <= zipf[:-1])


def test_rows_are_sparse_nonnegative_combinations():
    chunk = next(generate_chunks(SMALL))
    features = plant_dictionary(64, 16, seed=3)
    assert chunk.activations.shape == (CHUNK_ROWS, 16)
    assert torch.all(chunk.values > 0)
    dense = torch.zeros(CHUNK_ROWS, 64)
    dense[chunk.rows, chunk.features] = chunk.values
    assert torch.allclose(dense @ features, chunk.activations, atol=1e-5)
    l0 = (dense > 0).sum(1).float().mean()
    assert 3.7 < float(l0) < 4.3


def test_deterministic_under_seed_and_chunked():
    a = generate_activations(SMALL)
    assert a.shape == (5000, 16)
    assert torch.equal(a, generate_activations(SMALL))
    other = SynthConfig(**{**SMALL.__dict__, "seed": 4})
    assert not torch.equal(a, generate_activations(other))


def test_correlated_groups_fire_together_with_exact_marginals():
    config = SynthConfig(
        n_features=40, d_in=8, active=4, tokens=40_000, group_size=4, correlation=0.9
    )
    group = feature_groups(config)
    assert sorted(torch.bincount(group).tolist()) == [4] * 10
    hits = torch.zeros(config.tokens, 40, dtype=torch.bool)
    offset = 0
    for ch in generate_chunks(config):
        hits[ch.rows + offset, ch.features] = True
        offset += len(ch.activations)
    rate = hits.float().mean(0)
    assert torch.allclose(rate, torch.full((40,), 0.1), atol=0.01)
    h = hits.float()
    corr = torch.corrcoef(h.T)
    same = group[:, None] == group[None, :]
    off_diag = ~torch.eye(40, dtype=torch.bool)
    assert float(corr[same & off_diag].mean()) > 0.7
    assert abs(float(corr[~same].mean())) < 0.05


@pytest.mark.parametrize("magnitude", ["uniform", "halfnormal", "exponential", "constant"])
def test_magnitudes(magnitude):
    config = SynthConfig(n_features=32, d_in=8, active=2, tokens=3000, magnitude=magnitude)
    values = next(generate_chunks(config)).values
    assert torch.all(values >= 0)
    if magnitude == "constant":
        assert torch.all(values == 1)
    if magnitude == "uniform":
        assert float(values.max()) <= 1.0
    if magnitude == "exponential":
        assert float(values.mean()) == pytest.approx(1.0, abs=0.1)


def test_noise_adds_isotropic_gaussian():
    clean = generate_activations(SMALL)
    noisy = generate_activations(SynthConfig(**{**SMALL.__dict__, "noise": 0.5}))
    assert float((noisy - clean).std()) == pytest.approx(0.5, rel=0.05)


def test_write_synth_store(tmp_path):
    result = write_synth_store(tmp_path / "s", replace(SMALL, dtype="float16", shard_rows=2000))
    assert (result.rows, result.shards) == (5000, 3)
    assert result.mean_active == pytest.approx(4.0, rel=0.1)
    store = ActivationStore(tmp_path / "s")
    assert (store.rows, store.d_in, store.dtype_name) == (5000, 16, "float16")
    assert store.source["synth"]["n_features"] == 64 and store.source["model"] == "synth"
    expected = generate_activations(SMALL).half().float()
    assert torch.equal(store.read(0, 5000), expected)
    truth = store.truth()
    assert truth is not None
    assert torch.equal(truth["features"], plant_dictionary(64, 16, seed=3))
    assert int(truth["count"].sum()) == round(result.mean_active * 5000)
    assert torch.equal(truth["group"], torch.full((64,), -1))
    assert sorted(load_file(str(tmp_path / "s" / "truth.safetensors"))) == [
        "count",
        "features",
        "frequency",
        "group",
    ]
    # nothing left beside the store
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_write_failure_leaves_nothing(tmp_path, monkeypatch):
    import polysemy.synth.planted as planted

    real, calls = planted._chunk, []

    def fail_on_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(planted, "_chunk", fail_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        write_synth_store(tmp_path / "s", replace(SMALL, shard_rows=100))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n_features": 0}, "n_features must be an int >= 1"),
        ({"active": 0.0}, r"active must be a number in \(0, 64\]; got 0.0"),
        ({"active": 100.0}, r"active must be a number in \(0, 64\]; got 100.0"),
        ({"tokens": 0}, "tokens must be an int >= 1"),
        ({"correlation": 1.5}, r"correlation must be a number in \[0, 1\]; got 1.5"),
        ({"noise": -1.0}, "noise must be a number >= 0; got -1.0"),
        ({"group_size": 65}, r"group_size must be an int in \[1, 64\]; got 65"),
        ({"dtype": "int8"}, "dtype must be one of float32, float16, bfloat16; got 'int8'"),
        ({"shard_rows": 0}, "shard_rows must be an int >= 1; got 0"),
        ({"magnitude": "gamma"}, "magnitude must be one of"),
        ({"frequency_decay": float("nan")}, "frequency_decay must be a number in"),
        ({"chorus": -1}, r"chorus must be an int in \[0, 64\]; got -1"),
        ({"chorus": 3}, "neuron_support must be at least 2 with chorus 3; got 0"),
        ({"chorus": 3, "neuron_support": 2}, r"n_features must be .* = 24 .*; got 64"),
        ({"chorus_ratio": 0.0}, r"chorus_ratio must be a number in \(0, 1\]; got 0.0"),
    ],
)
def test_config_validates(change, match):
    with pytest.raises(ValueError, match=match):
        SynthConfig(**{**SMALL.__dict__, **change})


@pytest.mark.parametrize(
    ("n_features", "d_in", "support", "chorus"), [(96, 64, 2, 3), (64, 64, 3, 3)]
)
def test_plant_chorus_layout(n_features, d_in, support, chorus):
    F = plant_chorus(n_features, d_in, neuron_support=support, chorus=chorus, seed=5)
    assert F.shape == (n_features, d_in) and F.dtype == torch.float32
    assert torch.allclose(F.norm(dim=1), torch.ones(n_features), atol=1e-5)
    loads = F != 0
    assert torch.all(loads.sum(1) == support)  # each feature on exactly s neurons
    assert torch.all(loads.sum(0) == chorus)  # each neuron carries exactly c features
    shared = loads.double() @ loads.double().t()
    assert shared.fill_diagonal_(0).max() <= 1  # no two features share two neurons
    cos = (F.double() @ F.double().t()).abs().fill_diagonal_(0)
    assert cos.max() <= 0.8  # no near-twins (random 2-sparse supports reach 0.99)
    # Distinct loadings: a neuron's voices are strictly ordered, the leader well ahead.
    voices = F.abs().t().topk(chorus, dim=1).values  # (d_in, c)
    assert torch.all(voices[:, 1:] < 0.95 * voices[:, :-1])
    assert torch.equal(
        F, plant_chorus(n_features, d_in, neuron_support=support, chorus=chorus, seed=5)
    )
    assert not torch.equal(
        F, plant_chorus(n_features, d_in, neuron_support=support, chorus=chorus, seed=6)
    )


def test_plant_chorus_refusals():
    with pytest.raises(ValueError, match="n_features must be d_in"):
        plant_chorus(100, 64, neuron_support=2, chorus=3)
    with pytest.raises(ValueError, match=r"chorus_ratio must be closer to 1 .* 0\.8"):
        plant_chorus(384, 128, neuron_support=2, chorus=6, chorus_ratio=0.7)
    with pytest.raises(ValueError, match="neuron_support must be at least 2"):
        plant_chorus(128, 64, neuron_support=1, chorus=2)


def test_chorus_store_uses_the_chorus_dictionary(tmp_path):
    config = SynthConfig(n_features=24, d_in=16, neuron_support=2, chorus=3, tokens=500, seed=2)
    write_synth_store(tmp_path / "s", config)
    truth = ActivationStore(tmp_path / "s").truth()
    assert truth is not None
    assert torch.equal(truth["features"], plant_chorus(24, 16, neuron_support=2, chorus=3, seed=2))
