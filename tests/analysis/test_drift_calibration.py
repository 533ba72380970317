"""The SAE-based drift score (organism_drift's switch and score) against toy ReLU-hidden
neurons whose roles are known: planted swaps are flagged, untouched neurons and two SAE seeds
on one snapshot are not; the truth classes and the row swap on hand-made weights; refusals."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import polysemy as ps
from polysemy.analysis.drift_calibration import (
    DriftCalibrationConfig,
    _classes,
    _swap_rows,
    _truth,
    calibrate_drift,
)

TINY: dict[str, Any] = dict(seeds=2, snapshots=2, rows=2048, sae_rows=8192)
"""Two toy models of 8 neurons, a start and an end snapshot: 10 SAEs, 5-15 s on 2 loaded cores."""


def test_planted_swaps_are_flagged_and_seed_noise_is_not() -> None:
    cal = ps.analysis.calibrate_drift(**TINY)
    p = cal.planted
    # 2 swapped pairs per model: 4 neurons changed roles by construction, 4 untouched.
    assert (p.changed, p.kept, p.ambiguous) == (8, 8, 0)
    assert p.tpr is not None and p.fpr is not None and p.auc is not None
    # Measured: switch 7/8 flagged among swapped, 1/8 among untouched; score above the
    # null's 95% quantile 8/8 and 1/8; AUC 1.0. A broken score would sit near 1/2 on each.
    assert p.tpr.estimate >= 0.75
    assert p.fpr.estimate <= 0.25
    assert p.tpr_score is not None and p.tpr_score.estimate >= 0.75
    assert p.auc >= 0.9
    assert p.score_changed is not None and p.score_kept is not None
    assert p.score_changed > p.score_kept + 0.3
    # Two SAE seeds on one unchanged snapshot: the false-positive rate of the switch (3/32).
    assert cal.null_switch.n == 2 * 2 * 8  # models x snapshots x live neurons
    assert cal.null_switch.estimate <= 0.25
    assert cal.null_switch.method == "clopper-pearson"
    assert 0.0 < cal.threshold < 1.0
    assert cal.steps == [0, 3000]
    assert cal.sae_fvu[2] < 0.2  # the SAEs do reconstruct the toy's hidden layer
    assert set(cal.to_dict()) >= {"null_switch", "natural", "planted", "threshold"}


def test_truth_classes_and_row_swap_on_hand_made_weights() -> None:
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 1.0], [-1.0, -1.0, -1.0]])
    mass = torch.ones(3)
    T = _truth(W, mass)
    assert torch.allclose(T.sum(-1), torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    swapped = _swap_rows(W, T, 1, torch.Generator().manual_seed(0))
    moved = (swapped != W).any(-1)
    assert int(moved.sum()) == 2 and not bool(moved[3])  # a dead neuron is never swapped
    cfg = DriftCalibrationConfig()
    changed, kept, ambiguous, drift = _classes(T, _truth(swapped, mass), cfg)
    assert bool((drift[moved] >= cfg.large_drift).all()) and float(drift[~moved].max()) == 0.0
    assert torch.equal(changed, moved)
    assert torch.equal(kept, ~moved & torch.tensor([True, True, True, False]))
    assert not bool(ambiguous.any())
    # A near-tie that flips by a small move is neither changed nor kept.
    Ta = _truth(torch.tensor([[1.0, 0.95, 0.0]]), mass)
    Tb = _truth(torch.tensor([[0.95, 1.0, 0.0]]), mass)
    assert [bool(c) for c in _classes(Ta, Tb, cfg)[:3]] == [False, False, True]


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"swaps": 5}, "swaps"),
        ({"sparsity": 1.0}, "sparsity"),
        ({"changed_drift": 0.05}, "changed_drift"),
        ({"seeds": 0}, "seeds"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_options_are_refused_naming_the_parameter(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        calibrate_drift(**options)


@pytest.mark.slow
def test_default_calibration() -> None:
    """The figures in docs/drift.md (Calibration through SAEs), with room for the seeds."""
    cal = calibrate_drift(seeds=8)  # 91 s on the loaded 2-core machine
    assert cal.null_switch.estimate <= 0.15  # measured 8% (21/256)
    assert cal.null_switch_clear.estimate <= 0.1  # 5% (8/147)
    p, n = cal.planted, cal.natural
    assert p.tpr is not None and p.tpr.estimate >= 0.85  # 91% (29/32)
    assert p.fpr is not None and p.fpr.estimate <= 0.25  # 16% (5/32)
    assert p.tpr_score is not None and p.tpr_score.estimate >= 0.9  # 100%
    assert p.auc is not None and p.auc >= 0.95  # 0.999
    assert n.changed > 0 and n.kept > 0  # 23 and 92
    assert n.fpr is not None and n.fpr.estimate <= 0.1  # 3% (3/92)
    assert n.auc is not None and n.auc > 0.6  # 0.72: natural changes are gradual
