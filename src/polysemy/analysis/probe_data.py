"""Labelled rows for probes: a store harvested from the `concepts` corpus, its rows labelled by
one concept, and the control task's labels.

`concept_rows` reads a store's rows and labels them (`polysemy.corpora.label_rows`):

    level="token", tense / plurality   sample: rows of words carrying the concept (walked,
                                       walks; dog, dogs); label: the word's value == `value`
    level="token", any other concept   sample: every row; label: the row's word carries the
                                       concept (with `value`: carries that value)
    level="sentence"                   sample: every row; label: the sentence's label ==
                                       `value` (content concepts without `value`: present)

`value` defaults to the "on" value of a grammatical concept (past, plural, negated, question).

`control_labels` is the control task of Hewitt & Liang (2019): a random label per word type
(token id), drawn once per seed with a given positive rate, so a probe can only score above
chance on held-out rows by memorising word identities.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from polysemy.corpora.concepts import CONCEPTS, GRAMMAR_VALUES, VOCABULARY
from polysemy.validation import ParameterError

logger = logging.getLogger(__name__)

TOKEN_CONTRAST = ("tense", "plurality")
"""Concepts whose words carry either value, so a token-level probe contrasts those words."""


class LabelledRows(NamedTuple):
    """Rows of activations with a binary label, the word type and document of each row."""

    x: Float[Tensor, "rows d_in"]
    y: Bool[Tensor, " rows"]
    word: Int[Tensor, " rows"]
    """Word type of each row (a token id): the unit of the control task's random labels."""
    doc: Int[Tensor, " rows"]
    """Document of each row: the unit of the bootstrap and of the i.i.d. split."""
    name: str
    """Where the rows came from (a store path, `concepts:heldout`, ...)."""


def check_concept(concept: str, value: str | None) -> None:
    """ParameterError naming `concept` or `value` when they are not labels of `concepts`."""
    if concept not in CONCEPTS:
        raise ParameterError("concept", f"one of {', '.join(CONCEPTS)}", concept)
    if value is None:
        return
    if concept in GRAMMAR_VALUES:
        allowed: tuple[str, ...] = GRAMMAR_VALUES[concept]
    elif concept == "sentiment":
        allowed = ("positive", "negative")
    else:
        allowed = VOCABULARY[concept]
    if value not in allowed:
        raise ParameterError("value", f"a value of {concept} ({', '.join(allowed)})", value)


def positive_value(concept: str, value: str | None) -> str | None:
    """The label value counted positive: `value`, else a grammatical concept's "on" value."""
    if value is not None:
        return value
    return GRAMMAR_VALUES[concept][1] if concept in GRAMMAR_VALUES else None


def label_mask(
    token_labels: list[dict[str, str]],
    sentence_labels: list[Any],
    concept: str,
    value: str | None,
    level: str,
) -> tuple[Tensor, Tensor]:
    """(keep, y) bool per row, by the rules of the module docstring."""
    want = positive_value(concept, value)
    n = len(token_labels)
    if level == "sentence":
        labels = [s.get(concept) for s in sentence_labels]
        y = [(v is not None) if want is None else (v == want) for v in labels]
        return torch.ones(n, dtype=torch.bool), torch.tensor(y, dtype=torch.bool)
    carried = [t.get(concept) for t in token_labels]
    if concept in TOKEN_CONTRAST:
        keep = [v is not None for v in carried]
        y = [v == want for v in carried]
    else:
        keep = [True] * n
        y = [(v is not None) if want is None else (v == want) for v in carried]
    return torch.tensor(keep, dtype=torch.bool), torch.tensor(y, dtype=torch.bool)


