import json
import re
import subprocess
import sys

import pytest
import torch

from polysemy.activations.store import ActivationStore
from polysemy.cli import main

ARGS = ["synth", "--n-features", "32", "--d-in", "8", "--active", "3", "--tokens", "3000"]


def test_synth_json(tmp_path, capsys):
    out = tmp_path / "acts"
    code = main([*ARGS, "--seed", "1", "--shard-rows", "1000", "--out", str(out), "--json"])
    assert code == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["rows"] == 3000 and result["shards"] == 3 and result["d_in"] == 8
    assert 2.5 < result["mean_active"] < 3.5
    store = ActivationStore(out)
    assert store.rows == 3000 and store.truth() is not None
    assert store.source["synth"]["seed"] == 1


def test_synth_options_and_determinism(tmp_path, capsys):
    extra = ["--frequency-decay", "1", "--group-size", "4", "--correlation", "0.5"]
    extra += ["--noise", "0.1", "--magnitude", "exponential", "--dtype", "bfloat16"]
    assert main([*ARGS, *extra, "--out", str(tmp_path / "a")]) == 0
    assert main([*ARGS, *extra, "--out", str(tmp_path / "b")]) == 0
    assert "wrote 3000 rows" in capsys.readouterr().out
    a, b = ActivationStore(tmp_path / "a"), ActivationStore(tmp_path / "b")
    assert a.dtype == torch.bfloat16
    assert torch.equal(a.read(0, 3000), b.read(0, 3000))
    assert a.source["synth"]["group_size"] == 4


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--tokens", "0"], "--tokens"),
        (["--active", "64"], r"^error: --active must be a number in \(0, 32\]; got 64.0$"),
        (["--correlation", "2"], "--correlation"),
        (["--dtype", "int8"], "--dtype"),
        (["--noise", "-0.1"], r"^error: --noise must be a number >= 0; got -0.1$"),
        (["--shard-rows", "0"], r"^error: --shard-rows must be an int >= 1; got 0$"),
        (["--noise", "nan"], "--noise: expected a finite number, got 'nan'"),
        (["--frequency-decay", "x"], "--frequency-decay: expected a number, got 'x'"),
        (["--neuron-support", "2", "--chorus", "3"], r"--n-features must be .* = 12 .*; got 32$"),
        (["--chorus", "2"], r"--neuron-support must be at least 2 with chorus 2; got 0$"),
    ],
)
def test_synth_bad_input_one_line_exit_2(tmp_path, capsys, args, match):
    argv = [*ARGS, *args, "--out", str(tmp_path / "x")]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(match, err.rstrip("\n")), err
    assert not (tmp_path / "x").exists()


def test_synth_chorus(tmp_path, capsys):
    # 12 features on 2 of 8 neurons, exactly 3 per neuron (n_features = d_in * c / s).
    chorus = ["--n-features", "12", "--neuron-support", "2", "--chorus", "3"]
    assert main([*ARGS, *chorus, "--out", str(tmp_path / "c"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_features"] == 12
    truth = ActivationStore(tmp_path / "c").truth()
    assert truth is not None
    loads = truth["features"] != 0
    assert torch.all(loads.sum(1) == 2) and torch.all(loads.sum(0) == 3)


def test_synth_refuses_foreign_out(tmp_path, capsys):
    out = tmp_path / "x"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([*ARGS, "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_synth_subprocess_json_only_on_stdout(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "polysemy", *ARGS, "--out", str(tmp_path / "s"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == 3000
