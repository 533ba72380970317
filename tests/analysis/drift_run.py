"""One tiny run folder with a real organism drift and a real toy drift, built once per session
and shared by the drift views, explorer and report tests (read-only for them).

    RUN/organism/                 a tiny organism (tests/organism/conftest.py TINY), 4 snapshots
    RUN/analyses/drift-organism/  organism_drift on it (64 neurons, SAEs of 128 latents)
    RUN/toy/rh/                   a ReLU-hidden toy with 5 snapshots
    RUN/analyses/drift-toy/       toy_drift on it
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from tests.organism.conftest import TINY

import polysemy as ps
from polysemy.analysis.drift import toy_drift
from polysemy.analysis.organism_drift import organism_drift
from polysemy.organism import train_organism

SMALL = dict(rows=512, sae_rows=2048, sae_tokens=16384, k=8, expansion=2, resamples=200)
"""organism_drift sizes for the tiny organism (as in test_organism_drift.py)."""


@functools.cache
def _build(root: Path) -> Path:
    run = train_organism(out=root / "organism", progress=False, **TINY)
    assert run.out is not None
    organism_drift(run.out, out=root / "analyses" / "drift-organism", **SMALL)
    ps.toy.train(out=root / "toy" / "rh", model="relu-hidden", n_features=6, n_hidden=3,
                 sparsity=(0.0, 0.7), steps=300, snapshots=5, progress=False)  # fmt: skip
    toy_drift(root / "toy" / "rh", out=root / "analyses" / "drift-toy", samples=512,
              resamples=200)  # fmt: skip
    return root


def drift_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared run folder (built on first use in this session)."""
    return _build(tmp_path_factory.getbasetemp() / "drift-run")
