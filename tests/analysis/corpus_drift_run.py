"""One tiny run folder with a real cross-corpus drift, built once per session and shared by
the explorer and report tests (read-only for them: copy it before writing into it).

    RUN/organism/                 a tiny organism (tests/organism/conftest.py TINY)
    RUN/stores/mlp, RUN/saes/mlp  its MLP on 2,048 concepts tokens, a TopK SAE of 128 latents
    RUN/analyses/features-mlp/, RUN/analyses/neurons-mlp/   that SAE's pages (for the links)
    RUN/analyses/drift-corpora/   corpus_drift of its last snapshot with that SAE, concepts
                                  vs pydocs
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from tests.organism.conftest import TINY

import polysemy as ps
from polysemy.analysis.corpus_drift import CorpusDriftConfig, corpus_drift, organism_snapshot
from polysemy.organism import train_organism

FAST = CorpusDriftConfig(null_splits=20, neuron_resamples=20, resamples=200)


@functools.cache
def _build(root: Path) -> Path:
    org = train_organism(out=root / "organism", progress=False, **TINY)
    assert org.out is not None
    snap, site = organism_snapshot(org.out)
    model = ps.load_model(str(snap))
    store = ps.harvest(model, "concepts:train:400", site=site, tokens=2048, seq_len=16,
                       out=root / "stores" / "mlp", progress=False)  # fmt: skip
    ps.train_sae(store, out=root / "saes" / "mlp", arch="topk", d_sae=128, k=8, tokens=8192,
                 batch_size=256, progress=False)  # fmt: skip
    sae = ps.load_sae(root / "saes" / "mlp")
    ps.analysis.analyze_features(sae, store, out=root / "analyses" / "features-mlp")
    ps.analysis.analyze_neurons(sae, store, out=root / "analyses" / "neurons-mlp")
    corpus_drift(
        model, site, root / "saes" / "mlp", "concepts:heldout:400", "pydocs", FAST,
        out=root / "analyses" / "drift-corpora", tokens=2048, seq_len=16,
    )  # fmt: skip
    return root


def corpus_drift_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared run folder (built on first use in this session)."""
    return _build(tmp_path_factory.getbasetemp() / "corpus-drift-run")
