"""A tiny organism trained once per session: seconds on CPU, real training, real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polysemy.organism import OrganismRun, train_organism

TINY: dict[str, Any] = dict(
    corpus="concepts:train:1500",
    corpus_chars=60_000,
    heldout_every=10,
    vocab_size=320,
    n_ctx=16,
    d_model=32,
    d_mlp=64,
    n_head=2,
    batch_size=8,
    steps=60,
    lr=1e-2,
    warmup_steps=5,
    snapshots=4,
    checkpoint_every=5,
    eval_tokens=512,
    log_every=5,
)
"""A config that trains in about a second: a few steps on a slice of the concepts corpus."""


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> OrganismRun:
    out: Path = tmp_path_factory.mktemp("organism") / "run"
    return train_organism(out=out, progress=False, **TINY)
