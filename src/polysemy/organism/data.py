"""The organism's data: a corpus cut into train and held-out documents, tokenized, packed.

Documents are read in the corpus's own order up to a character budget; every
`heldout_every`-th document is held out. Each side becomes one token stream with
`<|endoftext|>` between documents, cut into windows of `n_ctx + 1` tokens that overlap by one
(the last token of a window is the first of the next), so every token is predicted exactly
once and no window holds padding. The unigram and bigram baselines are counted on the same
training stream and scored on the same held-out targets as the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from polysemy.organism.config import OrganismConfig
from polysemy.organism.tokenizer import EOS, train_tokenizer
from polysemy.validation import ParameterError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["OrganismData", "bigram_losses", "prepare_data", "unigram_losses", "windows"]


class OrganismData(NamedTuple):
    """Tokenizer and token streams of one organism run."""

    tokenizer: Any
    """A `PreTrainedTokenizerFast`: byte-level BPE trained on the training documents."""
    train: Int[Tensor, " tokens"]
    """Training stream (int64), documents separated by the eos token."""
    heldout: Int[Tensor, " tokens"]
    """Held-out stream, built the same way from the held-out documents."""
    corpus: str
    """The corpus's stable name."""
    documents: tuple[int, int]
    """(training documents, held-out documents) read."""


def _read(config: OrganismConfig) -> tuple[list[str], list[str], str]:
    from polysemy.corpora.corpus import open_corpus

    corpus = open_corpus(config.corpus, seed=config.seed)
    budget = config.resolved_corpus_chars
    train: list[str] = []
    heldout: list[str] = []
    read = 0
    for i, doc in enumerate(corpus):
        (heldout if i % config.heldout_every == config.heldout_every - 1 else train).append(doc)
        read += len(doc)
        if read >= budget:
            break
    return train, heldout, corpus.name


def _stream(tokenizer: PreTrainedTokenizerFast, docs: Iterable[str]) -> Tensor:
    eos = cast(int, tokenizer.convert_tokens_to_ids(EOS))
    ids: list[int] = []
    backend = tokenizer.backend_tokenizer
    docs = list(docs)
    for start in range(0, len(docs), 1024):
        for enc in backend.encode_batch(docs[start : start + 1024], add_special_tokens=False):
            ids.extend(enc.ids)
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def prepare_data(config: OrganismConfig) -> OrganismData:
    """Read, split, train the tokenizer on the training documents, and tokenize both sides.

    Raises ParameterError naming `corpus_chars` (or `vocab_size`) when the corpus is too small
    for one batch of training windows and one held-out window, or for the vocabulary.
    """
    train_docs, heldout_docs, name = _read(config)
    if not heldout_docs:
        raise ParameterError(
            "corpus_chars",
            f"enough text for at least {config.heldout_every} documents "
            f"(every {config.heldout_every}-th is held out)",
            f"{len(train_docs)} documents from {config.corpus!r}",
        )
    tokenizer = train_tokenizer(train_docs, vocab_size=config.vocab_size)
    train = _stream(tokenizer, train_docs)
    heldout = _stream(tokenizer, heldout_docs)
    need = config.batch_size * config.n_ctx + 1
    if train.numel() < need:
        raise ParameterError(
            "corpus_chars",
            f"enough text for one batch (batch_size * n_ctx + 1 = {need} training tokens)",
            f"{train.numel()} tokens from {config.corpus!r}",
        )
    if heldout.numel() < config.n_ctx + 1:
        raise ParameterError(
            "corpus_chars",
            f"enough held-out text for one window (n_ctx + 1 = {config.n_ctx + 1} tokens)",
            f"{heldout.numel()} tokens from {config.corpus!r}",
        )
    return OrganismData(tokenizer, train, heldout, name, (len(train_docs), len(heldout_docs)))


def windows(stream: Int[Tensor, " tokens"], n_ctx: int) -> Int[Tensor, "windows n_ctx_plus_1"]:
    """`stream` cut into windows of n_ctx + 1 tokens, consecutive windows sharing one token
    (inputs are `w[:, :-1]`, targets `w[:, 1:]`: each token is a target once)."""
    n = (stream.numel() - 1) // n_ctx
    return stream[: n * n_ctx + 1].unfold(0, n_ctx + 1, n_ctx)  # (windows, n_ctx + 1)


def unigram_losses(
    train: Int[Tensor, " tokens"], targets: Int[Tensor, "windows pos"], vocab_size: int
) -> np.ndarray:
    """Per-window mean cross-entropy (nats) of add-one unigram frequencies of `train`."""
    counts = np.bincount(train.numpy(), minlength=vocab_size).astype(np.float64)
    logp = np.log((counts + 1.0) / (counts.sum() + vocab_size))
    return -logp[targets.numpy()].mean(axis=1)


def bigram_losses(
    train: Int[Tensor, " tokens"],
    heldout_windows: Int[Tensor, "windows n_ctx_plus_1"],
    vocab_size: int,
) -> np.ndarray:
    """Per-window mean cross-entropy (nats) of a Witten-Bell interpolated bigram model of
    `train` (backing off to add-one unigrams), on the same targets the model predicts.

    Witten-Bell gives a previous token `a` seen with T(a) distinct followers c(a) times the
    weight c(a) / (c(a) + T(a)) on its own counts: a standard, strong smoothed bigram.
    """
    v = vocab_size
    stream = train.numpy().astype(np.int64)
    counts = np.bincount(stream, minlength=v).astype(np.float64)
    p_uni = (counts + 1.0) / (counts.sum() + v)
    keys, pair_counts = np.unique(stream[:-1] * v + stream[1:], return_counts=True)
    prev_of_key = keys // v
    c_prev = np.bincount(prev_of_key, weights=pair_counts, minlength=v)
    t_prev = np.bincount(prev_of_key, minlength=v).astype(np.float64)
    w = heldout_windows.numpy().astype(np.int64)
    a, b = w[:, :-1], w[:, 1:]  # (windows, n_ctx)
    q = a * v + b
    at = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
    c_ab = np.where(keys[at] == q, pair_counts[at], 0).astype(np.float64)
    ca, ta = c_prev[a], t_prev[a]
    denom = ca + ta
    p = np.where(denom > 0, (c_ab + ta * p_uni[b]) / np.maximum(denom, 1.0), p_uni[b])
    return -np.log(p).mean(axis=1)
