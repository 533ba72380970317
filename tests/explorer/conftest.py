"""A tiny run folder made with the real library, shared by the explorer tests.

planted activations (ps.synth) traced to real MiniLM tokens -> a tiny TopK SAE -> the
features, neurons and geometry analyses -> a tiny toy sweep; claims.json is written by hand
in the run-folder contract's format (the claims battery lands in parallel).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import polysemy as ps
from polysemy.activations.store import ActivationStore, StoreWriter
from polysemy.analysis.features import analyze_features
from polysemy.analysis.folder import write_analysis
from polysemy.analysis.geometry import analyze_geometry
from polysemy.analysis.neurons import analyze_neurons

SITE = "encoder.layer.3.intermediate.intermediate_act_fn.output"
SENTENCES = [
    "the river bank was full of fish today",
    "she opened an account at the bank downtown",
    "the cat sat on the warm mat near the door",
    "interest rates at the central bank rose again",
    "a heron waited on the muddy bank of the stream",
    "python lists keep their items in insertion order",
]


def make_run(root: Path) -> Path:
    """Write the tiny run folder under `root / "run"` and return it."""
    from transformers import AutoTokenizer

    from polysemy.models import minilm_path

    run = root / "run"
    synth = ps.synth(root / "synth", n_features=24, d_in=16, active=2.0, tokens=3000,
                     neuron_support=2, progress=False)  # fmt: skip
    x = synth.read(0, synth.rows)  # (rows, d_in)
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    ids = [tok(s)["input_ids"][1:-1] for s in SENTENCES]
    tokens, doc, pos = [], [], []
    d = 0
    while len(tokens) < x.shape[0]:
        sent = ids[d % len(ids)]
        tokens += sent
        doc += [d] * len(sent)
        pos += list(range(len(sent)))
        d += 1
    n = x.shape[0]
    source = {"model": "synth", "site": SITE, "corpus": "test", "seq_len": 16}
    with StoreWriter(run / "stores" / "mlp", d_in=16, dtype="float32", source=source) as w:
        w.append(
            x,
            tokens=torch.tensor(tokens[:n], dtype=torch.int32),
            doc=torch.tensor(doc[:n], dtype=torch.int64),
            pos=torch.tensor(pos[:n], dtype=torch.int32),
        )
        w.copy_tokenizer(tok)
    store = ActivationStore(run / "stores" / "mlp")
    trained = ps.train_sae(store, out=run / "saes" / "mlp", arch="topk", k=4, d_sae=32,
                           tokens=6000, batch_size=256, progress=False)  # fmt: skip
    sae = trained.sae
    analyses = run / "analyses"
    analyze_features(sae, store, out=analyses / "features-mlp", examples=4, quantile_examples=3,
                     sample_size=8, bins=12, null_directions=200)  # fmt: skip
    analyze_neurons(sae, store, out=analyses / "neurons-mlp", top_features=6, top_contexts=5,
                    resamples=200)  # fmt: skip
    analyze_geometry(sae, store, out=analyses / "geometry-mlp", split="all", min_count=5,
                     top_features=16, resamples=100, permutations=100, bins=20,
                     inputs={"sae_path": str(run / "saes" / "mlp")})  # fmt: skip
    ps.toy.train(out=run / "toy" / "relu", n_features=6, n_hidden=2, sparsity=(0.0, 0.9),
                 steps=200, progress=False)  # fmt: skip
    claims = {
        "claims": [
            {
                "claim": {"kind": "polysemantic", "target": "feature:3", "site": "mlp"},
                "verdict": "supported",
                "evidence": {"effect": 0.4, "ci": [0.2, 0.6], "n": 120},
                "sentence": "feature 3 fires in two unrelated contexts (0.40 [0.20, 0.60], n=120)",
            },
            {
                "claim": {"kind": "monosemantic", "target": "neuron:2", "site": "mlp"},
                "verdict": "inconclusive",
                "evidence": {"effect": 0.1, "ci": [-0.1, 0.3], "n": 40},
                "sentence": "neuron 2 may carry one feature; the interval cannot decide",
            },
        ]
    }
    write_analysis(analyses / "claims-demo", "claims", inputs={"claims": "hand-written"},
                   summary={"n": 2}, files={"claims.json": claims})  # fmt: skip
    (run / "demo.json").write_text(json.dumps({"format": "polysemy.demo/1", "stages": {}}))
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run folder with its explorer index built (read-only for tests)."""
    from polysemy.explorer import build_index

    run = make_run(tmp_path_factory.mktemp("explorer"))
    build_index(run)
    return run


@pytest.fixture(scope="session")
def live_url(tiny_run: Path) -> Any:
    """The explorer of `tiny_run` served by uvicorn on 127.0.0.1, an ephemeral port."""
    import threading
    import time

    import uvicorn

    from polysemy.explorer.server import create_app, url_of

    server = uvicorn.Server(
        uvicorn.Config(create_app(tiny_run), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the explorer server did not start")
        time.sleep(0.02)
    yield url_of(server, "127.0.0.1")
    server.should_exit = True
    thread.join(timeout=5)
