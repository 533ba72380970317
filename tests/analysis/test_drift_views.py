"""drift_views: a toy and an organism drift folder read back into the plots' data: shapes,
voices that add up, the picks' order, the lineage rule on hand-made codes, the loss curve
copied with its intervals, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tests.analysis.drift_run import drift_run
from tests.organism.conftest import TINY

from polysemy.analysis.drift_views import (
    genealogy_counts,
    loss_curve,
    neuron_voices,
    null_band,
    read_drift,
)
from polysemy.analysis.organism_drift import _lineage


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return drift_run(tmp_path_factory)


def test_organism_view_voices_add_up_and_picks_are_ordered(run: Path) -> None:
    view = read_drift(run / "analyses" / "drift-organism")
    d = TINY["d_mlp"]
    assert view.source == "organism" and view.steps == [0, 1, 8, 60]
    assert view.score.shape == view.null_score.shape == view.switch.shape == (3, d)
    assert len(view.labels) == d and view.labels[5] == "neuron 5"
    mean = view.score.mean(0)
    picked = view.picks["switching"]
    assert len(picked) == 5 and all(view.alive[j] for j in picked)
    assert list(mean[picked]) == sorted(mean[picked], reverse=True)
    alive = np.flatnonzero(view.alive)
    assert mean[picked[0]] == mean[alive].max()
    assert view.picks["stable"] == [int(alive[np.argmin(mean[alive])])]
    for j in (picked[0], view.picks["stable"][0]):
        v = neuron_voices(view, j)
        stack = np.sum([layer["shares"] for layer in v["layers"]], 0) + v["others"] + v["rest"]
        np.testing.assert_allclose(stack, 1.0, atol=1e-5)  # every share is drawn once
        assert 1 <= len(v["layers"]) <= 6 and v["score"] == view.score[:, j].tolist()
        peaks = [max(layer["shares"]) for layer in v["layers"]]
        assert peaks == sorted(peaks, reverse=True)  # strongest voices first
    band = null_band(view)
    low, median, high = band["low"], band["median"], band["high"]
    assert all(lo <= md <= hi for lo, md, hi in zip(low, median, high, strict=True))
    g = genealogy_counts(view)
    assert g is not None and g["pairs"] == ["0→1", "1→8", "8→60"]
    assert g["born"] == [p["features"]["born"] for p in view.summary["pairs"]]
    with pytest.raises(ValueError, match="neuron must be in"):
        neuron_voices(view, d)


def test_organism_drift_saves_lineage_and_the_loss_curve(run: Path) -> None:
    folder = run / "analyses" / "drift-organism"
    t = load_file(str(folder / "drift.safetensors"))
    d_sae = 2 * TINY["d_mlp"]
    assert t["lineage"].shape == (4, d_sae)
    assert torch.equal(t["lineage"][0], torch.arange(d_sae))
    view = read_drift(folder)
    curve = loss_curve(view)
    assert curve is not None
    meta = json.loads((run / "organism" / "organism.json").read_text())
    assert [s["step"] for s in curve["snapshots"]] == view.steps
    for s in curve["snapshots"]:
        lo, hi = s["ci95"]
        assert lo <= s["heldout_loss"] <= hi and s["windows"] >= 2
    assert len(curve["history"]) == len(meta["history"]) > 0
    assert set(curve["baselines"]) == {"unigram", "bigram"}


def test_lineage_chains_matching_features_and_starts_new_ones() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 3, generator=g).relu()
    b = torch.cat([a[:, :2] * 2.0, torch.randn(400, 1, generator=g).relu()], 1)  # 2 kept, 1 new
    c = torch.cat([b[:, :1], b[:, :1] * 3.0, b[:, 2:]], 1)  # feature 0 split in two
    ids = _lineage([a, b, c], 0.4)
    assert ids[0].tolist() == [0, 1, 2]
    assert ids[1].tolist()[:2] == [0, 1] and ids[1, 2] >= 3  # a new lineage
    assert ids[2].tolist() == [0, 0, int(ids[1, 2])]  # the split's children share the parent's


def test_toy_view(run: Path) -> None:
    view = read_drift(run / "analyses" / "drift-toy")
    assert view.source == "toy" and len(view.steps) == 5
    assert view.score.shape == (4, 2 * 3) and view.labels[4] == "instance 1, neuron 1"
    assert genealogy_counts(view) is None
    curve = loss_curve(view)  # the loss at each snapshot on the drift's inputs
    assert curve is not None and [s["step"] for s in curve["snapshots"]] == view.steps
    for s in curve["snapshots"]:
        assert s["ci95"][0] <= s["heldout_loss"] <= s["ci95"][1] and s["windows"] == 512
    zero = curve["baselines"]["zero output"]["loss"]
    assert curve["snapshots"][-1]["heldout_loss"] < 0.5 * zero  # training learned something
    assert curve["snapshots"][0]["heldout_loss"] <= zero + 0.05
    j = view.picks["switching"][0]
    v = neuron_voices(view, j)
    assert [layer["name"].startswith("feature ") for layer in v["layers"]] == [True] * len(
        v["layers"]
    )
    np.testing.assert_allclose(
        np.sum([layer["shares"] for layer in v["layers"]], 0) + v["others"], 1.0, atol=1e-5
    )


def test_refuses_a_folder_that_is_not_a_drift_analysis(run: Path) -> None:
    with pytest.raises(ValueError, match="folder must be a drift analysis folder"):
        read_drift(run / "organism")
