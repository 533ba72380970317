"""Tests for `polysemy demo` (its plumbing; the full demo runs in `make demo`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polysemy.cli import demo, main


def test_demo_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "polysemy", "demo", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "runs/demo" in proc.stdout


def test_demo_refuses_foreign_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--force" in err
    assert (out / "keep.txt").exists()


def test_demo_runs_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real demo runs every fast experiment; here two of them, 150 steps each, to test the
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
    assert main(["demo", "--out", str(out), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["page"] == str(out / "index.html")
    page = (out / "index.html").read_text()
    assert "polysemy demo" in page and "a neuron is a mix of features" in page
    assert json.loads((out / "summary.json").read_text())["fast"] is True
