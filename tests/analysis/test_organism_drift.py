"""Organism drift: the seed null equals the drift exactly where the model did not move, real
training moves it beyond the null, the genealogy rules on a hand-made correlation matrix, the
analysis folder, the CLI's --json and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tests.organism.conftest import TINY

from polysemy.analysis.folder import read_analysis
from polysemy.analysis.organism_drift import (
    OrganismDriftConfig,
    feature_correlation,
    genealogy,
    organism_drift,
)
from polysemy.cli import main
from polysemy.organism import OrganismRun, train_organism

SMALL: dict[str, Any] = dict(rows=512, sae_rows=2048, sae_tokens=16384, k=8, expansion=2)
"""Sizes for the tiny organism: 64 neurons, SAEs of 128 latents, about 0.5 s in all."""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> OrganismRun:
    return train_organism(out=tmp_path_factory.mktemp("drift") / "run", progress=False, **TINY)


def _copy_with(run: OrganismRun, dest: Path, snapshots: list[int]) -> Path:
    """A hand-made run folder whose snapshot list is `snapshots` (indices into run's)."""
    assert run.out is not None
    shutil.copytree(run.out, dest)
    meta = json.loads((dest / "organism.json").read_text())
    meta["snapshots"] = [meta["snapshots"][i] for i in snapshots]
    (dest / "organism.json").write_text(json.dumps(meta))
    return dest


def test_training_drifts_beyond_the_sae_seed_null(run: OrganismRun, tmp_path: Path) -> None:
    assert run.out is not None
    res = organism_drift(run.out, out=tmp_path / "drift", **SMALL)
    s = res.summary
    assert s["steps"] == [0, 1, 8, 60] and s["d_mlp"] == TINY["d_mlp"] and s["rows"] == 512
    assert res.score.shape == res.correlation.shape == (3, TINY["d_mlp"])
    # One optimizer step barely moves the neurons; 7 more at lr 1e-2 move them a lot.
    assert s["pairs"][0]["median_correlation"] > 0.9
    assert s["pairs"][1]["median_correlation"] < 0.6
    assert s["pairs"][0]["verdict"] in ("within null", "inconclusive")
    assert "drifted" in [p["verdict"] for p in s["pairs"][1:]]
    for p in s["pairs"]:
        assert p["score"]["low"] <= p["score"]["estimate"] <= p["score"]["high"]
    n = s["neurons"]
    assert 0 <= n["switch_fraction"]["low"] <= n["switch_fraction"]["high"] <= 1
    assert n["median_correlation"] is not None and s["null"]["kind"] == "sae seed"
    assert set(s["features"]) >= {"born", "died", "split", "merged", "threshold"}
    assert set(s["null"]["features"]) == {"born", "died", "split", "merged"}
    folder = read_analysis(tmp_path / "drift")
    assert folder.kind == "drift"
    tensors = load_file(str(tmp_path / "drift" / "drift.safetensors"))
    assert tensors["top_features"].shape == (4, TINY["d_mlp"], 8)
    lineage = json.loads((tmp_path / "drift" / "genealogy.json").read_text())
    assert [g["to_step"] for g in lineage] == [1, 8, 60]
    assert len(lineage[1]["born"]) == s["pairs"][1]["features"]["born"]


def test_an_unchanged_model_scores_exactly_its_null(run: OrganismRun, tmp_path: Path) -> None:
    same = _copy_with(run, tmp_path / "same", [3, 3])
    res = organism_drift(same, **SMALL)
    assert torch.equal(res.score, res.null_score)
    assert torch.equal(res.switch, res.null_switch)
    assert torch.allclose(res.correlation, torch.ones_like(res.correlation))
    pair = res.summary["pairs"][0]
    assert pair["verdict"] == "within null"
    assert {k: pair["features"][k] for k in pair["null_features"]} == pair["null_features"]


def test_genealogy_on_a_hand_made_correlation_matrix() -> None:
    corr = torch.tensor(
        [  # rows: features at s; columns: features at t
            [0.9, 0.0, 0.0, 0.0, 0.0],  # 0 -> 0: the same feature
            [0.0, 0.6, 0.5, 0.0, 0.0],  # 1 splits into 1 and 2
            [0.0, 0.0, 0.0, 0.7, 0.0],  # 2 and 3 merge into 3
            [0.0, 0.0, 0.0, 0.6, 0.0],
            [0.1, 0.0, 0.0, 0.0, 0.0],  # 4 dies
        ]
    )  # t's feature 4 is born
    alive = torch.ones(5, dtype=torch.bool)
    g = genealogy(corr, alive, alive, 0.4)
    assert g == {"born": [4], "died": [4], "split": [[1, [1, 2]]], "merged": [[[2, 3], 3]]}
    dead_t = torch.tensor([True, True, True, True, False])
    assert genealogy(corr, alive, dead_t, 0.4)["born"] == []  # a feature that never fires
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    c = feature_correlation(torch.cat([x, torch.zeros(200, 1)], 1), 2 * x + 1)
    assert torch.allclose(c[:3].diagonal(), torch.ones(3, dtype=torch.float64))
    assert float(c[:3].abs().fill_diagonal_(0).max()) < 0.3  # independent columns
    assert torch.equal(c[3], torch.zeros(3, dtype=torch.float64))  # constant: no correlation


def test_cli_json_and_refusals(
    run: OrganismRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.out is not None
    flags = ["--rows", "512", "--sae-rows", "2048", "--sae-tokens", "16384", "--k", "8"]
    args = ["analyze", "drift", "--organism", str(run.out), *flags, "--expansion", "2"]
    assert main([*args, "--out", str(tmp_path / "d"), "--json", "--tolerance", "0.02"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert {"switch_fraction", "median_correlation"} <= set(s["neurons"])
    assert {"born", "died", "split", "merged"} <= set(s["features"]) and "null" in s
    config = read_analysis(tmp_path / "d").inputs["config"]
    assert config["tolerance"] == 0.02  # a flag shared with the toy config reaches this one
    assert main([*args, "--rows", "999999", "--out", str(tmp_path / "big")]) == 2
    assert "--rows must be at most" in capsys.readouterr().err
    assert not (tmp_path / "big").exists()
    one = _copy_with(run, tmp_path / "one", [3])
    assert main(["analyze", "drift", "--organism", str(one), "--out", str(tmp_path / "o")]) == 2
    assert "at least 2 snapshots" in capsys.readouterr().err
    mixed = _copy_with(run, tmp_path / "mixed", [0, 3])
    cfg_path = next((mixed / "snapshots").glob("step-000000")) / "config.json"
    hf = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**hf, "n_inner": 32}))
    with pytest.raises(ValueError, match="share one architecture"):
        organism_drift(mixed, **SMALL)
    with pytest.raises(ValueError, match="match_threshold"):
        OrganismDriftConfig(match_threshold=0.0)
