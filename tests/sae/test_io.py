"""Checkpoint folders: exact round trips whatever the memory layout; bad files refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from polysemy.sae import SAEConfig, build_sae, load_sae, save_sae
from polysemy.sae.io import read_safetensors


def _sae(arch: str = "topk"):
    cfg = SAEConfig(arch=arch, d_in=6, d_sae=10, k=2 if arch in ("topk", "batchtopk") else None)
    return build_sae(cfg, generator=torch.Generator().manual_seed(0)).eval()


def test_transposed_encoder_round_trips_exactly(tmp_path) -> None:
    sae = _sae()
    with torch.no_grad():  # a non-contiguous W_enc: the transpose of a [d_sae, d_in] tensor
        sae.W_enc.data = torch.randn(10, 6).t()
    assert not sae.W_enc.is_contiguous()
    save_sae(sae, tmp_path / "s", source={}, training={})
    loaded = load_sae(tmp_path / "s")
    assert torch.equal(loaded.W_enc, sae.W_enc)
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["format"] == "polysemy.sae/1"
    assert (cfg["arch"], cfg["d_in"], cfg["d_sae"], cfg["k"]) == ("topk", 6, 10, 2)
    assert cfg["input_scale"] == 1.0


def test_unknown_config_keys_are_tolerated(tmp_path) -> None:
    save_sae(_sae("jumprelu"), tmp_path / "s", source={}, training={})
    path = tmp_path / "s" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["future_key"] = {"x": 1}
    cfg["sae"]["future_field"] = 3
    path.write_text(json.dumps(cfg))
    assert load_sae(tmp_path / "s").config.arch == "jumprelu"


def test_truncated_safetensors_is_refused(tmp_path) -> None:
    save_sae(_sae(), tmp_path / "s", source={}, training={})
    weights = tmp_path / "s" / "sae.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 40])
    with pytest.raises(ValueError, match="truncated or corrupt safetensors"):
        load_sae(tmp_path / "s")


def test_pickle_is_refused_and_never_unpickled(tmp_path) -> None:
    save_sae(_sae(), tmp_path / "s", source={}, training={})
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (marker.write_text, ("x",))

    (tmp_path / "s" / "sae.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError, match=r"pickle / torch\.save file, not safetensors"):
        load_sae(tmp_path / "s")
    assert not marker.exists()
    torch.save({"W_enc": torch.zeros(2)}, tmp_path / "zip.safetensors")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        read_safetensors(tmp_path / "zip.safetensors")


def test_mismatched_shapes_are_refused(tmp_path) -> None:
    save_sae(_sae(), tmp_path / "s", source={}, training={})
    tensors = read_safetensors(tmp_path / "s" / "sae.safetensors")
    tensors["W_dec"] = torch.zeros(10, 7)
    save_file(tensors, tmp_path / "s" / "sae.safetensors")
    with pytest.raises(
        ValueError, match=r"tensor 'W_dec' must have shape \[10, 6\].*got \[10, 7\]"
    ):
        load_sae(tmp_path / "s")


def test_missing_tensor_and_missing_folder(tmp_path) -> None:
    save_sae(_sae("jumprelu"), tmp_path / "s", source={}, training={})
    tensors = read_safetensors(tmp_path / "s" / "sae.safetensors")
    del tensors["threshold"]
    save_file(tensors, tmp_path / "s" / "sae.safetensors")
    with pytest.raises(ValueError, match="lack tensor"):
        load_sae(tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="no such SAE checkpoint"):
        load_sae(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no config\.json"):
        load_sae(tmp_path / "empty")


def test_wrong_format_string(tmp_path) -> None:
    save_sae(_sae(), tmp_path / "s", source={}, training={})
    path = tmp_path / "s" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["format"] = "polysemy.toy/1"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"must have format .polysemy\.sae/1."):
        load_sae(tmp_path / "s")


def test_failed_save_leaves_the_old_checkpoint(tmp_path) -> None:
    sae = _sae()
    save_sae(sae, tmp_path / "s", source={}, training={})
    before = (tmp_path / "s" / "sae.safetensors").read_bytes()
    with pytest.raises(ValueError):
        save_sae(sae, tmp_path / "s", source={}, training={"bad": float("nan")})
    assert (tmp_path / "s" / "sae.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
