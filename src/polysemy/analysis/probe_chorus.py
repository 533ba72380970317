"""Chorus neurons: flag a probe that leans on a neuron carrying many features.

A neurons analysis folder's `neurons.json` lists, per neuron, `{"neuron",
"effective_features", "features": [[feature, share], ...]}` (DESIGN section 4): the features
whose decoder directions load on the neuron and each one's share. A probe that reads such a
neuron reads every one of those voices at once; `chorus_flags` names them, beside the probe.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polysemy.validation import ParameterError


@dataclass(frozen=True)
class ChorusFlag:
    """A neuron a probe leans on that carries several features."""

    kind: str
    """The probe kind."""
    neuron: int
    weight_share: float
    """Share of the probe's |standardised weight| on this neuron."""
    effective_features: float
    voices: tuple[tuple[int, float], ...]
    """The neuron's other features (feature, share), largest first."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "neuron": self.neuron, "weight_share": self.weight_share,
                "effective_features": self.effective_features,
                "voices": [list(v) for v in self.voices]}  # fmt: skip


def read_neurons(path: str | os.PathLike[str]) -> dict[int, tuple[float, list[tuple[int, float]]]]:
    """`neuron -> (effective_features, [(feature, share), ...])` from a neurons analysis
    folder's `neurons.json` (or that file): a list of `{"neuron", "effective_features",
    "features": [[feature, share], ...]}` (also accepted under a `"neurons"` key)."""
    p = Path(path)
    file = p / "neurons.json" if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(f"neurons {str(path)!r} has no neurons.json")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ParameterError(
            "neurons", "a folder whose neurons.json is JSON", f"{file}: {exc}"
        ) from None
    records = data.get("neurons") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise ParameterError(
            "neurons", "a neurons.json holding a list of neurons", type(records).__name__
        )
    out: dict[int, tuple[float, list[tuple[int, float]]]] = {}
    for i, r in enumerate(records):
        try:
            voices = [(int(f), float(s)) for f, s in r["features"]]
            out[int(r["neuron"])] = (float(r["effective_features"]), voices)
        except (KeyError, TypeError, ValueError):
            raise ParameterError(
                "neurons",
                'records {"neuron", "effective_features", "features": [[feature, share], ...]}',
                f"record {i} of {file}",
            ) from None
    return out


def chorus_flags(
    kind: str,
    coef_std: Tensor,
    units: Tensor | None,
    neurons: Mapping[int, tuple[float, list[tuple[int, float]]]],
    *,
    threshold: float = 2.0,
    top: int = 3,
    own_feature: int | None = None,
) -> list[ChorusFlag]:
    """Of the `top` neurons carrying most of a probe's |standardised weight| (`coef_std` over
    `units`, or over every neuron when `units` is None), those whose `effective_features` is
    at least `threshold`, each with its other voices (every feature but `own_feature`)."""
    weight = coef_std.detach().abs().double().cpu()
    index = torch.arange(weight.numel()) if units is None else units.cpu()
    total = float(weight.sum()) or 1.0
    flags = []
    for j in weight.argsort(descending=True)[:top].tolist():
        neuron = int(index[j])
        if neuron not in neurons or weight[j] == 0:
            continue
        effective, voices = neurons[neuron]
        if effective >= threshold:
            others = tuple(
                sorted(((f, s) for f, s in voices if f != own_feature), key=lambda v: -v[1])
            )
            flags.append(ChorusFlag(kind, neuron, float(weight[j]) / total, effective, others))
    return flags
