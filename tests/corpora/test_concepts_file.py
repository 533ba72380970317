"""`write_concepts` and `corpus_stats`, called as a notebook would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polysemy.corpora import generate_concepts, open_corpus
from polysemy.corpora.concepts_file import ConceptsConfig, write_concepts
from polysemy.corpora.corpus import corpus_stats
from polysemy.validation import ParameterError


def test_write_concepts_writes_the_generated_sentences(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    written = write_concepts(out, n=4, split="heldout", seed=3)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in records] == [
        s.text for s in generate_concepts(4, seed=3, split="heldout")
    ]
    assert written.sentences == 4 and written.twins == sum(len(r["twins"]) for r in records) > 4
    with pytest.raises(FileExistsError, match="force=True"):
        write_concepts(out, ConceptsConfig(n=2))
    assert write_concepts(out, ConceptsConfig(n=2, twins=False), force=True).twins == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n": 0}, "n must be an int >= 1; got 0"),
        ({"split": "dev"}, "split must be one of train, heldout"),
        ({"twin": False}, "twin must be a field of ConceptsConfig"),
    ],
)
def test_write_concepts_names_the_bad_parameter(
    tmp_path: Path, options: dict, message: str
) -> None:
    with pytest.raises(ParameterError, match=message):
        write_concepts(tmp_path / "c.jsonl", **options)
    assert not (tmp_path / "c.jsonl").exists()


def test_corpus_stats_counts_a_corpus_and_a_prefix() -> None:
    corpus = open_corpus("concepts:train:30", seed=1)
    docs = list(corpus)
    whole = corpus_stats(corpus, progress=False)
    assert (whole.documents, whole.complete) == (30, True)
    assert whole.chars == sum(map(len, docs))
    assert whole.words == sum(len(d.split()) for d in docs)
    first = corpus_stats(corpus, limit=5, progress=False)
    assert (first.documents, first.complete) == (5, False)
    assert first.chars == sum(map(len, docs[:5]))
    with pytest.raises(ParameterError, match="limit must be an int >= 1"):
        corpus_stats(corpus, limit=0)
