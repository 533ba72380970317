from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polysemy.organism.data import bigram_losses, unigram_losses, windows
from polysemy.organism.tokenizer import EOS, train_tokenizer


def test_windows_pack_every_token_as_a_target_once() -> None:
    stream = torch.arange(23)
    w = windows(stream, 5)  # (4, 6)
    assert w.shape == (4, 6)
    assert torch.equal(w[:, 1:].reshape(-1), torch.arange(1, 21))
    assert torch.equal(w[1:, 0], w[:-1, -1])  # consecutive windows share one token


def test_baselines_on_known_truth() -> None:
    # A deterministic cycle 0 1 2 3 0 1 ...: the bigram knows every next token (loss ~ 0),
    # the unigram sees four equally likely tokens (loss ~ log 4, add-one over vocab 8).
    stream = torch.arange(4000) % 4
    held = windows(torch.arange(401) % 4, 8)
    bigram = bigram_losses(stream, held, 8)
    unigram = unigram_losses(stream, held[:, 1:], 8)
    assert bigram.shape == unigram.shape == (50,)
    assert bigram.max() < 0.01
    assert np.allclose(unigram, -math.log(1001 / 4008), atol=1e-6)


def test_bigram_backs_off_to_unigram_for_an_unseen_previous_token() -> None:
    stream = torch.tensor([0, 1] * 500)
    held = torch.tensor([[5, 0, 1]])  # 5 never seen: its next token gets the unigram
    loss = bigram_losses(stream, held, 8)
    p_uni0 = 501 / 1008
    p_01 = (500 + 1 * (501 / 1008)) / (500 + 1)
    assert loss[0] == pytest.approx(-(math.log(p_uni0) + math.log(p_01)) / 2)


def test_tokenizer_round_trips_and_refuses_a_vocabulary_the_text_cannot_fill(tmp_path) -> None:
    import polysemy as ps

    texts = ps.open_corpus("concepts:train:300").take(300)
    tok = train_tokenizer(texts, vocab_size=300)
    assert len(tok) == 300
    ids = tok("the dentist sat")["input_ids"]
    assert tok.decode(ids) == "the dentist sat"
    assert tok.convert_tokens_to_ids(EOS) == tok.eos_token_id
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("the dentist sat")["input_ids"] == ids
    with pytest.raises(ValueError, match=r"vocab_size must be <= \d+ for this corpus"):
        train_tokenizer(texts, vocab_size=50_000)
