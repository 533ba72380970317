"""Tests for `polysemy demo`: flags from DemoConfig, one-line refusals, the toy tour, and a
real demo killed after its first stage and resumed (tiny budgets; the full demo runs in
`make demo`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polysemy.cli import demo, main
from polysemy.demo.config import DemoConfig, preset


def tiny_flags() -> list[str]:
    """The tiny preset as command-line flags (every field that differs from the full demo)."""
    flags: list[str] = []
    full, tiny = DemoConfig(), preset("tiny")
    for field in dataclasses.fields(DemoConfig):
        value = getattr(tiny, field.name)
        if value != getattr(full, field.name):
            flags += [f"--{field.name.replace('_', '-')}", str(value)]
    return flags


def test_demo_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "polysemy", "demo", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for text in ("runs/demo", "--quick", "--toy", "--sae-tokens", "--force"):
        assert text in proc.stdout


def test_flags_override_the_preset() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    demo.register(sub)
    args = parser.parse_args(["demo", "--quick", "--k", "8"])
    assert demo.demo_config(args) == preset("quick", k=8)
    args = parser.parse_args(["demo", "--tokens", "5000", "--seed", "3"])
    assert demo.demo_config(args) == preset("full", tokens=5000, seed=3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tokens", "3"], "error: --tokens must be an int >= 64; got 3"),
        (["--quick", "--sae-batch-size", "400000"], "error: --sae-tokens must be an int >= 400000"),
        (["--quick", "--toy"], "error: --quick applies to the real demo"),
        (["--k", "x"], "error: polysemy demo: argument --k: expected an int, got 'x'"),
    ],
)
def test_demo_refuses_bad_config(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d"
    try:
        code = main(["demo", "--out", str(out), *argv])
    except SystemExit as exc:  # argparse's own usage errors exit from the parser
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not out.exists()


def test_demo_refuses_foreign_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--force" in err
    assert (out / "keep.txt").exists()


def test_toy_tour_runs_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real tour runs every fast experiment; here two of them, 150 steps each, to test the
    # command end to end in a few seconds.
    monkeypatch.setattr(demo, "DEMO_EXPERIMENTS", ("correlation", "pentagon"))
    monkeypatch.setattr(demo, "DEMO_JOBS", 1)  # in-process, so the patched steps apply
    from polysemy.toy import experiments

    for name in ("correlation", "pentagon"):
        fn = experiments.EXPERIMENTS[name]
        monkeypatch.setitem(
            experiments.EXPERIMENTS, name, lambda fn=fn, **kw: fn(**{**kw, "steps": 150})
        )
    out = tmp_path / "demo"
    assert main(["demo", "--toy", "--out", str(out), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["page"] == str(out / "index.html")
    page = (out / "index.html").read_text()
    assert "polysemy demo" in page and "a neuron is a mix of features" in page
    assert json.loads((out / "summary.json").read_text())["fast"] is True


def test_killed_demo_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "polysemy", "demo", "--out", str(out), *tiny_flags()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    record = out / "demo.json"
    proc = subprocess.Popen([*argv, "--json"], env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if record.is_file() and json.loads(record.read_text())["stages"].get("harvest"):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the demo ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    stages = json.loads(record.read_text())["stages"]
    assert stages["harvest"]["done"] and not stages.get("fidelity-mlp", {}).get("done")
    manifest = out / "stores" / "mlp" / "manifest.json"
    before = manifest.stat().st_mtime_ns

    done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    assert "harvest" in obj["resumed"] and "harvest" not in obj["ran"]
    assert {"sae-mlp", "neurons-mlp", "ablate-mlp"} <= set(obj["ran"]) | set(obj["resumed"])
    assert manifest.stat().st_mtime_ns == before
    assert obj["explore"] == f"polysemy explore {out}"
    final = json.loads(record.read_text())["stages"]
    assert all(s["done"] for s in final.values())
