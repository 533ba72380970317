"""Toy meaning drift: exact zeros where nothing moved, large where neurons change roles,
the seed null, the analysis folder, and every validation branch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import polysemy as ps
from polysemy.analysis.drift import (
    ToyDriftConfig,
    _greedy,
    chorus,
    match_neurons,
    toy_drift,
)
from polysemy.analysis.folder import read_analysis
from polysemy.toy.model import ToyConfig
from polysemy.toy.result import save_toy_run
from polysemy.toy.trainer import ToyRun

# The calibration run of docs/drift.md, shortened: dense features with decaying importance in
# a relu-hidden model, so the trained solution (the 4 most important features, one per neuron)
# is unique up to a permutation of the neurons, while the random start is not that solution.
CALIBRATION: dict[str, Any] = dict(
    model="relu-hidden",
    n_features=8,
    n_hidden=4,
    sparsity=[0.0] * 8,
    importance_decay=0.7,
    steps=3000,
    lr=1e-2,
    lr_schedule="cosine",
    batch_size=256,
    snapshots=8,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("drift") / "toy"
    ps.toy.train(out=out, progress=False, **CALIBRATION)
    return out


@pytest.fixture(scope="module")
def result(trained: Path):
    return toy_drift(trained, out=trained / "analyses" / "drift-toy", samples=2048, resamples=500)


def test_chorus_is_positive_loadings_squared_and_normalised():
    W = torch.tensor([[[3.0, -4.0, 4.0], [-1.0, -2.0, 0.0]]])  # (1, 2 neurons, 3 features)
    s = chorus(W)
    assert torch.allclose(s[0, 0], torch.tensor([9 / 25, 0.0, 16 / 25], dtype=torch.float64))
    assert torch.equal(s[0, 1], torch.zeros(3, dtype=torch.float64))  # never fires: dead
    signed = chorus(W, signed=True)  # abs model: inputs of both signs
    assert torch.allclose(signed[0, 1], torch.tensor([0.2, 0.8, 0.0], dtype=torch.float64))


def test_matching_recovers_a_permutation_hungarian_and_greedy():
    a = torch.eye(5, dtype=torch.float64) + 0.05
    perm = torch.tensor([3, 0, 4, 1, 2])
    b = torch.empty_like(a)
    b[perm] = a  # a[k] sits at b[perm[k]]
    got, method = match_neurons(a, b)
    assert method == "hungarian" and torch.equal(got, perm)
    cost = 1.0 - (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T
    assert torch.equal(_greedy(cost), perm)


def test_identical_snapshots_give_zero_drift(tmp_path: Path):
    config = ToyConfig.sweep("relu-hidden", 5, 3, [0.0, 0.5], steps=1, snapshots=2)
    W = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    b = torch.zeros(2, 5)
    run = ToyRun(config, W, b, torch.zeros(2), snapshots=[(0, W), (1, W.clone())])
    save_toy_run(run, tmp_path / "same")
    res = toy_drift(tmp_path / "same", samples=256, resamples=100)
    assert float(res.drift.abs().max()) < 1e-6 and not bool(res.switch.any())
    live = torch.isfinite(res.correlation)
    assert bool(live.any()) and torch.allclose(res.correlation[live], torch.ones(1), atol=1e-5)
    assert res.summary["pairs"][0]["verdict"] == "stable"


def test_calibration_span_drifts_and_late_pair_does_not(result):
    s = result.summary
    assert s["steps"] == [0, 1, 4, 14, 55, 208, 790, 3000]
    # From the random start to the trained solution neurons change roles...
    assert s["span"]["drift"]["low"] > 0.4 and s["span"]["verdict"] == "drifted"
    assert s["span"]["switch_fraction"]["estimate"] > 0.5
    # ...far more than two seeds' trained models differ once matched...
    assert s["null"]["drift"]["high"] < s["span"]["drift"]["low"]
    assert s["null"]["matching"] == "hungarian" and s["null"]["seed"] == 1
    # ...and the last pair of the converged run barely moves.
    assert s["late"]["drift"]["estimate"] < 0.03
    assert s["late"]["verdict"] in ("stable", "within null")
    assert s["pairs"][0]["drift"]["estimate"] < 1e-3  # one Adam step
    assert s["pairs"][0]["median_correlation"] > 0.99
    assert 0.0 <= s["neurons"]["switch_fraction"]["estimate"] <= 1.0


def test_result_shapes_and_folder(result, trained: Path):
    assert result.shares.shape == (8, 8, 4, 8) and result.drift.shape == (7, 8, 4)
    assert result.null_drift.shape == (8, 8, 4)
    folder = read_analysis(trained / "analyses" / "drift-toy", "drift")
    assert folder.summary["neurons"] == result.summary["neurons"]
    assert folder.inputs["model"] == "relu-hidden" and folder.inputs["samples"] == 2048
    t = folder.tensors("drift.safetensors")
    assert t["steps"].tolist() == result.steps and t["switch"].shape == (7, 8, 4)


def test_deterministic_under_seed(trained: Path, result):
    again = toy_drift(trained, samples=2048, resamples=500)
    assert torch.equal(again.drift, result.drift)
    assert again.summary["null"] == result.summary["null"]


def test_cli_json(capsys, trained: Path, tmp_path: Path):
    from polysemy.cli import main

    code = main(["analyze", "drift", "--toy", str(trained), "--samples", "512",
                 "--resamples", "200", "--out", str(tmp_path / "d"), "--json"])  # fmt: skip
    assert code == 0
    obj = json.loads(capsys.readouterr().out)
    assert {"switch_fraction", "median_correlation"} <= set(obj["neurons"])
    assert {"drift", "switch_fraction", "median_correlation", "matching"} <= set(obj["null"])
    assert (tmp_path / "d" / "analysis.json").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--samples", "1"], "samples"),
        (["--tolerance", "2"], "tolerance"),
        (["--null-seed-offset", "0"], "null_seed_offset"),
    ],
)
def test_cli_bad_flags_exit_2_and_write_nothing(capsys, trained, tmp_path, argv, message):
    from polysemy.cli import main

    out = tmp_path / "bad"
    code = main(["analyze", "drift", "--toy", str(trained), "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message.replace("_", "-") in err.replace("_", "-")
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_refuses_runs_without_snapshots_or_privileged_basis(tmp_path: Path):
    plain = tmp_path / "plain"
    ps.toy.train(out=plain, model="relu-hidden", n_features=4, n_hidden=2, steps=5,
                 progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="at least 2 snapshots"):
        toy_drift(plain, out=tmp_path / "a")
    output = tmp_path / "output"
    ps.toy.train(out=output, model="relu-output", n_features=4, n_hidden=2, steps=5,
                 snapshots=3, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="relu-hidden or abs"):
        toy_drift(output)
    absrun = tmp_path / "abs"
    ps.toy.train(out=absrun, model="abs", n_features=3, n_hidden=4, steps=20, snapshots=3,
                 progress=False)  # fmt: skip
    res = toy_drift(absrun, samples=256, resamples=100)
    assert res.shares.shape == (3, 1, 4, 3) and bool((res.shares.sum(-1) > 0.99).all())
    with pytest.raises(FileNotFoundError):
        toy_drift(tmp_path / "missing")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="tolerance"):
        ToyDriftConfig(tolerance=-0.1)
