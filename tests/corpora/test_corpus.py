"""open_corpus dispatch and argument validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from polysemy.corpora import Corpus, open_corpus


@pytest.mark.parametrize("spec", ["", "   ", None, 3])
def test_spec_must_be_a_nonempty_string(spec: object) -> None:
    with pytest.raises(ValueError, match="corpus must be a non-empty string"):
        open_corpus(spec)  # type: ignore[arg-type]


def test_seed_and_text_field_are_checked(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hello")
    with pytest.raises(TypeError, match="seed must be an int; got '1'"):
        open_corpus(str(f), seed="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="text_field must be a non-empty string"):
        open_corpus(str(f), text_field="")


def test_take_validates_and_stops_early() -> None:
    calls = []

    def docs():  # an endless stream: take must not exhaust it
        i = 0
        while True:
            calls.append(i)
            yield f"doc {i}"
            i += 1

    corpus = Corpus("endless", docs)
    assert corpus.take(3) == ["doc 0", "doc 1", "doc 2"]
    assert len(calls) == 3
    assert corpus.take(0) == []
    with pytest.raises(ValueError, match="n must be an int >= 0; got -1"):
        corpus.take(-1)


def test_unknown_name_is_a_missing_path() -> None:
    with pytest.raises(FileNotFoundError, match="'wikipedia' is not a built-in name"):
        open_corpus("wikipedia")


def test_docstring_examples_hold() -> None:
    import doctest

    import polysemy.corpora.corpus as corpus_module

    assert doctest.testmod(corpus_module).failed == 0
