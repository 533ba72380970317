"""Tests for polysemy.report.toy_figures: every figure renders a real PNG from tiny arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polysemy.report import toy_figures
from polysemy.toy import theory

_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == _MAGIC and path.stat().st_size > 2000


def test_superposition_sweep(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 2, 6, generator=g)
    sup = torch.rand(3, 6, generator=g)
    out = toy_figures.plot_superposition_sweep(W, sup, ["a", "b", "c"], tmp_path / "s.png")
    assert _png(out)


def test_feature_directions(tmp_path: Path) -> None:
    W = theory.ideal_geometry("pentagon").W[None].repeat(2, 1, 1)
    assert _png(toy_figures.plot_feature_directions(W, ["p=1", "p=0.1"], tmp_path / "d.png"))
    with pytest.raises(ValueError, match="n_hidden = 2"):
        toy_figures.plot_feature_directions(torch.zeros(1, 3, 4), ["x"], tmp_path / "e.png")


def test_dimensionality(tmp_path: Path) -> None:
    x = np.geomspace(1, 20, 4)
    D = np.random.default_rng(0).uniform(0, 1, (4, 10))
    norms = np.ones((4, 10))
    out = toy_figures.plot_dimensionality(x, [1, 0.5, 0.5, 0.2], D, norms, tmp_path / "g.png")
    assert _png(out)


def test_phase_diagram(tmp_path: Path) -> None:
    r = np.geomspace(0.1, 10, 5)
    p = np.geomspace(0.01, 1, 5)
    d = theory.phase_diagram_2_1(r, p)
    emp = d.labels.copy()
    emp[0, 0] = (emp[0, 0] + 1) % 3
    out = toy_figures.plot_phase_diagram(
        r, p, d.labels, emp, d.near_boundary, theory.PHASES, tmp_path / "p.png",
        boundary=(r, theory.phase_boundary_2_1(r)),
    )  # fmt: skip
    assert _png(out)


def test_neuron_loadings_and_correlation(tmp_path: Path) -> None:
    W = torch.randn(5, 4, 12, generator=torch.Generator().manual_seed(1))
    assert _png(toy_figures.plot_neuron_loadings(W, [str(i) for i in range(5)], tmp_path / "n.png"))
    grams = [torch.eye(4), -torch.eye(4), torch.zeros(4, 4)]
    assert _png(toy_figures.plot_correlation(grams, ["a", "b", "c"], tmp_path / "c.png"))
