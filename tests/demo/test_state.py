"""Tests for polysemy/demo/state.py: demo.json bookkeeping, resume and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polysemy.demo.state import open_state
from polysemy.runfolder import detect_kind


def test_records_round_trip_and_mark_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    state = open_state(out, {"k": 4}, force=False)
    assert detect_kind(out) == "polysemy.demo/1"
    assert not state.done("harvest")
    state.record("harvest", 1.23456, rows=10)
    again = open_state(out, {"k": 4}, force=False)
    assert again.done("harvest") and not again.done("sae-mlp")
    assert again.stages["harvest"] == {"done": True, "seconds": 1.235, "rows": 10}
    record = json.loads((out / "demo.json").read_text())
    assert record == {"format": "polysemy.demo/1", "config": {"k": 4}, "stages": again.stages}


def test_another_config_is_refused_then_forced(tmp_path: Path) -> None:
    out = tmp_path / "run"
    open_state(out, {"k": 4, "tokens": 100}, force=False).record("harvest", 1.0)
    (out / "stores").mkdir()
    with pytest.raises(ValueError, match=r"another config \(k=4 \(now 8\)\); .* force=True"):
        open_state(out, {"k": 8, "tokens": 100}, force=False)
    fresh = open_state(out, {"k": 8, "tokens": 100}, force=True)
    assert fresh.stages == {} and not (out / "stores").exists()


def test_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="out must be a folder"):
        open_state(path, {}, force=False)
