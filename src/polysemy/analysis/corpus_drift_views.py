"""A cross-corpus drift folder read back into what its plots show (the report and the explorer).

`corpus_drift` (analysis/corpus_drift.py) writes an analysis folder of kind "drift" with
`summary.across == "corpora"`, `corpus_drift.safetensors` (per neuron: the score, its
bootstrap interval, its null threshold, its dominant and top voices on each corpus, the SAE
error's share on each) and the half-split null scores. `read_corpus_drift(folder)` reads them
into a `CorpusDriftView`; `corpus_neuron(view, j)` is neuron j's page (its voices on A and on B
side by side, the error line as its own voice); `corpus_histogram(view)` the per-neuron score
against the null's on shared bins. Nothing is recomputed beyond sorting and binning.

>>> view = read_corpus_drift("runs/corpora-drift")          # doctest: +SKIP
>>> corpus_neuron(view, view.picks["different"][0])["a"]    # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CorpusDriftView",
    "corpus_histogram",
    "corpus_neuron",
    "is_corpus_drift",
    "read_corpus_drift",
]

FILE = "corpus_drift.safetensors"
_BINS = 30


@dataclass(frozen=True)
class CorpusDriftView:
    """One cross-corpus drift folder: per-neuron arrays and the recorded summary."""

    folder: Path
    corpus_a: str
    corpus_b: str
    summary: dict[str, Any]
    inputs: dict[str, Any]
    picks: dict[str, list[int]]
    """`different`: the active neurons with the highest score; `stable`: the lowest."""
    arrays: dict[str, np.ndarray] = field(repr=False)

    @property
    def n_neurons(self) -> int:
        return int(self.arrays["score"].shape[0])


def is_corpus_drift(folder: str | os.PathLike[str], record: dict[str, Any] | None = None) -> bool:
    """True when `folder` is a drift folder written by `corpus_drift` (across corpora)."""
    path = Path(folder)
    if record is None:
        p = path / "analysis.json"
        record = json.loads(p.read_text()) if p.is_file() else {}
    summary = record.get("summary") or {}
    return record.get("kind") == "drift" and (
        summary.get("across") == "corpora" or (path / FILE).is_file()
    )


def read_corpus_drift(folder: str | os.PathLike[str], *, picks: int = 5) -> CorpusDriftView:
    """The cross-corpus drift folder `folder` as a `CorpusDriftView` with `picks` neurons named
    each way. ValueError when it is not one (FileNotFoundError when its arrays are missing)."""
    from safetensors.numpy import load_file

    path = Path(folder)
    p = path / "analysis.json"
    record = json.loads(p.read_text()) if p.is_file() else None
    if not isinstance(record, dict) or not is_corpus_drift(path, record):
        raise ValueError(f"folder must be a cross-corpus drift folder; got {str(folder)!r}")
    if not (path / FILE).is_file():
        raise FileNotFoundError(f"{FILE} is missing from {str(path)!r}")
    arrays = load_file(str(path / FILE))
    summary = record.get("summary") or {}
    inputs = record.get("inputs") or {}
    score = arrays["score"].astype(np.float64)
    active = arrays["active"].astype(bool)
    order = [int(j) for j in np.argsort(-score, kind="stable") if active[j]]
    return CorpusDriftView(
        folder=path,
        corpus_a=str(summary.get("corpus_a") or inputs.get("corpus_a") or "A"),
        corpus_b=str(summary.get("corpus_b") or inputs.get("corpus_b") or "B"),
        summary=summary,
        inputs=inputs,
        picks={"different": order[:picks], "stable": order[::-1][:picks]},
        arrays=arrays,
    )


def _voices(features: np.ndarray, shares: np.ndarray, error: float) -> list[dict[str, Any]]:
    kept = [(int(f), float(s)) for f, s in zip(features.tolist(), shares.tolist(), strict=True)]
    out: list[dict[str, Any]] = [
        {"feature": f, "name": f"feature {f}", "share": s} for f, s in kept if s > 0
    ]
    shown = sum(s for _, s in kept if s > 0)
    out.append({"feature": None, "name": "SAE error", "share": float(error)})
    out.append({"feature": None, "name": "other features", "share": max(0.0, 1.0 - shown - error)})
    return out


def corpus_neuron(view: CorpusDriftView, neuron: int) -> dict[str, Any]:
    """Neuron `neuron`'s page: `a`/`b` voices `[{"feature", "name", "share"}]` (its top
    features, then the SAE error and the other features, summing to 1), its score with
    interval, its null threshold, whether it sings different voices, and its dominant feature
    on each corpus (None: no feature share there)."""
    t = view.arrays
    if not 0 <= neuron < view.n_neurons:
        raise ValueError(f"neuron must be in [0, {view.n_neurons - 1}]; got {neuron}")

    def dom(key: str) -> int | None:
        d = int(t[key][neuron])
        return d if d >= 0 else None

    return {
        "neuron": neuron,
        "active": bool(t["active"][neuron]),
        "score": float(t["score"][neuron]),
        "ci": [float(t["score_low"][neuron]), float(t["score_high"][neuron])],
        "feature_score": float(t["feature_score"][neuron]),
        "null_threshold": float(t["threshold"][neuron]),
        "different": bool(t["different"][neuron]),
        "dominant_a": dom("dominant_a"),
        "dominant_b": dom("dominant_b"),
        "a": _voices(t["top_a"][neuron], t["top_a_shares"][neuron], float(t["error_a"][neuron])),
        "b": _voices(t["top_b"][neuron], t["top_b_shares"][neuron], float(t["error_b"][neuron])),
    }


def corpus_histogram(view: CorpusDriftView) -> dict[str, Any]:
    """The active neurons' scores and the null's (every split's scaled score, counted per
    split so both histograms are in neurons) on shared bins."""
    active = view.arrays["active"].astype(bool)
    own = view.arrays["score"].astype(np.float64)[active]
    null = view.arrays["null_score"].astype(np.float64)[:, active]  # (splits, n_active)
    hi = float(max(own.max(initial=0.0), null.max(initial=0.0), 1e-6))
    edges = np.linspace(0.0, hi * 1.0001, _BINS + 1)
    splits = max(int(null.shape[0]), 1)
    return {
        "edges": edges.tolist(),
        "counts": np.histogram(own, edges)[0].tolist(),
        "null_counts": (np.histogram(null.reshape(-1), edges)[0] / splits).tolist(),
        "n": int(own.size),
        "splits": int(null.shape[0]),
    }
