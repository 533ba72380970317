"""One tiny run folder with a real cross-corpus drift, built once per session and shared by
the explorer and report tests (read-only for them: copy it before writing into it).

    RUN/organism/                 a tiny organism (tests/organism/conftest.py TINY)
    RUN/analyses/drift-corpora/   corpus_drift of its last snapshot, concepts vs pydocs
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from tests.organism.conftest import TINY

from polysemy.analysis.corpus_drift import CorpusDriftConfig, corpus_drift, organism_snapshot
from polysemy.organism import train_organism

FAST = CorpusDriftConfig(null_splits=20, neuron_resamples=20, resamples=200)


@functools.cache
def _build(root: Path) -> Path:
    org = train_organism(out=root / "organism", progress=False, **TINY)
    assert org.out is not None
    snap, site = organism_snapshot(org.out)
    corpus_drift(
        str(snap), site, None, "concepts:heldout:400", "pydocs", FAST,
        out=root / "analyses" / "drift-corpora", tokens=2048, sae_rows=2048, sae_tokens=8192,
        k=8, expansion=2, seq_len=16,
    )  # fmt: skip
    return root


def corpus_drift_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared run folder (built on first use in this session)."""
    return _build(tmp_path_factory.getbasetemp() / "corpus-drift-run")
