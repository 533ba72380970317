import json
import os
import subprocess
import sys

import pytest
import torch

from polysemy.cli import main
from polysemy.toy.result import load_toy_run

FAST = ["--steps", "20", "--batch-size", "16"]


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors exit directly
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_writes_a_run_and_prints_one_json_object(tmp_path, capsys):
    out = tmp_path / "tms"
    code, stdout, _ = _run(
        [
            "toy",
            "train",
            "--model",
            "relu-output",
            "--n-features",
            "6",
            "--n-hidden",
            "2",
            "--sparsity",
            "0,0.9,0.99",
            "--importance-decay",
            "0.7",
            *FAST,
            "--seed",
            "3",
            "--best-of",
            "2",
            "--out",
            str(out),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    obj = json.loads(stdout)  # exactly one JSON object
    assert obj["out"] == str(out) and obj["model"] == "relu-output"
    assert [it["sparsity"] for it in obj["instances"]] == [0.0, 0.9, 0.99]
    run = load_toy_run(out)
    assert run.config.importance[0] == pytest.approx((1.0, 0.7, 0.49, 0.343, 0.2401, 0.16807))
    assert run.config.best_of == 2 and run.config.seed == 3 and run.config.steps == 20


def test_explicit_importance_and_human_output(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = _run(
        [
            "toy",
            "train",
            "--model",
            "abs",
            "--n-features",
            "3",
            "--n-hidden",
            "2",
            "--sparsity",
            "0.5",
            "--importance",
            "1,0.5,0.25",
            *FAST,
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0 and "trained 1 abs toy models" in stdout and str(out) in stdout
    run = load_toy_run(out)
    assert run.config.importance == ((1.0, 0.5, 0.25),) and run.W_out is not None


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--sparsity", "1.5"], "--sparsity"),
        (["--sparsity=-0.1"], "--sparsity"),
        (["--sparsity", "0.1,abc"], "--sparsity"),
        (["--n-hidden", "0"], "--n-hidden"),
        (["--n-features", "x"], "--n-features"),
        (["--importance", "1,2"], "--importance must be a list of n_features=3 values; got 2"),
        (["--importance", "1,-2,3"], "--importance must be a list of numbers >= 0"),
        (["--importance", "1,2,3", "--importance-decay", "0.5"], "not allowed with"),
        (["--steps", "ten"], "--steps"),
        (["--lr", "0"], "--lr"),
        (["--model", "tanh"], "--model"),
        (["--device", "nonsense"], "--device must be a torch device like cpu or cuda"),
        pytest.param(
            ["--device", "cuda:7"],
            "asked for CUDA, but no CUDA device is available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"),
        ),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    argv = ["toy", "train", "--n-features", "3", "--n-hidden", "1", *FAST, "--out", str(out)]
    code, _, err = _run([*argv, *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_refuses_an_out_holding_another_kind_of_run(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text(json.dumps({"format": "polysemy.activations/1"}))
    argv = ["toy", "train", "--n-features", "3", "--n-hidden", "1", *FAST, "--out", str(store)]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "--force" in err and err.count("\n") == 1
    assert [p.name for p in store.iterdir()] == ["manifest.json"]
    code, _, _ = _run([*argv, "--force"], capsys)
    assert code == 0 and (store / "result.json").is_file()
    assert not (store / "manifest.json").exists()


def test_unwritable_out_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["toy", "train", "--n-features", "3", "--n-hidden", "1", *FAST]
    code, _, err = _run([*argv, "--out", str(blocker)], capsys)  # an existing file
    assert code == 2 and err.startswith("error: --out") and err.count("\n") == 1
    code, _, err = _run([*argv, "--out", str(blocker / "sub")], capsys)  # below a file
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert blocker.read_text() == "x"


def test_console_entry_point_help_and_error():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "polysemy", "toy", "train", "--help"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0 and "--importance-decay" in proc.stdout
    assert "--best-of" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "polysemy", "toy", "train", "--sparsity", "2", "--out", "x"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
