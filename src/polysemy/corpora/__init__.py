"""Text sources for harvesting activations: local files, Hugging Face datasets, built-ins.

>>> from polysemy.corpora import open_corpus
>>> corpus = open_corpus("pydocs")          # docstrings of Python and installed packages
>>> corpus.name                             # doctest: +SKIP
'pydocs(python=3.11.7, packages=131@9064bac5, version=1)'
>>> first = corpus.take(2)                  # documents in a fixed order

Specs: `pydocs`, `concepts[:train|heldout][:N]`, `hf:NAME[:SPLIT]`, or a `.txt` / `.jsonl` /
`.parquet` file, folder or glob. The labelled sentences behind `concepts` (labels, spans,
counterfactual twins) come from `generate_concepts`; `label_rows` maps the rows of a store
harvested from it back to those labels. See docs/corpora.md.
"""

from polysemy.corpora.concepts import (
    CONCEPTS,
    ConceptSentence,
    ConceptTwin,
    Span,
    generate_concepts,
)
from polysemy.corpora.corpus import BUILTIN_NAMES, Corpus, open_corpus
from polysemy.corpora.row_labels import RowLabels, label_rows, token_labels

__all__ = [
    "BUILTIN_NAMES",
    "CONCEPTS",
    "ConceptSentence",
    "ConceptTwin",
    "Corpus",
    "RowLabels",
    "Span",
    "generate_concepts",
    "label_rows",
    "open_corpus",
    "token_labels",
]
