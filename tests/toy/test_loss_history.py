"""`toy train --snapshots N` records the loss along training: every k steps on one fixed batch
of fresh inputs, for the kept seed, saved atomically in result.json under its own format and
read back; the toy drift's training.json carries it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from polysemy.analysis.drift import toy_drift
from polysemy.toy.model import ToyConfig
from polysemy.toy.result import LOSS_HISTORY_FORMAT, load_toy_run, save_toy_run
from polysemy.toy.trainer import evaluate_loss, history_every, train_toy


def test_history_every_k_steps_for_the_kept_seed(tmp_path: Path) -> None:
    cfg = ToyConfig.sweep(
        "relu-hidden", 5, 2, (0.0, 0.7), steps=450, batch_size=64, snapshots=4, best_of=2
    )
    run = train_toy(cfg)
    k = history_every(cfg)
    assert k == 4
    steps = [s for s, _ in run.loss_history]
    assert steps[0] == 0 and steps[-1] == 450 and steps[1] == k and len(steps) == 114
    first, last = run.loss_history[0][1], run.loss_history[-1][1]
    assert first.shape == (2,) and bool((last < first).all())  # it learned something
    # The last point is the kept seed's final weights on the history's own batch.
    again = evaluate_loss(cfg, run.params, n_samples=512, seed=cfg.seed + 0x5EED + 1)
    assert torch.allclose(last, again, rtol=1e-5)
    assert train_toy(dataclasses.replace(cfg, snapshots=None)).loss_history == []
    save_toy_run(run, tmp_path / "rh")
    record = json.loads((tmp_path / "rh" / "result.json").read_text())
    h = record["loss_history"]
    assert h["format"] == LOSS_HISTORY_FORMAT and h["every"] == k and h["steps"] == steps
    back = load_toy_run(tmp_path / "rh")
    assert [s for s, _ in back.loss_history] == steps
    assert torch.allclose(back.loss_history[-1][1], last)
    drift = toy_drift(tmp_path / "rh", out=tmp_path / "drift", samples=256, resamples=200)
    assert drift is not None
    training = json.loads((tmp_path / "drift" / "training.json").read_text())
    assert [p["step"] for p in training["history"]] == steps
    assert training["history"][-1]["loss"] < training["history"][0]["loss"]
    assert "every 4 steps" in training["history_unit"]
