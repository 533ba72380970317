"""hf: corpora: spec parsing and the errors when `datasets` is missing or the hub is offline.

`datasets` is not installed in the default environment (it is the optional extra), so only
the error paths run here; the online path needs a network the tests never use.
"""

from __future__ import annotations

import sys
import types

import pytest

from polysemy.corpora import open_corpus
from polysemy.corpora.hub import parse_hub_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hf:wikitext", ("wikitext", None, "train")),
        ("hf:user/data:validation", ("user/data", None, "validation")),
        ("hf:wikitext:wikitext-2-raw-v1:test", ("wikitext", "wikitext-2-raw-v1", "test")),
    ],
)
def test_parse_hub_spec(spec: str, expected: tuple[str, str | None, str]) -> None:
    assert parse_hub_spec(spec) == expected


@pytest.mark.parametrize("spec", ["hf:", "hf:a::b", "hf:a:b:c:d"])
def test_bad_hub_spec(spec: str) -> None:
    with pytest.raises(ValueError, match="must look like hf:NAME"):
        open_corpus(spec)


def test_missing_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import datasets` raise ImportError whether or not it exists.
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ValueError, match=r"needs the optional `datasets` package: pip install"):
        open_corpus("hf:wikitext")


def test_offline_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for `datasets` failing to reach the hub, which is what it does offline.
    fake = types.ModuleType("datasets")

    def load_dataset(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'nope' on the Hub (LocalEntryNotFoundError)\nmore")

    fake.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"'hf:nope'.*offline.*Couldn't reach") as info:
        open_corpus("hf:nope")
    assert "\n" not in str(info.value)


def test_rows_errors_and_stream_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for a streamed dataset: the rows a real one yields, then a dropped connection.
    class Stream:
        def __init__(self, rows: list[dict[str, object]], fail: bool) -> None:
            self.rows, self.fail = rows, fail

        def __iter__(self):  # type: ignore[no-untyped-def]
            yield from self.rows
            if self.fail:
                raise ConnectionError("Connection reset by peer\ntraceback noise")

    streams = {
        "good": Stream(
            [{"text": "first doc"}, {"text": None}, {"text": " "}, {"text": "second"}], False
        ),
        "drop": Stream([{"text": "only one"}], True),
        "nocol": Stream([{"body": "x"}], False),
        "ints": Stream([{"text": 3}], False),
    }
    fake = types.ModuleType("datasets")
    calls: list[tuple[object, ...]] = []

    def load_dataset(name: str, config: str | None, *, split: str, streaming: bool) -> Stream:
        calls.append((name, config, split, streaming))
        return streams[name]

    fake.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    corpus = open_corpus("hf:good:validation")
    assert corpus.name == "hf(good:validation)"
    assert list(corpus) == ["first doc", "second"] == list(corpus)
    assert calls[0] == ("good", None, "validation", True)
    dropped = open_corpus("hf:drop")
    with pytest.raises(
        ValueError,
        match=r"reading Hugging Face dataset 'hf:drop' failed: Connection reset by peer$",
    ):
        list(dropped)
    with pytest.raises(ValueError, match=r"has no column 'text'; columns are \['body'\]"):
        open_corpus("hf:nocol")
    with pytest.raises(ValueError, match="must hold strings; got int"):
        open_corpus("hf:ints")
