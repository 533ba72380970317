"""Turn toy reproductions (`polysemy.toy.experiments`) into PNG figures and one HTML page.

>>> results = [experiments.pentagon(fast=True)]                 # doctest: +SKIP
>>> write_toy_report(results, "runs/paper")                     # doctest: +SKIP

`polysemy.toy.runs` writes the data of a run folder and takes `render` (here `draw_phase_figure`
for a phase grid, `write_toy_report` with its page options for reproductions) to draw into it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polysemy.report import toy_figures
from polysemy.report.html import Section, write_page
from polysemy.toy import experiments as ex
from polysemy.toy import metrics, theory

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
        "A feature counts as computed when, with only x_i active, the output explains at "
        "least half of the variance of |x_i| on each sign. Dense, each neuron serves one "
        "feature. At density <= 0.01 every level is trained twice, from a random start and "
        "from a hand-built superposed one, and the lower loss is kept: the superposed start "
        "wins there by 4x to 1000x. Those low-loss models compute 30-45 features but keep a "
        "minority of their neurons monosemantic, and only at density 0.001 compute more "
        "features than there are neurons. The paper's 'no neuron monosemantic' described "
        "the badly converged from-scratch runs; this departure is discussed in docs/toy.md."
    ),
    "correlation": (
        "W^T W for four features in two dimensions, in pairs (0, 1) and (2, 3). Independent "
        "features settle into antipodal pairs; correlated pairs (both on or both off) avoid "
        "interfering with each other and settle orthogonal; anti-correlated pairs (never both "
        "on) interfere for free and settle antipodal."
    ),
}


DEFAULT_INTRO = (
    "Reproductions of Elhage et al. 2022, 'Toy Models of Superposition'. Every number below "
    "was measured on the trained models in this folder (runs/); each check compares it with "
    "its acceptance bar (docs/toy.md)."
)
"""The page's introduction when the caller gives none."""


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
            toy_figures.plot_superposition_sweep(
                run.W,
                metrics.superposition(run.W.double()),
                _labels("S=", run.config.sparsity),
                save(f"sparsity_sweep_{tag}.png"),
                title=f"{tag} model, n=20, m=5, I_i = 0.7^i",
            )
    elif isinstance(result, ex.PentagonResult):
        toy_figures.plot_feature_directions(
            result.run.W,
            _labels("p=", result.run.config.density),
            save("pentagon.png"),
            title="n=5, m=2, I_i = 0.9^i",
        )
    elif isinstance(result, ex.GeometryResult):
        W = result.run.W.double()
        toy_figures.plot_dimensionality(
            result.inv_density,
            np.asarray(result.dims_per_feature_star),
            metrics.feature_dimensionality(W),
            metrics.feature_norms(W),
            save("geometry.png"),
            title="n=200, m=20, uniform importance",
        )
    elif isinstance(result, ex.PhaseResult):
        d = result.diagram
        draw_phase(result, save(f"phase_{d.n_features}_{d.n_hidden}.png"))
    elif isinstance(result, ex.PrivilegedBasisResult):
        toy_figures.plot_neuron_loadings(
            result.run.W,
            _labels("density ", result.run.config.density),
            save("privileged_basis.png"),
            title="ReLU-hidden: per-neuron feature loadings (rows: neurons, columns: features)",
        )
    elif isinstance(result, ex.ComputationResult):
        toy_figures.plot_neuron_loadings(
            result.kept_W(),
            [
                f"density {p:.3g}" + (" (superposed start)" if start == "superposed" else "")
                for p, start in zip(result.density, result.start, strict=True)
            ],
            save("computation.png"),
            title="abs model: first-layer loadings (rows: 40 neurons, columns: 100 features)",
        )
    elif isinstance(result, ex.CorrelationResult):
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


def draw_phase_figure(results: Sequence[ex.ExperimentResult], folder: Path) -> None:
    """`render` for `polysemy.toy.runs.phase`: the phase grid's figure as `phase.png`."""
    for result in results:
        if isinstance(result, ex.PhaseResult):
            draw_phase(result, folder / "phase.png")


def experiment_section(result: ex.ExperimentResult, figures: Sequence[str]) -> Section:
    """The page section of one reproduction: explanation, figures, checks and numbers."""
    key = "phase" if result.name.startswith("phase-") else result.name
    text = _TEXT.get(key, "")
    text += f"\n\nTraining time: {result.seconds:.1f} s."
    return Section(
        title=result.title,
        text=text,
        figures=tuple(figures),
        numbers=result.numbers(),
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
    intro = intro or DEFAULT_INTRO
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sections = [experiment_section(r, draw_experiment(r, folder)) for r in results]
    return write_page(folder / "index.html", title, sections, intro=intro, embed=embed)
