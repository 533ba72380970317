"""The `Corpus` object and `open_corpus`, the one entry point from a spec string to documents.

A corpus is a re-iterable, deterministic stream of documents (strings). Position in the
stream is the document index that activation stores record in their `doc` column, so the
same spec on the same machine must always yield the same documents in the same order.

>>> corpus = open_corpus("concepts:heldout:100", seed=0)
>>> corpus.name
'concepts(split=heldout, n=100, seed=0, version=1)'
>>> next(iter(corpus))
'In summer, the dentist did not play softball skillfully at the harbor.'
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from polysemy.validation import check_int, check_optional_int

logger = logging.getLogger(__name__)

BUILTIN_NAMES = ("pydocs", "concepts")
"""Names of the corpora that ship with polysemy and work offline."""


@dataclass(frozen=True)
class Corpus:
    """A deterministic, re-iterable stream of text documents."""

    name: str
    """Stable description of where the documents come from, recorded in store manifests."""
    _documents: Callable[[], Iterator[str]] = field(repr=False, compare=False)
    """Returns a fresh iterator over the documents each time it is called."""

    def __iter__(self) -> Iterator[str]:
        """Documents in order; the position of a document is its index."""
        return self._documents()

    def take(self, n: int) -> list[str]:
        """The first `n` documents (fewer when the corpus is shorter)."""
        check_int("n", n, least=0)
        return list(itertools.islice(self, n))


def open_corpus(spec: str, *, seed: int = 0, text_field: str = "text") -> Corpus:
    """Open a corpus from a spec string.

    `spec` is one of:
    - `pydocs`: docstrings and docs of the Python standard library and installed packages;
    - `concepts[:train|heldout][:N]`: N generated labelled sentences (default: train,
      100000, about 1.2M MiniLM tokens);
    - `hf:NAME[:SPLIT]` or `hf:NAME:CONFIG:SPLIT`: a Hugging Face dataset (needs the
      `datasets` extra and a network connection or a warm cache);
    - a `.txt` / `.jsonl` / `.parquet` file, a folder (searched recursively) or a glob.

    `seed` drives the generated `concepts` corpus; documents of files, `pydocs` and `hf:`
    corpora always come in their fixed order. `text_field` names the JSON field / parquet
    column / dataset column that holds the text.

    Raises FileNotFoundError for a missing path and ValueError for an unknown spec or a
    corpus without any document; a file that is not UTF-8 raises ValueError (naming the file
    and byte offset) when iteration reaches it.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"corpus must be a non-empty string; got {spec!r}")
    check_int("seed", seed)
    if not isinstance(text_field, str) or not text_field:
        raise ValueError(f"text_field must be a non-empty string; got {text_field!r}")
    spec = spec.strip()
    corpus: Corpus
    if spec == "pydocs":
        from polysemy.corpora.pydocs import pydocs_corpus

        corpus = pydocs_corpus()
    elif spec == "concepts" or spec.startswith("concepts:"):
        from polysemy.corpora.concepts import concepts_corpus

        corpus = concepts_corpus(spec, seed=seed)
    elif spec.startswith("hf:"):
        from polysemy.corpora.hub import hub_corpus

        corpus = hub_corpus(spec, text_field=text_field)
    else:
        from polysemy.corpora.files import files_corpus

        corpus = files_corpus(spec, text_field=text_field)
    _require_a_document(corpus, spec)
    logger.info("opened corpus %s", corpus.name)
    return corpus


def _require_a_document(corpus: Corpus, spec: str) -> None:
    # Reading the first document up front turns "empty corpus" into an error at open time,
    # before a harvest creates its output folder.
    for _ in corpus:
        return
    raise ValueError(f"corpus {spec!r} is empty: it holds no non-blank document")


@dataclass(frozen=True)
class CorpusStats:
    """Counts of a corpus, or of its first `limit` documents."""

    corpus: str
    documents: int
    chars: int
    words: int
    """Whitespace-separated words."""
    complete: bool
    """True when every document was read (no `limit`, or a corpus shorter than it)."""
    seconds: float


def corpus_stats(corpus: Corpus, *, limit: int | None = None, progress: bool = True) -> CorpusStats:
    """Read `corpus` (or its first `limit` documents) and count it. Reading every document also
    checks that each file is valid UTF-8 and well formed before a long harvest starts."""
    from polysemy.progress import progress_bar

    check_optional_int("limit", limit, least=1)
    documents = chars = words = 0
    start = time.perf_counter()
    with progress_bar(total=limit, desc="reading", unit="doc", enabled=progress) as bar:
        for doc in corpus:
            documents += 1
            chars += len(doc)
            words += len(doc.split())
            bar.update(1)
            if limit is not None and documents >= limit:
                break
    return CorpusStats(
        corpus=corpus.name,
        documents=documents,
        chars=chars,
        words=words,
        complete=limit is None or documents < limit,
        seconds=time.perf_counter() - start,
    )
