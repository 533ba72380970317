"""`polysemy organism train`: flags from OrganismConfig, one JSON object, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polysemy.cli import main

TINY = [
    "--corpus", "concepts:train:1500", "--corpus-chars", "60000", "--heldout-every", "10",
    "--vocab-size", "320", "--n-ctx", "16", "--d-model", "16", "--d-mlp", "32",
    "--n-head", "2", "--batch-size", "8", "--steps", "6", "--warmup-steps", "2",
    "--snapshots", "3", "--eval-tokens", "256", "--log-every", "2",
]  # fmt: skip


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors exit directly
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_prints_one_json_object_and_writes_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "org"
    code, stdout, _ = _run(["organism", "train", *TINY, "--out", str(out), "--json"], capsys)
    assert code == 0
    obj = json.loads(stdout)
    assert obj["status"] == "done" and obj["steps"] == 6
    assert [s["step"] for s in obj["snapshots"]] == [0, 1, 6]
    assert obj["baselines"]["bigram"]["tokens"] == obj["heldout"]["tokens"]
    assert (out / "snapshots" / "step-000006" / "model.safetensors").is_file()
    assert json.loads((out / "organism.json").read_text())["versus"] == obj["versus"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vocab-size", "50000"], "error: --vocab-size must be <= "),
        (["--n-head", "3"], "error: --n-head must be a divisor of d_model=16"),
        (["--corpus-chars", "5000", "--batch-size", "256"], "error: --corpus-chars must be"),
        # a context longer than the held-out text (issue 12: too small for the context)
        (["--n-ctx", "4000", "--batch-size", "1"], "error: --corpus-chars must be enough held"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / "org"
    code, stdout, stderr = _run(["organism", "train", *TINY, *argv, "--out", str(out)], capsys)
    assert code == 2 and stdout == ""
    assert stderr.startswith(message) and stderr.count("\n") == 1
    assert not out.exists()
