"""A drift analysis folder read back into what its plots show (the report and the explorer).

`read_drift(folder)` reads what `toy_drift` or `organism_drift` wrote (`analysis.json` of kind
"drift", `drift.safetensors`, and for the organism `genealogy.json` and `training.json`) into
one shape, whatever produced it: neurons as a flat list (the organism's MLP neurons, or the toy
model's `instance i, neuron k`), per consecutive snapshot pair their meaning-switch score and
its null, and the data of three plots:

- `neuron_voices(view, j)`: neuron j's chorus at every snapshot as stacked layers. Toy: one
  layer per true feature. Organism: one layer per feature *lineage* (a feature at t continues
  its best-correlated feature at s, drift.safetensors `lineage`), summed over the neuron's 8
  strongest features per snapshot; what those 8 leave (other features and the SAE's error)
  is the `rest` layer.
- `genealogy_counts(view)`: births, deaths, splits and merges per pair beside the SAE-seed
  null's (organism only: the toy's features are the truth, nothing is born).
- `loss_curve(view)`: the organism's training loss, its held-out loss at each snapshot (with
  its interval) and the unigram/bigram baselines.

Nothing is recomputed here beyond sums, means and quantiles of what the analysis saved.

>>> view = read_drift("runs/organism-drift")              # doctest: +SKIP
>>> neuron_voices(view, view.picks["switching"][0])       # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DriftView",
    "genealogy_counts",
    "loss_curve",
    "neuron_voices",
    "null_band",
    "read_drift",
]

VOICES = 6
"""Layers drawn per neuron: its strongest voices over all snapshots (the rest is summed)."""


@dataclass(frozen=True)
class DriftView:
    """One drift folder, flattened to neurons x consecutive snapshot pairs."""

    folder: Path
    source: str
    """"organism" or "toy"."""
    steps: list[int]
    labels: list[str]
    """One name per neuron (`neuron 12`, or `instance 0, neuron 3` for a toy)."""
    score: np.ndarray
    """[n_pairs, n_neurons] meaning-switch score (organism) or 1 - cos of shares (toy)."""
    null_score: np.ndarray
    """[n_pairs, n_neurons] the same score under the null at the pair's later snapshot (toy:
    the two seeds' matched neurons)."""
    switch: np.ndarray
    """[n_pairs, n_neurons] bool: the dominant feature changed."""
    correlation: np.ndarray
    """[n_pairs, n_neurons] activation correlation between the pair's snapshots (NaN: constant)."""
    alive: np.ndarray
    """[n_neurons] bool: the neuron has voices at every snapshot."""
    summary: dict[str, Any]
    inputs: dict[str, Any]
    picks: dict[str, list[int]]
    """`switching`: the neurons with the highest mean score (alive ones); `stable`: the lowest."""
    voices: dict[str, np.ndarray] = field(repr=False)
    """The arrays `neuron_voices` reads (toy: `shares`; organism: `top_features`,
    `top_shares`, `lineage`)."""
    genealogy: list[dict[str, Any]] | None = None
    training: dict[str, Any] | None = None


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def read_drift(folder: str | os.PathLike[str], *, picks: int = 5) -> DriftView:
    """The drift folder `folder` as a `DriftView`; `picks` switching neurons are named.
    ValueError when it is not a drift analysis folder."""
    from safetensors.numpy import load_file

    path = Path(folder)
    record = _load_json(path / "analysis.json")
    if not isinstance(record, dict) or record.get("kind") != "drift":
        raise ValueError(f"folder must be a drift analysis folder; got {str(folder)!r}")
    t = load_file(str(path / "drift.safetensors"))
    inputs = record.get("inputs", {}) or {}
    summary = record.get("summary", {}) or {}
    steps = [int(s) for s in t["steps"].tolist()]
    if "shares" in t:  # toy: [S, I, m, f] shares, [P, I, m] drift, [S, I, m] null
        shares = t["shares"].astype(np.float64)
        n_s, n_i, m, _ = shares.shape
        labels = [f"instance {i}, neuron {k}" for i in range(n_i) for k in range(m)]
        flat = (-1, n_i * m)
        score = t["drift"].reshape(flat).astype(np.float64)
        null = t["null_drift"][1:].reshape(flat).astype(np.float64)
        switch = t["switch"].reshape(flat).astype(bool)
        corr = t["correlation"].reshape(flat).astype(np.float64)
        alive = (shares.sum(-1) > 0).all(0).reshape(-1)
        voices = {"shares": shares.reshape(n_s, n_i * m, -1)}
        source = "toy"
    else:
        score = t["score"].astype(np.float64)
        null = t["null_score"].astype(np.float64)
        switch = t["switch"].astype(bool)
        corr = t["correlation"].astype(np.float64)
        labels = [f"neuron {j}" for j in range(score.shape[1])]
        alive = (t["top_shares"].sum(-1) > 0).all(0)
        voices = {k: t[k] for k in ("top_features", "top_shares", "lineage") if k in t}
        source = "organism"
    mean = score.mean(0)  # (n_neurons,)
    order = [int(j) for j in np.argsort(-mean, kind="stable") if alive[j]]
    chosen = {
        "switching": order[:picks],
        "stable": order[::-1][:1] if len(order) > picks else [],
    }
    return DriftView(
        folder=path,
        source=source,
        steps=steps,
        labels=labels,
        score=score,
        null_score=null,
        switch=switch,
        correlation=corr,
        alive=alive,
        summary=summary,
        inputs=inputs,
        picks=chosen,
        voices=voices,
        genealogy=_load_json(path / "genealogy.json"),
        training=_load_json(path / "training.json"),
    )


