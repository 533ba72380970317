"""Tests for polysemy.report.toy_report that need no training: the phase figure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polysemy.report.toy_report import (
    draw_experiment,
    draw_phase,
    draw_phase_figure,
    experiment_section,
)
from polysemy.toy import experiments as ex
from polysemy.toy import theory
from polysemy.toy.model import ToyConfig
from polysemy.toy.trainer import ToyRun


def _phase_result(diagram: theory.PhaseDiagram) -> ex.PhaseResult:
    """A phase result whose trained grid agrees with the theory everywhere."""
    n_cells = diagram.labels.size
    config = ToyConfig(
        model="relu-output",
        n_features=diagram.n_features,
        n_hidden=diagram.n_hidden,
        sparsity=(0.5,) * n_cells,
        importance=((1.0,) * diagram.n_features,) * n_cells,
    )
    run = ToyRun(
        config=config,
        W=torch.zeros(n_cells, diagram.n_hidden, diagram.n_features),
        b_final=torch.zeros(n_cells, diagram.n_features),
        loss=torch.zeros(n_cells),
    )
    return ex.PhaseResult(
        name=f"phase-{diagram.n_features}-{diagram.n_hidden}",
        title="phase",
        checks=(),
        seconds=0.0,
        relative_importance=tuple(diagram.relative_importance.tolist()),
        density=tuple(diagram.density.tolist()),
        empirical=diagram.labels,
        agreement_away_from_boundary=1.0,
        agreement_all=1.0,
        cells_away_from_boundary=int((~diagram.near_boundary).sum()),
        steps=1,
        best_of=1,
        run=run,
        diagram=diagram,
    )


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


def test_section_shows_the_typed_numbers_and_the_theory(tmp_path: Path) -> None:
    diagram = theory.phase_diagram(2, 1, [0.3, 3.0], [0.05, 1.0])
    result = _phase_result(diagram)
    section = experiment_section(result, draw_experiment(result, tmp_path))
    assert section.numbers["agreement_all"] == 1.0
    assert section.numbers["theory"] == diagram.labels.tolist()
    assert "run" not in section.numbers and "diagram" not in section.numbers
    draw_phase_figure([result], tmp_path)
    assert (tmp_path / "phase.png").read_bytes()[:4] == b"\x89PNG"
