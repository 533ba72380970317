"""Shared fixtures of the analysis tests: tiny seeded models (built from configs, nothing
downloaded) and SAEs for fidelity and ablation; planted stores and an exact ("oracle") SAE for
the neurons and features tests.

With fewer planted features than dimensions, a ReLU SAE whose encoder is the pseudo-inverse of
the planted dictionary recovers every coefficient exactly (x = a F, a >= 0, so x F^+ = a), so
the analyses' reports can be checked against the planted loadings with no training noise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

from polysemy.activations.store import ActivationStore, StoreWriter
from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.corpora import open_corpus
from polysemy.models import LoadedModel
from polysemy.sae import sae_from_weights
from polysemy.synth import SynthConfig, generate_activations
from polysemy.synth.planted import config_dictionary

GPT2_TEXT = "the quick brown fox jumps over the lazy dog and the cat sat on the mat"


@pytest.fixture(scope="session")
def tiny_bert() -> LoadedModel:
    return tiny_encoder(seed=0)


@pytest.fixture(scope="session")
def tiny_gpt2() -> LoadedModel:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([GPT2_TEXT] * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=fast.vocab_size, n_layer=3, n_embd=32, n_head=2, n_positions=64,
        bos_token_id=1, eos_token_id=1,
    )  # fmt: skip
    model = GPT2Model(config).eval()
    model.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=fast, name="tiny-gpt2")


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return open_corpus("concepts:heldout:400").take(400)


@pytest.fixture(scope="session")
def gpt2_docs() -> list[str]:
    words = GPT2_TEXT.split()
    return [" ".join(words[i % 7 :] + words[: i % 5]) for i in range(60)]


def random_sae(d_in: int, d_sae: int = 64, seed: int = 0) -> torch.nn.Module:
    """A ReLU SAE with random weights: a lossy but deterministic reconstruction."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=g), dim=-1)
    return sae_from_weights(
        "relu", W_enc=W_dec.T.clone(), b_enc=torch.zeros(d_sae), W_dec=W_dec * 0.5,
        b_dec=torch.zeros(d_in),
    )  # fmt: skip


def oracle_sae(features: torch.Tensor) -> Any:
    F = features.float()
    return sae_from_weights(
        "relu",
        W_enc=torch.linalg.pinv(F),  # (d_in, n_features)
        # A hair below zero so float rounding of x F^+ does not fire absent features.
        b_enc=torch.full((F.shape[0],), -1e-5),
        W_dec=F,
        b_dec=torch.zeros(F.shape[1]),
    )


def planted(folder: Path, *, traced: bool = False, **options: Any) -> tuple[ActivationStore, Any]:
    """A planted store (traced with MiniLM's tokenizer when asked) and its oracle SAE."""
    config = SynthConfig(**{"n_features": 16, "d_in": 24, "active": 2.0, "tokens": 3000,
                            "neuron_support": 2, **options})  # fmt: skip
    x = generate_activations(config)
    F = config_dictionary(config)
    from polysemy.synth.planted import generate_chunks

    count = torch.zeros(config.n_features, dtype=torch.int64)
    for chunk in generate_chunks(config):
        count += torch.bincount(chunk.features, minlength=config.n_features)
    source = {"model": "synth", "site": "planted", "corpus": "test", "seq_len": 1}
    with StoreWriter(folder, d_in=config.d_in, dtype="float32", source=source) as w:
        if traced:
            from transformers import AutoTokenizer

            from polysemy.models import minilm_path

            tok = AutoTokenizer.from_pretrained(str(minilm_path()))
            n = x.shape[0]
            ids = torch.tensor(tok("the river bank was full of fish today")["input_ids"][1:-1])
            tokens = ids.repeat(n // ids.numel() + 1)[:n].int()
            doc = torch.arange(n) // 100  # documents of 100 tokens
            pos = (torch.arange(n) % 100).int()
            w.append(x, tokens=tokens, doc=doc, pos=pos)
            w.copy_tokenizer(tok)
        else:
            w.append(x)
    store = ActivationStore(folder)
    store.planted_count = count  # type: ignore[attr-defined]
    return store, oracle_sae(F)


@pytest.fixture
def make_planted(tmp_path: Path) -> Any:
    """`make_planted(name, traced=False, **synth_options) -> (store, oracle SAE)`."""

    def make(name: str = "store", **options: Any) -> tuple[ActivationStore, Any]:
        return planted(tmp_path / name, **options)

    return make


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def two_ranks() -> Callable[[list[str]], list[subprocess.Popen[str]]]:
    """Start `python ARGS` twice under torchrun's environment (gloo over loopback on a free
    port, one thread each, this checkout's sources first), returning the processes; each
    call gets its own port."""

    def launch(args: list[str]) -> list[subprocess.Popen[str]]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
        env = dict(os.environ, OMP_NUM_THREADS="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        env["MASTER_PORT"] = port
        return [
            subprocess.Popen(
                [sys.executable, *args],
                env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in range(2)
        ]

    return launch
