"""Tests for polysemy.report.toy_report that need no training: the phase figure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from polysemy.report.toy_report import draw_experiment, draw_phase
from polysemy.toy import experiments as ex
from polysemy.toy import theory


def _phase_result(diagram: theory.PhaseDiagram | None) -> ex.PhaseResult:
    """A phase result whose trained grid agrees with the theory everywhere."""
    result = ex.PhaseResult(name="phase-2-1", title="phase", numbers={}, checks=(), seconds=0.0)
    if diagram is None:
        return result
    return dataclasses.replace(result, diagram=diagram, empirical=diagram.labels)


@pytest.mark.parametrize(("n_features", "n_hidden"), [(2, 1), (3, 2)])
def test_draw_phase_writes_png_and_draw_experiment_names_it(
    tmp_path: Path, n_features: int, n_hidden: int
) -> None:
    diagram = theory.phase_diagram(n_features, n_hidden, [0.3, 1.0, 3.0], [0.05, 0.3, 1.0])
    result = _phase_result(diagram)
    path = draw_phase(result, tmp_path / "phase.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert draw_experiment(result, tmp_path) == [f"phase_{n_features}_{n_hidden}.png"]
    assert (tmp_path / f"phase_{n_features}_{n_hidden}.png").is_file()


def test_draw_phase_refuses_a_result_without_diagram(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="draw_phase needs a result with its theory diagram"):
        draw_phase(_phase_result(None), tmp_path / "phase.png")
    assert not (tmp_path / "phase.png").exists()
