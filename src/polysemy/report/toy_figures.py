"""Figures for toy models of superposition (Elhage et al. 2022), drawn from arrays.

Each function takes plain arrays (numpy or torch, converted to float64 numpy), draws with
matplotlib's object API (no pyplot state, Agg renderer) and saves one PNG to `path`.
Neurons are drawn as what they are: a row of loadings on every feature, a mix, not a label.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "plot_correlation",
    "plot_dimensionality",
    "plot_feature_directions",
    "plot_neuron_loadings",
    "plot_phase_diagram",
    "plot_superposition_sweep",
]

# Reference feature dimensionalities drawn as dashed lines (section "Feature Geometry").
_REFERENCE_FRACTIONS = {
    "1": 1.0,
    "3/4": 0.75,
    "2/3": 2 / 3,
    "1/2": 0.5,
    "2/5": 0.4,
    "3/8": 0.375,
}
_DPI = 110


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    return path


def plot_superposition_sweep(
    W: Any,
    superposition: Any,
    labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """For each instance: W^T W (top) and the feature norms ||W_i|| coloured by the feature's
    superposition sum_{j != i} (W_i_hat . W_j)^2 (bottom; dark = orthogonal to all others,
    yellow = shares its direction). W: [n_instances, n_hidden, n_features]."""
    W = _np(W)
    sup = _np(superposition)
    n_inst, _, n_feat = W.shape
    fig = Figure(figsize=(2.1 * n_inst + 0.8, 5.6), layout="constrained")
    axes = fig.subplots(2, n_inst, squeeze=False, height_ratios=[1, 1.15])
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    im = None
    for k in range(n_inst):
        gram = W[k].T @ W[k]  # (n_features, n_features)
        ax = axes[0, k]
        im = ax.imshow(gram, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(labels[k], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax = axes[1, k]
        norms = np.linalg.norm(W[k], axis=0)
        colours = cmap(np.clip(sup[k], 0, 1))
        ax.barh(np.arange(n_feat), norms, color=colours, edgecolor="#444", linewidth=0.3)
        ax.set_ylim(n_feat - 0.5, -0.5)
        ax.set_xlim(0, max(1.2, float(norms.max()) * 1.05))
        ax.set_xlabel("||W_i||", fontsize=8)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.set_ylabel("feature (importance decreasing)", fontsize=8)
            axes[0, 0].set_ylabel("W^T W", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.8, label="W^T W")
    sm = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, 1))
    fig.colorbar(sm, ax=axes[1, :].tolist(), shrink=0.8, label="superposition")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_feature_directions(
    W: Any,
    labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Each feature's direction W_i in a 2-D hidden space, one panel per instance.
    W: [n_instances, 2, n_features]; colour = feature index (importance order)."""
    W = _np(W)
    n_inst, n_hidden, n_feat = W.shape
    if n_hidden != 2:
        raise ValueError(f"plot_feature_directions needs n_hidden = 2; got {n_hidden}")
    import matplotlib

    cmap = matplotlib.colormaps["plasma"]
    fig = Figure(figsize=(1.9 * n_inst, 2.3), layout="constrained")
    axes = fig.subplots(1, n_inst, squeeze=False)[0]
    lim = max(1.2, float(np.abs(W).max()) * 1.1)
    for k, ax in enumerate(axes):
        for i in range(n_feat):
            c = cmap(i / max(n_feat - 1, 1) * 0.85)
            ax.plot([0, W[k, 0, i]], [0, W[k, 1, i]], color=c, lw=1.8)
            ax.plot(W[k, 0, i], W[k, 1, i], "o", color=c, ms=3.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(labels[k], fontsize=8)
    if title:
        fig.suptitle(title + "  (colour: feature 0 dark -> last light)", fontsize=9)
    return _save(fig, path)


def plot_dimensionality(
    inv_density: Any,
    dims_per_feature_star: Any,
    feature_dimensionality: Any,
    feature_norms: Any,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    norm_threshold: float = 0.5,
) -> Path:
    """Left: D* = n_hidden / ||W||_F^2 against 1/(1-S). Right: every represented feature's
    D_i at each level (jittered), with the reference fractions of the uniform polytopes."""
    x = _np(inv_density)
    dstar = _np(dims_per_feature_star)
    D = _np(feature_dimensionality)
    norms = _np(feature_norms)
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for ax in (ax1, ax2):
        for name, v in _REFERENCE_FRACTIONS.items():
            ax.axhline(v, color="#999", ls="--", lw=0.7)
            ax.text(x.max() * 1.04, v, name, fontsize=8, va="center", color="#555")
        ax.set_xscale("log")
        ax.set_xlabel("1 / (1 - S)  (inverse feature density)")
    ax1.plot(x, dstar, "o-", color="#1f4e9c")
    ax1.set_ylabel("dimensions per feature D* = m / ||W||_F^2")
    ax1.set_ylim(0, 1.1)
    rng = np.random.default_rng(0)
    for k in range(x.size):
        keep = norms[k] >= norm_threshold
        jitter = np.exp(rng.normal(0, 0.02, int(keep.sum())))
        ax2.scatter(x[k] * jitter, D[k][keep], s=4, alpha=0.35, color="#b5452a")
    ax2.set_ylabel(f"D_i of features with ||W_i|| >= {norm_threshold}")
    ax2.set_ylim(0, 1.1)
    from matplotlib.ticker import NullFormatter

    for ax in (ax1, ax2):
        ax.xaxis.set_minor_formatter(NullFormatter())
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_phase_diagram(
    relative_importance: Any,
    density: Any,
    theory_labels: Any,
    empirical_labels: Any,
    near_boundary: Any,
    phases: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    boundary: tuple[Any, Any] | None = None,
) -> Path:
    """Theory and trained-model phase grids side by side over (relative importance r,
    density p), both log scale. Cells near the theory boundary are hatched; cells away from
    it where the two disagree are crossed. `boundary`: optional (r, p*) curve to overlay."""
    import matplotlib
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    r = _np(relative_importance)
    p = _np(density)
    theory = np.asarray(theory_labels)
    emp = np.asarray(empirical_labels)
    near = np.asarray(near_boundary, dtype=bool)
    colours = ["#f2f2f2", "#4c72b0", "#dd5132"][: len(phases)]
    cmap = ListedColormap(colours)

    def edges(v: np.ndarray) -> np.ndarray:
        lv = np.log(v)
        mid = (lv[1:] + lv[:-1]) / 2
        step = lv[1] - lv[0] if v.size > 1 else 1.0
        return np.exp(np.concatenate([[lv[0] - step / 2], mid, [lv[-1] + step / 2]]))

    re, pe = edges(r), edges(p)
    fig = Figure(figsize=(10.5, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, grid, name in ((axes[0], theory, "theory"), (axes[1], emp, "trained (best of seeds)")):
        ax.pcolormesh(re, pe, grid, cmap=cmap, vmin=-0.5, vmax=len(phases) - 0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("relative importance r of the extra feature")
        ax.set_ylabel("feature density p = 1 - S")
        ax.set_title(name, fontsize=10)
        for i, j in zip(*np.nonzero(near), strict=True):
            ax.add_patch(
                matplotlib.patches.Rectangle(
                    (re[j], pe[i]),
                    re[j + 1] - re[j],
                    pe[i + 1] - pe[i],
                    fill=False,
                    hatch="///",
                    lw=0,
                    edgecolor="#00000055",
                )
            )
        if boundary is not None:
            ax.plot(_np(boundary[0]), _np(boundary[1]), "k-", lw=1.2)
    bad = (theory != emp) & ~near
    for i, j in zip(*np.nonzero(bad), strict=True):
        axes[1].plot(r[j], p[i], "kx", ms=6)
    handles = [Patch(color=c, label=n) for c, n in zip(colours, phases, strict=True)]
    handles.append(Patch(facecolor="white", hatch="///", edgecolor="#555", label="near boundary"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_neuron_loadings(
    W: Any,
    labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    max_features: int | None = None,
) -> Path:
    """Per-neuron feature loadings: one heatmap per instance, a row per neuron, a column per
    feature. A monosemantic neuron is a row with one strong entry; a polysemantic neuron is a
    row with several. W: [n_instances, n_hidden, n_features]."""
    W = _np(W)
    if max_features is not None:
        W = W[..., :max_features]
    n_inst, n_hidden, n_feat = W.shape
    width = min(2.0 + 0.18 * n_feat, 9.0)
    height = min(0.9 + 0.22 * n_hidden, 4.5)
    cols = min(n_inst, max(2, int(16 // width)))
    rows = -(-n_inst // cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    lim = max(float(np.abs(W).max()), 1e-9)  # one colour scale for every panel
    im = None
    for k, ax in enumerate(axes):
        if k >= n_inst:
            ax.axis("off")
            continue
        im = ax.imshow(W[k], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_title(labels[k], fontsize=8)
        ax.set_xlabel("feature", fontsize=7)
        ax.set_ylabel("neuron", fontsize=7)
        ax.tick_params(labelsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes.tolist(), shrink=0.7, label="loading W[neuron, feature]")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_correlation(
    gram: Sequence[Any],
    labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """W^T W for models trained on independent, correlated and anti-correlated features."""
    fig = Figure(figsize=(3.0 * len(gram) + 0.8, 3.2), layout="constrained")
    axes = fig.subplots(1, len(gram), squeeze=False)[0]
    im = None
    for ax, g, lab in zip(axes, gram, labels, strict=True):
        im = ax.imshow(_np(g), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("feature", fontsize=8)
        ax.tick_params(labelsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes.tolist(), shrink=0.8, label="W^T W")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