def concept_rows(
    store: Any,
    concept: str,
    *,
    value: str | None = None,
    level: str = "token",
    max_rows: int = 100_000,
    tokenizer: Any = None,
    name: str | None = None,
) -> LabelledRows:
    """The first `max_rows` rows of `store` (a store folder harvested from a `concepts`
    corpus, or an `ActivationStore`), labelled for `concept`. `tokenizer` defaults to the one
    saved in the store. Raises ValueError naming `acts` for a store that is not a traced
    `concepts` harvest, and `concept` when no row (or every row) is positive."""
    from polysemy.activations.store import ActivationStore
    from polysemy.corpora.row_labels import label_rows

    check_concept(concept, value)
    if not isinstance(store, ActivationStore):
        store = ActivationStore(store)
    where = name or str(store.path)
    corpus = str(store.source.get("corpus", ""))
    if not store.traced or not corpus.startswith("concepts("):
        raise ParameterError(
            "acts", "a store harvested from the concepts corpus (its rows traced to sentences)",
            f"{where} (corpus {corpus or 'unknown'})",
        )  # fmt: skip
    if tokenizer is None:
        if store.tokenizer_path is None:
            raise ParameterError("acts", "a store with its tokenizer/ folder", where)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(store.tokenizer_path))
    rows = min(len(store), max_rows)
    trace = store.read_trace(0, rows)
    labels = label_rows(corpus, trace.doc, trace.pos, tokenizer, tokens=trace.tokens)
    keep, y = label_mask(labels.tokens, labels.sentences, concept, value, level)
    x = store.read(0, rows)[keep]
    y = y[keep]
    shown = concept if value is None else f"{concept}={value}"
    if y.numel() == 0 or bool(y.all()) or not bool(y.any()):
        have = "no rows" if y.numel() == 0 else f"{y.numel()} rows of one class"
        raise ParameterError(
            "concept",
            f"a concept whose labels split the rows of {where} in two",
            f"{shown} ({have})",
        )
    return LabelledRows(x, y, trace.tokens[keep].long(), trace.doc[keep].long(), where)


def harvest_concepts(
    loaded: Any, site: str, spec: str, *, seed: int = 0, seq_len: int = 128
) -> Any:
    """Harvest `spec` (e.g. `concepts:heldout:1000`) at `site` into a temporary store, returned
    open (the folder lives until the process ends; it is small)."""
    from polysemy.activations.harvest import HarvestConfig, harvest
    from polysemy.activations.store import ActivationStore
    from polysemy.corpora import open_corpus

    corpus = open_corpus(spec, seed=seed)
    folder = tempfile.mkdtemp(prefix="polysemy-probes-")
    out = os.path.join(folder, "store")
    config = HarvestConfig(sites=(site,), tokens=10**9, seq_len=seq_len, dtype="float32")
    # The corpus always runs out before the token budget: that is the point, so no warning.
    quiet = logging.getLogger("polysemy.activations.harvest")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        harvest(loaded, corpus, config, out=out)
    finally:
        quiet.setLevel(level)
    return ActivationStore(out)


def split_documents(
    rows: LabelledRows, heldout_fraction: float
) -> tuple[LabelledRows, LabelledRows]:
    """(train, held-out): the held-out rows are those of the last `heldout_fraction` of
    documents, so no sentence straddles the two."""
    docs = torch.unique(rows.doc)  # sorted
    cut = docs[len(docs) - max(1, round(len(docs) * heldout_fraction))]
    test = rows.doc >= cut

    def part(mask: Tensor, suffix: str) -> LabelledRows:
        return LabelledRows(rows.x[mask], rows.y[mask], rows.word[mask], rows.doc[mask],
                            rows.name + suffix)  # fmt: skip

    return part(~test, ""), part(test, " (held out)")


def control_labels(
    word: Int[Tensor, " rows"], positive_rate: float, *, seed: int = 0
) -> Bool[Tensor, " rows"]:
    """A random label per word type, positive with probability `positive_rate`; the same word
    gets the same label in every set for a given seed."""
    g = torch.Generator().manual_seed(seed)
    # One fixed-size table, so a word's label never depends on which other words a set holds.
    table = torch.rand(_CONTROL_TABLE, generator=g) < positive_rate
    return table[word.long() % _CONTROL_TABLE]


_CONTROL_TABLE = 1 << 20  # above every tokenizer's vocabulary we ship or know of
