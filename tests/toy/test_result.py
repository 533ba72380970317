import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from polysemy import runfolder
from polysemy.toy.model import ToyConfig
from polysemy.toy.result import load_toy_run, save_toy_run, summarize
from polysemy.toy.trainer import train_toy


@pytest.fixture(scope="module")
def relu_run():
    cfg = ToyConfig.sweep(
        "relu-hidden",
        5,
        3,
        (0.0, 0.9),
        decay=0.8,
        steps=30,
        batch_size=32,
        best_of=2,
        snapshot_every=10,
    )
    return train_toy(cfg)


@pytest.fixture(scope="module")
def abs_run():
    cfg = ToyConfig.sweep("abs", 4, 2, (0.5,), steps=20, batch_size=16)
    return train_toy(cfg)


def test_save_writes_the_documented_format(tmp_path, relu_run):
    out = save_toy_run(relu_run, tmp_path / "run")
    result = json.loads((out / "result.json").read_text())
    assert result["format"] == "polysemy.toy/1"
    assert result["config"]["sparsity"] == [0.0, 0.9]
    assert result["config"]["model"] == "relu-hidden"
    assert len(result["instances"]) == 2
    inst = result["instances"][1]
    for key in (
        "sparsity",
        "importance",
        "loss",
        "feature_norms",
        "feature_dimensionality",
        "dimensions_per_feature",
        "represented",
        "superposition",
        "bias",
        "neuron_polysemanticity",
        "seed_losses",
        "chosen_seed",
    ):
        assert key in inst, key
    assert inst["sparsity"] == 0.9 and len(inst["feature_norms"]) == 5
    assert len(inst["neuron_polysemanticity"]) == 3 and isinstance(inst["represented"], int)
    weights = load_file(str(out / "weights.safetensors"))
    assert weights["W"].shape == (2, 3, 5) and weights["b_final"].shape == (2, 5)
    assert weights["snapshots"].shape == (4, 2, 3, 5)
    assert weights["snapshot_steps"].tolist() == [0, 10, 20, 30]
    assert weights["snapshot_b_final"].shape == (4, 2, 5)
    assert result["snapshot_steps"] == [0, 10, 20, 30]
    assert "W_out" not in weights
    assert runfolder.detect_kind(out) == "polysemy.toy/1"


def test_round_trip(tmp_path, relu_run):
    out = save_toy_run(relu_run, tmp_path / "run")
    back = load_toy_run(out)
    assert back.config == relu_run.config
    assert torch.equal(back.W, relu_run.W) and torch.equal(back.b_final, relu_run.b_final)
    assert torch.allclose(back.loss, relu_run.loss)
    assert [s for s, _ in back.snapshots] == [s for s, _ in relu_run.snapshots]
    assert torch.equal(back.snapshots[1][1], relu_run.snapshots[1][1])
    assert torch.equal(back.snapshot_b_final[1], relu_run.snapshot_b_final[1])
    assert torch.equal(back.chosen_seed, relu_run.chosen_seed)
    assert summarize(back) == summarize(relu_run)


def test_abs_round_trip_keeps_w_out(tmp_path, abs_run):
    out = save_toy_run(abs_run, tmp_path / "abs")
    back = load_toy_run(out)
    assert back.W_out is not None and torch.equal(back.W_out, abs_run.W_out)
    assert "neuron_polysemanticity" in summarize(back)[0]


def test_summary_skips_polysemanticity_for_output_models():
    cfg = ToyConfig.sweep("linear", 3, 1, (0.5,), steps=5, batch_size=8)
    item = summarize(train_toy(cfg))[0]
    assert "neuron_polysemanticity" not in item
    assert item["dimensions_per_feature"] is None or item["dimensions_per_feature"] > 0


def test_refuses_another_kind_of_run_unless_forced(tmp_path, abs_run):
    other = tmp_path / "store"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format": "polysemy.activations/1"}))
    with pytest.raises(ValueError, match=r"already holds a polysemy\.activations/1 run"):
        save_toy_run(abs_run, other)
    assert sorted(p.name for p in other.iterdir()) == ["manifest.json"]
    save_toy_run(abs_run, other, force=True)
    assert (other / "result.json").is_file() and not (other / "manifest.json").exists()


def test_overwrites_a_previous_toy_run(tmp_path, abs_run, relu_run):
    out = tmp_path / "run"
    save_toy_run(abs_run, out)
    save_toy_run(relu_run, out)
    assert load_toy_run(out).config.model == "relu-hidden"


def test_load_errors(tmp_path, abs_run):
    with pytest.raises(FileNotFoundError, match=r"result\.json is missing"):
        load_toy_run(tmp_path)
    out = save_toy_run(abs_run, tmp_path / "run")
    result = json.loads((out / "result.json").read_text())
    # Unknown config keys are tolerated (a newer version may add some).
    result["config"]["future_option"] = 3
    (out / "result.json").write_text(json.dumps(result))
    assert load_toy_run(out).config == abs_run.config
    # Another format is refused.
    (out / "result.json").write_text(json.dumps({**result, "format": "polysemy.sae/1"}))
    with pytest.raises(ValueError, match="format"):
        load_toy_run(out)
    (out / "result.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_toy_run(out)
    (out / "result.json").write_text(json.dumps(result))
    # Truncated weights are refused, never unpickled.
    data = (out / "weights.safetensors").read_bytes()
    (out / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="safetensors"):
        load_toy_run(out)
    # Weights whose shapes do not fit the config are refused.
    save_file(
        {"W": torch.zeros(1, 9, 4), "b_final": torch.zeros(1, 4)}, out / "weights.safetensors"
    )
    with pytest.raises(ValueError, match=r"W in .* must have shape"):
        load_toy_run(out)
    (out / "weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"weights\.safetensors is missing"):
        load_toy_run(out)
