"""`polysemy analyze pruning`: --json keys, toy-only runs, one-line errors with no folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pruning")
    loaded = tiny_encoder(seed=0)
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    return root / "model"


def _run(capsys, argv: list) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_real_and_toy(capsys, model, tmp_path: Path) -> None:
    out = tmp_path / "prune"
    code, stdout, _ = _run(capsys, [
        "analyze", "pruning", "--model", model, "--corpus", "concepts:heldout:100",
        "--examples", 12, "--fractions", "0.5,0.9", "--toy-sparsity", "0,0.99",
        "--toy-steps", 200, "--toy-samples", 1000, "--resamples", 100, "--out", out, "--json",
    ])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert {"fractions", "tolerance", "model", "n", "weights", "curves", "toy"} <= set(obj)
    assert obj["fractions"] == [0.0, 0.5, 0.9] and obj["n"] == 12
    assert set(obj["curves"]) == {"global", "per_layer", "random"}
    assert obj["curves"]["global"]["verdict_vs_random"] in ("effect", "no effect", "inconclusive")
    assert [t["sparsity"] for t in obj["toy"]] == [0.0, 0.99]
    assert (out / "curves.safetensors").is_file() and (out / "layers.json").is_file()


def test_toy_only_text(capsys, tmp_path: Path) -> None:
    code, stdout, _ = _run(capsys, [
        "analyze", "pruning", "--examples", 0, "--toy-steps", 200, "--toy-samples", 1000,
        "--resamples", 100, "--out", tmp_path / "toy",
    ])  # fmt: skip
    assert code == 0 and "toy relu-output, sparsity 0.99" in stdout and "prunable" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fractions", "0.5,1.5"], r"error: --fractions must be a number in [0, 1]"),
        (["--scopes", "rows"], "error: --scopes must be one of global, per_layer"),
        (["--tolerance", "2"], "error: --tolerance must be a number in (0, 1]"),
        (["--examples", "0", "--no-toy"],
         "error: --examples must be an int >= 2 when toy models are off"),
        (["--examples", "5000", "--corpus", "concepts:heldout:100"],
         "error: --examples must be at most"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_no_folder(capsys, model, tmp_path, argv, message) -> None:
    out = tmp_path / "never"
    code, _, stderr = _run(capsys, ["analyze", "pruning", "--model", model, *argv, "--out", out])
    assert code == 2
    assert stderr.startswith(message), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not out.exists()
