"""Analysis folders: written whole or not at all, read back with their kind checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy import runfolder
from polysemy.analysis.folder import read_analysis, start_analysis, write_analysis


def test_round_trip_with_tensor_and_json_files(tmp_path: Path) -> None:
    out = start_analysis(tmp_path / "a")
    written = write_analysis(
        out,
        "geometry",
        inputs={"sae": "saes/x"},
        summary={"welch_bound": 0.1},
        files={"pairs.safetensors": {"cos": torch.arange(3.0)}, "top.json": [[1, 0.5]]},
    )
    assert runfolder.detect_kind(out) == "polysemy.analysis/1"
    back = read_analysis(out, "geometry")
    assert back == written
    assert back.tensors("pairs.safetensors")["cos"].tolist() == [0.0, 1.0, 2.0]
    assert back.json("top.json") == [[1, 0.5]]
    with pytest.raises(FileNotFoundError, match=r"has no 'x.json'; it holds \['pairs"):
        back.file("x.json")
    with pytest.raises(ValueError, match="is a 'geometry' analysis; expected 'neurons'"):
        read_analysis(out, "neurons")


def test_a_failed_write_leaves_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "a"
    write_analysis(out, "fidelity", inputs={}, summary={"fvu": 0.1})
    with pytest.raises(ValueError):  # NaN is refused before anything is replaced
        write_analysis(out, "fidelity", inputs={}, summary={"fvu": float("nan")})
    with pytest.raises(ValueError, match="plain file names"):
        write_analysis(out, "fidelity", inputs={}, summary={}, files={"../x.json": 1})
    assert json.loads((out / "analysis.json").read_text())["summary"] == {"fvu": 0.1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_start_refuses_a_folder_holding_another_run(tmp_path: Path) -> None:
    other = tmp_path / "sae"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"format": "polysemy.sae/1"}))
    with pytest.raises(ValueError, match="pass force=True"):
        start_analysis(other)
    assert start_analysis(other, force=True) == other
    with pytest.raises(ValueError, match="kind must be one of"):
        write_analysis(tmp_path / "b", "story", inputs={}, summary={})  # type: ignore[arg-type]
