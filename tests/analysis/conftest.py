"""Tiny seeded models (built from configs, nothing downloaded) and SAEs for fidelity and
ablation tests."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.corpora import open_corpus
from polysemy.models import LoadedModel
from polysemy.sae import sae_from_weights

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
