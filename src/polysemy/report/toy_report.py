"""Turn toy reproductions (`polysemy.toy.experiments`) into PNG figures and one HTML page.

>>> results = [experiments.pentagon(fast=True)]                 # doctest: +SKIP
>>> write_toy_report(results, "runs/paper")                     # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polysemy.report import toy_figures
from polysemy.report.html import Section, write_page
from polysemy.toy import experiments as ex
from polysemy.toy import theory

__all__ = ["draw_experiment", "draw_phase", "experiment_section", "write_toy_report"]

_TEXT = {
    "sparsity-sweep": (
        "Twenty features of decreasing importance (I_i = 0.7^i) squeezed into five dimensions, "
        "at increasing sparsity S. Top row: W^T W (feature i's overlap with feature j; the "
        "diagonal is ||W_i||^2). Bottom row: ||W_i|| per feature, coloured by how much of "
        "feature i's direction other features share. The linear model behaves like PCA at "
        "every S: it keeps the five most important features on orthogonal axes and drops the "
        "rest. The ReLU-output model does the same when features are dense, but as they get "
        "sparse it packs more features than dimensions, in superposition, and uses negative "
        "biases to filter the small interference."
    ),
    "pentagon": (
        "Five features (I_i = 0.9^i) in two dimensions, from dense (left) to sparse (right): "
        "each line is one feature's direction W_i. Dense: the two most important features on "
        "orthogonal axes. Sparse: all five on a regular pentagon."
    ),
    "geometry": (
        "200 features of equal importance in 20 dimensions. Left: dimensions per feature "
        "D* = m / ||W||_F^2 against inverse density; it stays at 1/2 over a range of densities "
        "(features pair up as antipodal pairs, pairs orthogonal to each other). Right: each "
        "represented feature's dimensionality D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2; dashed "
        "lines mark the fractions of the uniform polytopes (1, 3/4 tetrahedron, 2/3 triangle, "
        "1/2 antipodal pair, 2/5 pentagon, 3/8 square antiprism)."
    ),
    "phase": (
        "Phase of an extra feature of relative importance r (the others have importance 1) at "
        "density p. Left: theory (lowest expected loss among the candidate solutions; for n=2, "
        "m=1 the closed-form boundary p* = 4r/(2+5r) for r <= 1, 4/(5+2r) for r >= 1 is drawn). "
        "Right: trained models, best of several seeds per cell. Hatched cells are within half a "
        "grid step of the theory boundary and are not scored; crosses mark scored cells where "
        "the trained model disagrees with theory."
    ),
    "privileged-basis": (
        "The ReLU-hidden model (h = ReLU(W x), a privileged basis) with 10 features and 5 "
        "neurons. Each heatmap row is one neuron's loadings on all ten features: a neuron is a "
        "mix of features, never a single concept by definition. When features are dense the "
        "mix is dominated by one feature per neuron (monosemantic); as they get sparse each "
        "neuron carries several features (polysemantic), so reading a neuron's top feature as "
        "'what the neuron means' would be wrong there."
    ),
    "computation": (
        "Computation in superposition: the model computes |x_i| for 100 features with 40 "
        "ReLU neurons (untied layers). Rows are neurons, columns features (first layer W1). "
        "The paper reports that with dense inputs each neuron serves one feature, and with "
        "sparse inputs neurons serve several features and the model computes more features "
        "than it has neurons. A feature counts as computed when, with only x_i active, the "
        "output explains at least half of the variance of |x_i| on each sign. The checks "
        "below say which of these this run reproduces."
    ),
    "correlation": (
        "W^T W for four features in two dimensions, in pairs (0, 1) and (2, 3). Independent "
        "features settle into antipodal pairs; correlated pairs (both on or both off) avoid "
        "interfering with each other and settle orthogonal; anti-correlated pairs (never both "
        "on) interfere for free and settle antipodal."
    ),
}


def _labels(prefix: str, values: Sequence[float], fmt: str = "{:.3g}") -> list[str]:
    return [f"{prefix}{fmt.format(v)}" for v in values]


def draw_experiment(result: ex.ExperimentResult, folder: str | os.PathLike[str]) -> list[str]:
    """Draw the figures of one reproduction into `folder`; return their file names."""
    folder = Path(folder)
    files: list[str] = []

    def save(name: str) -> Path:
        files.append(name)
        return folder / name

    if isinstance(result, ex.SparsitySweepResult):
        for tag, run in (("linear", result.linear), ("relu-output", result.relu)):
            if run is None:
                continue
            toy_figures.plot_superposition_sweep(
                run.W,
                ex._superposition(run.W),
                _labels("S=", run.config.sparsity),
                save(f"sparsity_sweep_{tag}.png"),
                title=f"{tag} model, n=20, m=5, I_i = 0.7^i",
            )
    elif isinstance(result, ex.PentagonResult) and result.run is not None:
        toy_figures.plot_feature_directions(
            result.run.W,
            _labels("p=", result.run.config.density),
            save("pentagon.png"),
            title="n=5, m=2, I_i = 0.9^i",
        )
    elif isinstance(result, ex.GeometryResult) and result.run is not None:
        W = result.run.W
        frob = (W.double() ** 2).sum(dim=(1, 2))
        toy_figures.plot_dimensionality(
            result.inv_density,
            (W.shape[1] / frob).numpy(),
            ex._dimensionality(W),
            ex._norms(W),
            save("geometry.png"),
            title="n=200, m=20, uniform importance",
        )
    elif isinstance(result, ex.PhaseResult) and result.diagram is not None:
        d = result.diagram
        draw_phase(result, save(f"phase_{d.n_features}_{d.n_hidden}.png"))
    elif isinstance(result, ex.PrivilegedBasisResult) and result.run is not None:
        toy_figures.plot_neuron_loadings(
            result.run.W,
            _labels("density ", result.run.config.density),
            save("privileged_basis.png"),
            title="ReLU-hidden: per-neuron feature loadings (rows: neurons, columns: features)",
        )
    elif isinstance(result, ex.ComputationResult) and result.run is not None:
        toy_figures.plot_neuron_loadings(
            result.run.W,
            _labels("density ", result.run.config.density),
            save("computation.png"),
            title="abs model: first-layer loadings (rows: 40 neurons, columns: 100 features)",
        )
    elif isinstance(result, ex.CorrelationResult) and result.runs:
        kinds = list(result.runs)
        toy_figures.plot_correlation(
            [result.runs[k].W[0].double().T @ result.runs[k].W[0].double() for k in kinds],
            kinds,
            save("correlation.png"),
            title="n=4 (pairs (0,1), (2,3)), m=2, S=0.9",
        )
    return files


def draw_phase(result: ex.PhaseResult, path: str | os.PathLike[str]) -> Path:
    """Draw a phase reproduction's theory and trained grids side by side (with the closed-form
    boundary for n=2, m=1) into `path`."""
    d = result.diagram
    if d is None:
        raise ValueError(
            f"draw_phase needs a result with its theory diagram; {result.name!r} has none"
        )
    boundary = None
    if (d.n_features, d.n_hidden) == (2, 1):
        rr = np.geomspace(d.relative_importance.min(), d.relative_importance.max(), 200)
        boundary = (rr, theory.phase_boundary_2_1(rr))
    return toy_figures.plot_phase_diagram(
        d.relative_importance,
        d.density,
        d.labels,
        result.empirical,
        d.near_boundary,
        theory.PHASES,
        path,
        title=f"n={d.n_features} features, m={d.n_hidden} hidden",
        boundary=boundary,
    )


def experiment_section(result: ex.ExperimentResult, figures: Sequence[str]) -> Section:
    """The page section of one reproduction: explanation, figures, checks and numbers."""
    key = "phase" if result.name.startswith("phase-") else result.name
    text = _TEXT.get(key, "")
    text += f"\n\nTraining time: {result.seconds:.1f} s."
    return Section(
        title=result.title,
        text=text,
        figures=tuple(figures),
        numbers=result.numbers,
        checks=result.checks,
    )


def write_toy_report(
    results: Sequence[ex.ExperimentResult],
    folder: str | os.PathLike[str],
    *,
    title: str = "Toy models of superposition: reproduction",
    intro: str = "",
    embed: bool = False,
) -> Path:
    """Draw every result's figures into `folder` and write `folder/index.html`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sections = [experiment_section(r, draw_experiment(r, folder)) for r in results]
    return write_page(folder / "index.html", title, sections, intro=intro, embed=embed)
