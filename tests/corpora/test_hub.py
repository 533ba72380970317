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
