"""Tests for polysemy.toy.runs: the notebook entry points and their configs (tiny, seeded)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import polysemy as ps
from polysemy.toy.result import load_toy_run
from polysemy.toy.runs import PhaseConfig, ReproduceConfig, ToySweepConfig
from polysemy.validation import ParameterError


def test_train_from_keywords_accepts_lists_and_writes_the_run(tmp_path: Path) -> None:
    out = tmp_path / "x"
    run = ps.toy.train(
        out=out, n_features=6, n_hidden=2, sparsity=[0, 0.9], steps=20, batch_size=16,
        importance_decay=0.5, progress=False,
    )  # fmt: skip
    assert run.W.shape == (2, 2, 6)
    saved = load_toy_run(out)
    assert saved.config.sparsity == (0.0, 0.9) and saved.config.steps == 20
    assert saved.config.importance[1] == pytest.approx(tuple(0.5**i for i in range(6)))
    assert torch.equal(saved.W, run.W)


def test_config_plus_keywords_and_list_fields_become_tuples() -> None:
    config = ToySweepConfig(sparsity=[0.1, 0.2], importance=[1, 1, 1], n_features=3)  # type: ignore[arg-type]
    assert config.sparsity == (0.1, 0.2) and config.importance == (1, 1, 1)
    assert hash(config)  # frozen and hashable once lists are stored as tuples
    run = ps.toy.train(config, steps=5, batch_size=8, progress=False)
    assert run.config.steps == 5 and run.config.importance == ((1.0,) * 3,) * 2
    assert PhaseConfig(density=[0.5, 1]).density == (0.5, 1)  # type: ignore[arg-type]
    assert ReproduceConfig(experiments=["pentagon"]).names == ("pentagon",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sparsity": [1.5]}, "sparsity must be a list of numbers in [0, 1]"),
        ({"sparsity": []}, "sparsity must be a non-empty list"),
        ({"n_features": 3, "importance": [1, 2]}, "importance must be a list of n_features=3"),
        ({"n_features": 3, "importance": [1, -2, 3]}, "importance must be a list of numbers >= 0"),
        ({"importance": [1.0] * 20, "importance_decay": 0.5}, "importance must be None when"),
        ({"importance_decay": 0}, "importance_decay must be a number > 0"),
        ({"n_hidden": 0}, "n_hidden must be an int >= 1"),
        ({"bogus": 1}, "bogus must be a field of ToySweepConfig"),
    ],
)
def test_train_refuses_bad_options_naming_the_parameter(
    tmp_path: Path, options: dict, message: str
) -> None:
    with pytest.raises(ParameterError, match=message.replace("[", r"\[").replace("(", r"\(")):
        ps.toy.train(out=tmp_path / "x", **options)
    assert not (tmp_path / "x").exists()


def test_train_refuses_a_foreign_out_unless_force(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="pass force=True"):
        ps.toy.train(out=out, n_features=3, n_hidden=1, steps=5, batch_size=8, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    ps.toy.train(
        out=out, n_features=3, n_hidden=1, steps=5, batch_size=8, progress=False, force=True
    )
    assert (out / "result.json").is_file() and not (out / "notes.txt").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_features": 4, "n_hidden": 2}, "n_features must be 2 with n_hidden=1"),
        ({"density": [0.5, 1.5]}, r"density must be a list of numbers in \(0, 1\]"),
        ({"density": [0, 0.5]}, r"density must be a list of numbers in \(0, 1\]"),
        ({"relative_importance": [-1, 2]}, "relative_importance must be a list of numbers > 0"),
        ({"grid": 0}, "grid must be an int >= 1"),
        ({"best_of": 0}, "best_of must be an int >= 1"),
    ],
)
def test_phase_config_refuses_bad_fields(options: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        PhaseConfig(**options)


def test_phase_grid_defaults() -> None:
    assert PhaseConfig().cells == 11 and PhaseConfig(fast=True).cells == 6
    assert PhaseConfig(fast=True, grid=3).cells == 3


def test_phase_writes_grid_and_json(tmp_path: Path) -> None:
    drawn: list[str] = []
    result = ps.toy.phase(
        out=tmp_path / "p", grid=2, steps=50, best_of=1, progress=False,
        render=lambda results, folder: drawn.extend(r.name for r in results),
    )  # fmt: skip
    assert drawn == ["phase-2-1"] and result.empirical.shape == (2, 2)
    phase_json = json.loads((tmp_path / "p" / "phase.json").read_text())
    assert phase_json["format"] == "polysemy.toy-phase/1"
    assert phase_json["numbers"]["agreement_all"] == result.agreement_all
    assert load_toy_run(tmp_path / "p").W.shape == (4, 1, 2)


def test_reproduce_config_refuses_unknown_experiments_and_bad_counts() -> None:
    with pytest.raises(ParameterError, match="experiments must be a list of names from"):
        ReproduceConfig(experiments=("pentagon", "nope"))
    with pytest.raises(ParameterError, match="jobs must be an int >= 1"):
        ReproduceConfig(jobs=0)
    assert ReproduceConfig().names == tuple(ps.toy.experiments.EXPERIMENTS)


def test_reproduce_without_out_returns_results_and_summary() -> None:
    done = ps.toy.reproduce(
        experiments=["correlation"], fast=True, steps=100, jobs=1, progress=False
    )
    assert done.out is None and [r.name for r in done.results] == ["correlation"]
    assert done.summary["checks_total"] == 2 and done.summary["fast"] is True
    json.dumps(done.summary, allow_nan=False)


def test_reproduce_writes_summary_and_runs(tmp_path: Path) -> None:
    config = ReproduceConfig(experiments=("pentagon",), fast=True, steps=100, jobs=1)
    done = ps.toy.reproduce(config, tmp_path / "paper", progress=False)
    summary = json.loads((tmp_path / "paper" / "summary.json").read_text())
    assert summary == done.summary and summary["format"] == "polysemy.toy-report/1"
    assert summary["experiments"][0]["numbers"]["represented"][0] == list(
        done.results[0].represented[0]  # type: ignore[attr-defined]
    )
    assert load_toy_run(tmp_path / "paper" / "runs" / "pentagon").W.shape == (8, 2, 5)
    assert dataclasses.replace(config, fast=False).fast is False
