"""Charts drawn twice from one spec: interactive (plotly, in the browser) and PNG (matplotlib).

A `Chart` holds plotly traces restricted to what both renderers draw the same way: `bar`
traces (pre-binned histograms included, with optional `error_y` arrays) and `scatter` traces
(lines and/or markers, optional `error_y` arrays, dashed lines, and stacked areas through
plotly's `stackgroup`). The page ships the spec as data for plotly.js; `draw_png` renders
the same spec with matplotlib's object API as the fallback image (and for report.md).
Every chart carries a caption that states its sample size and its interval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Chart", "bars", "draw_png", "histogram"]

_DPI = 100
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


@dataclass(frozen=True)
class Chart:
    """One figure: plotly traces and layout, and the caption that states n and interval."""

    id: str
    """File stem of the PNG and id of the plot's element (letters, digits, `-`)."""
    title: str
    caption: str
    """What is drawn, its sample size and its interval (shown under the figure)."""
    traces: Sequence[dict[str, Any]]
    """plotly traces: `bar` or `scatter` only (see module docstring)."""
    xlabel: str = ""
    ylabel: str = ""
    log_x: bool = False
    extra_layout: dict[str, Any] = field(default_factory=dict)

    @property
    def png(self) -> str:
        """The PNG's path relative to the report folder."""
        return f"figures/{self.id}.png"

    def plotly(self) -> dict[str, Any]:
        """`{"data", "layout"}` for `Plotly.newPlot`."""
        layout = {
            "title": {"text": self.title, "font": {"size": 14}},
            "xaxis": {"title": {"text": self.xlabel}, "type": "log" if self.log_x else "-"},
            "yaxis": {"title": {"text": self.ylabel}},
            "barmode": "overlay",
            "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
            "height": 340,
            "legend": {"orientation": "h", "y": -0.25},
            **self.extra_layout,
        }
        return {"data": [dict(t) for t in self.traces], "layout": layout}


def histogram(
    values: Any,
    *,
    name: str,
    bins: np.ndarray | int = 30,
    color: str | None = None,
) -> dict[str, Any]:
    """A pre-binned histogram as a `bar` trace (bin centres and counts), so plotly and
    matplotlib draw identical bars."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    counts, edges = np.histogram(v, bins=bins)
    return {
        "type": "bar",
        "name": name,
        "x": ((edges[:-1] + edges[1:]) / 2).tolist(),
        "y": counts.tolist(),
        "width": np.diff(edges).tolist(),
        "opacity": 0.6,
        **({"marker": {"color": color}} if color else {}),
    }


def bars(
    labels: Sequence[str],
    estimates: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    *,
    name: str,
    color: str | None = None,
) -> dict[str, Any]:
    """A bar per label with its interval as asymmetric error bars (a missing bound: 0)."""
    est = [float(e) for e in estimates]
    plus = [0.0 if h is None else max(float(h) - e, 0.0) for e, h in zip(est, highs, strict=True)]
    minus = [
        0.0 if lo is None else max(e - float(lo), 0.0) for e, lo in zip(est, lows, strict=True)
    ]
    return {
        "type": "bar",
        "name": name,
        "x": list(labels),
        "y": est,
        "error_y": {"type": "data", "array": plus, "arrayminus": minus, "visible": True},
        **({"marker": {"color": color}} if color else {}),
    }


def draw_png(chart: Chart, path: str | os.PathLike[str]) -> Path:
    """Render `chart` with matplotlib (Agg, no pyplot state) to `path`."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = fig.subplots()
    categorical = [t for t in chart.traces if t["type"] == "bar" and _is_text(t["x"])]
    n_cat = max(len(categorical), 1)
    stacks: dict[str, np.ndarray] = {}
    for i, trace in enumerate(chart.traces):
        color = trace.get("marker", {}).get("color") or _COLORS[i % len(_COLORS)]
        x, y = trace["x"], np.asarray(trace["y"], dtype=np.float64)
        if trace["type"] == "bar":
            err = trace.get("error_y")
            yerr = np.vstack([err.get("arrayminus", err["array"]), err["array"]]) if err else None
            if _is_text(x):
                j = categorical.index(trace)
                width = 0.8 / n_cat
                pos = np.arange(len(x)) + (j - (n_cat - 1) / 2) * width
                ax.bar(pos, y, width, yerr=yerr, color=color, label=trace.get("name"), capsize=3,
                       alpha=trace.get("opacity", 1.0))  # fmt: skip
                ax.set_xticks(np.arange(len(x)), [str(s) for s in x], rotation=30, ha="right")
            else:
                ax.bar(np.asarray(x, dtype=np.float64), y, trace.get("width", 0.8),
                       yerr=yerr, color=color, alpha=trace.get("opacity", 1.0),
                       label=trace.get("name"))  # fmt: skip
        elif trace.get("stackgroup"):  # a stacked area (plotly's `stackgroup`)
            base = stacks.get(trace["stackgroup"], np.zeros(len(y)))
            pos = np.arange(len(x), dtype=np.float64) if _is_text(x) else np.asarray(x, np.float64)
            ax.fill_between(pos, base, base + y, color=color, alpha=0.85, label=trace.get("name"),
                            linewidth=0)  # fmt: skip
            if _is_text(x):
                ax.set_xticks(pos, [str(s) for s in x])
            stacks[trace["stackgroup"]] = base + y
        else:
            mode = trace.get("mode", "lines")
            err = trace.get("error_y")
            if err:
                yerr = np.vstack([err.get("arrayminus", err["array"]), err["array"]])
                ax.errorbar(x, y, yerr=yerr, fmt="none", color=color, capsize=3)
            dashed = "lines" in mode and trace.get("line", {}).get("dash")
            ax.plot(
                x, y, linestyle=("--" if dashed else "-") if "lines" in mode else "none",
                marker="o" if "markers" in mode else None, color=color, label=trace.get("name"),
            )  # fmt: skip
    if chart.log_x:
        ax.set_xscale("log")
    ax.set_title(chart.title, fontsize=10)
    ax.set_xlabel(chart.xlabel)
    ax.set_ylabel(chart.ylabel)
    if any(t.get("name") for t in chart.traces):
        # a fixed corner: "best" searches every point and is slow on large scatters
        ax.legend(fontsize=8, loc="upper right")
    fig.savefig(path, dpi=_DPI)
    return path


def _is_text(x: Sequence[Any]) -> bool:
    return bool(x) and isinstance(x[0], str)