def neuron_voices(view: DriftView, neuron: int, *, top: int = VOICES) -> dict[str, Any]:
    """Neuron `neuron`'s voices at every snapshot as stacked layers: `{"steps", "layers":
    [{"name", "shares": [S]}], "rest": [S], "rest_name"}`, the `top` layers with the largest
    share at any snapshot first (module docstring)."""
    if not 0 <= neuron < len(view.labels):
        raise ValueError(f"neuron must be in [0, {len(view.labels) - 1}]; got {neuron}")
    n_s = len(view.steps)
    layer: dict[str, np.ndarray] = {}
    if view.source == "toy":
        shares = view.voices["shares"][:, neuron]  # (S, n_features)
        for f in range(shares.shape[1]):
            layer[f"feature {f}"] = shares[:, f]
        rest_name = "no other voice (toy shares sum to 1)"
    else:
        feats = view.voices["top_features"][:, neuron]  # (S, 8)
        shares = view.voices["top_shares"][:, neuron].astype(np.float64)  # (S, 8)
        lineage = view.voices.get("lineage")
        for s in range(n_s):
            for f, v in zip(feats[s].tolist(), shares[s].tolist(), strict=True):
                if v <= 0:
                    continue
                lid = int(lineage[s, f]) if lineage is not None else None
                name = (
                    f"lineage {lid}" if lid is not None else f"feature {f} at step {view.steps[s]}"
                )
                layer.setdefault(name, np.zeros(n_s))[s] += v
        rest_name = "other features and SAE error"
    ranked = sorted(layer, key=lambda k: -float(layer[k].max()))
    shown = [k for k in ranked[:top] if layer[k].max() > 0]
    total = np.clip(sum((layer[k] for k in layer), np.zeros(n_s)), 0.0, 1.0)
    kept = sum((layer[k] for k in shown), np.zeros(n_s))
    return {
        "steps": view.steps,
        "layers": [{"name": k, "shares": layer[k].tolist()} for k in shown],
        "others": (total - kept).clip(0.0).tolist(),
        "rest": (1.0 - total).clip(0.0).tolist() if view.source != "toy" else [0.0] * n_s,
        "rest_name": rest_name,
        "score": view.score[:, neuron].tolist(),
        "null_score": view.null_score[:, neuron].tolist(),
        "correlation": [
            None if not np.isfinite(c) else float(c) for c in view.correlation[:, neuron]
        ],
        "switch": view.switch[:, neuron].tolist(),
    }


def null_band(view: DriftView, level: float = 0.95) -> dict[str, list[float]]:
    """Per pair, the central `level` range of the null score over neurons and its median."""
    q = (1.0 - level) / 2
    return {
        "low": np.quantile(view.null_score, q, axis=1).tolist(),
        "median": np.median(view.null_score, axis=1).tolist(),
        "high": np.quantile(view.null_score, 1.0 - q, axis=1).tolist(),
        "level": level,  # type: ignore[dict-item]
        "n": view.null_score.shape[1],  # type: ignore[dict-item]
    }


def genealogy_counts(view: DriftView) -> dict[str, Any] | None:
    """Per pair `{"pairs": ["s→t", ...], kind: [counts], "null_" + kind: [counts]}` for kind in
    born, died, split, merged; None for a toy drift (no genealogy)."""
    pairs = view.summary.get("pairs") or []
    if not pairs or "features" not in pairs[0]:
        return None
    out: dict[str, Any] = {"pairs": [f"{p['from_step']}→{p['to_step']}" for p in pairs]}
    for kind in ("born", "died", "split", "merged"):
        out[kind] = [int(p["features"].get(kind, 0)) for p in pairs]
        out["null_" + kind] = [int(p.get("null_features", {}).get(kind, 0)) for p in pairs]
    out["alive_to"] = [p["features"].get("alive_to") for p in pairs]
    out["threshold"] = view.summary.get("features", {}).get("threshold")
    out["d_sae"] = view.summary.get("d_sae")
    return out


def loss_curve(view: DriftView) -> dict[str, Any] | None:
    """The organism's loss curve with its snapshots (training.json); None when absent."""
    return view.training
