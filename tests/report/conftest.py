"""A tiny run folder built with the real library, once per session: a planted store
(ps.synth), a TopK SAE trained on it, the neurons, features and geometry analyses, a toy run,
and a claims folder in the contract's format (the claims battery lands separately)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CLAIMS = [
    {
        "claim": {"text": "neuron 3 carries feature 7", "kind": "carries", "neuron": 3},
        "verdict": "supported",
        "evidence": {
            "share": {
                "estimate": 0.41,
                "low": 0.35,
                "high": 0.47,
                "level": 0.95,
                "n": 400,
                "method": "bootstrap",
            },
            "null_range": [0.01, 0.08],
        },
        "sentence": "Feature 7 carries 41% [35%, 47%] of neuron 3, above the rotated null.",
    },
    {
        "claim": {"text": "feature 2 is monosemantic", "kind": "monosemantic", "feature": 2},
        "verdict": "inconclusive",
        "evidence": {"top_share": {"estimate": 0.55, "low": 0.30, "high": 0.81, "n": 12}},
        "sentence": "The interval [0.30, 0.81] straddles the 0.8 bar: cannot decide.",
    },
]


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import polysemy as ps
    from polysemy.analysis.features import analyze_features
    from polysemy.analysis.folder import write_analysis
    from polysemy.analysis.geometry import analyze_geometry
    from polysemy.analysis.neurons import analyze_neurons

    root = tmp_path_factory.mktemp("report")
    run = root / "run"
    planted = ps.synth(
        root / "synth", n_features=32, d_in=16, active=2.0, tokens=4000, neuron_support=2,
        seed=0, progress=False,
    )  # fmt: skip
    store = _traced_copy(planted, run / "stores" / "mlp")
    ps.train_sae(
        store, out=run / "saes" / "mlp", arch="topk", d_sae=48, k=4, tokens=20_000,
        batch_size=256, log_every=20, progress=False, seed=0,
    )  # fmt: skip
    sae = ps.load_sae(run / "saes" / "mlp")
    analyses = run / "analyses"
    analyze_neurons(sae, store, out=analyses / "neurons-mlp", resamples=200)
    analyze_features(sae, store, out=analyses / "features-mlp")
    analyze_geometry(sae, store, out=analyses / "geometry-mlp", resamples=200, permutations=200)
    ps.toy.train(
        out=run / "toy" / "tiny", n_features=5, n_hidden=2, sparsity=[0.0, 0.9], steps=200,
        progress=False,
    )  # fmt: skip
    write_analysis(
        analyses / "claims", "claims", inputs={"claims": "test"},
        summary={"n": len(CLAIMS)}, files={"claims.json": {"claims": CLAIMS}},
    )  # fmt: skip
    return run


def _traced_copy(planted: Any, out: Path) -> Any:
    """The planted rows with text traces: each row is given a token of real sentences (the
    `concepts` corpus, MiniLM's tokenizer), so contexts print as text with their token
    marked, as in a harvested store."""
    import torch
    from transformers import AutoTokenizer

    from polysemy.activations.store import ActivationStore, StoreWriter
    from polysemy.corpora import open_corpus
    from polysemy.models import minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    rows = planted.rows
    ids: list[int] = []
    doc: list[int] = []
    pos: list[int] = []
    for d, text in enumerate(open_corpus("concepts:heldout:400").take(400)):
        piece = tok(text)["input_ids"][1:-1]
        ids += piece
        doc += [d] * len(piece)
        pos += list(range(len(piece)))
        if len(ids) >= rows:
            break
    with StoreWriter(out, d_in=planted.d_in, dtype="float32", source=planted.source) as w:
        w.append(
            planted.read(0, rows),
            tokens=torch.tensor(ids[:rows], dtype=torch.int32),
            doc=torch.tensor(doc[:rows], dtype=torch.int64),
            pos=torch.tensor(pos[:rows], dtype=torch.int32),
        )
        w.copy_tokenizer(tok)
    return ActivationStore(out)


@pytest.fixture(scope="session")
def report_dir(run_folder: Path) -> Path:
    """RUN/report, written once with the defaults."""
    from polysemy.report import write_report

    return write_report(run_folder)


@pytest.fixture
def claims() -> list[dict[str, Any]]:
    return CLAIMS
