"""The pydocs corpus: real prose, deterministic, deduplicated, parsed without importing."""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from pathlib import Path

import pytest

from polysemy.corpora import open_corpus
from polysemy.corpora.pydocs import (
    cache_dir,
    cached_stream,
    clean_prose,
    file_docstrings,
    pydocs_corpus,
    stdlib_files,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("POLYSEMY_CACHE", str(folder))
    return folder


def test_name_records_python_and_packages() -> None:
    corpus = open_corpus("pydocs")
    assert corpus.name.startswith(f"pydocs(python={platform.python_version()}, packages=")
    assert corpus.name.endswith(", version=1)")


def test_first_documents_are_deterministic_prose_without_repeats() -> None:
    corpus = open_corpus("pydocs", seed=123)
    first = corpus.take(300)
    assert len(first) == 300
    assert first == open_corpus("pydocs").take(300)  # same order, any seed, every pass
    assert len({" ".join(d.split()) for d in first}) == 300
    for doc in first:
        assert len(doc.split()) >= 8
        assert ">>>" not in doc
        assert sum(c.isalpha() for c in doc) > 0.6 * len(doc.replace(" ", ""))
    # The standard library comes first, in sorted path order: __future__ sorts first.
    assert "__future__" in str(stdlib_files()[0])
    assert any("feature" in d.lower() for d in first[:3])


def test_docstrings_in_source_order_without_importing(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text(
        '"""Module docstring that explains what this little module is really about."""\n'
        "raise SystemExit('importing this file would exit')\n"
        "class Thing:\n"
        '    """A thing holds a value and explains at length how it holds it."""\n'
        "    def get(self):\n"
        '        """Return the value that this thing holds, unchanged and whole."""\n'
        "if True:\n"
        "    def helper():\n"
        '        """Helper defined under a condition, still documented for readers."""\n'
    )
    docs = file_docstrings(src)
    assert [d.split()[0] for d in docs] == ["Module", "A", "Return", "Helper"]
    bad = tmp_path / "py2.py"
    bad.write_text("print 'python 2'\n")
    assert file_docstrings(bad) == []
    noisy = tmp_path / "noisy.py"
    noisy.write_text('"""A module whose code has an invalid escape, which warns."""\nx = "\\d"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping file_docstrings fails the test
        assert len(file_docstrings(noisy)) == 1


def test_clean_prose_drops_code_and_keeps_sentences() -> None:
    text = (
        "Compute the running mean of a sequence of numbers quickly.\n\n"
        "Parameters\n----------\n\n"
        ">>> running_mean([1, 2, 3])\n[1.0, 1.5, 2.0]\n\n"
        "    x = compute(y)  # an indented literal block\n\n"
        ".. note:: directives are markup, not prose at all here\n\n"
        "The result has the same length as the input sequence given."
    )
    cleaned = clean_prose(text)
    assert cleaned == (
        "Compute the running mean of a sequence of numbers quickly.\n\n"
        "The result has the same length as the input sequence given."
    )
    assert clean_prose("Short one.") is None
    assert clean_prose("x = {1: [2, 3], 4: (5, 6)}; y = f(x) + g(x) * 2 - 7 / 8 ** 9") is None
    assert clean_prose("Это описание функции на другом языке, а не на английском языке.") is None


def test_same_documents_in_a_fresh_process_with_another_hash_seed() -> None:
    # Guards against order that leaks from set/dict iteration or str hashing.
    import hashlib
    import os
    import subprocess
    import sys

    code = (
        "import hashlib; from polysemy.corpora import open_corpus;"
        "print(hashlib.sha256('\\x00'.join(open_corpus('pydocs').take(200)).encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    here = hashlib.sha256("\x00".join(open_corpus("pydocs").take(200)).encode()).hexdigest()
    assert proc.stdout.strip() == here


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POLYSEMY_CACHE", "off")
    assert cache_dir() is None
    monkeypatch.delenv("POLYSEMY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "polysemy"


def test_partial_pydocs_pass_leaves_no_cache(_private_cache: Path) -> None:
    corpus = pydocs_corpus()
    first = corpus.take(50)
    assert first == pydocs_corpus(cache=False).take(50)
    leftovers = list(_private_cache.iterdir()) if _private_cache.exists() else []
    assert leftovers == []  # a stopped pass must not leave a partial cache or a temp file


def _producer(docs: list[str], calls: list[int]):  # type: ignore[no-untyped-def]
    def produce():  # type: ignore[no-untyped-def]
        calls.append(1)
        yield from docs

    return produce


def test_cached_stream_complete_pass_is_reused(tmp_path: Path) -> None:
    docs = ["first doc", 'second "quoted"\nwith a line break', "third \u00e9"]
    calls: list[int] = []
    path = tmp_path / "c" / "pydocs-x.jsonl"
    produce = _producer(docs, calls)
    assert list(cached_stream("name-a", produce, path)) == docs
    assert path.is_file() and len(calls) == 1
    assert list(cached_stream("name-a", produce, path)) == docs
    assert len(calls) == 1  # the second pass read the file
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"format": "polysemy.pydocs-cache/1", "corpus": "name-a"}
    assert json.loads(lines[-1]) == {"documents": 3}
    # Another corpus name (new packages, new rules) ignores the file and rewrites it.
    assert list(cached_stream("name-b", produce, path)) == docs
    assert len(calls) == 2
    assert json.loads(path.read_text().splitlines()[0])["corpus"] == "name-b"


def test_cached_stream_partial_damaged_and_unwritable(tmp_path: Path) -> None:
    docs = [f"doc {i}" for i in range(10)]
    calls: list[int] = []
    produce = _producer(docs, calls)
    path = tmp_path / "p.jsonl"
    stream = cached_stream("n", produce, path)
    assert [next(stream) for _ in range(3)] == docs[:3]
    stream.close()  # stopped early: nothing kept
    assert list(tmp_path.iterdir()) == []
    list(cached_stream("n", produce, path))
    # A temp file left by a killed pass is removed once it is old; a fresh one is kept.
    stale, live = tmp_path / ".pydocs-a.jsonl.tmp-1", tmp_path / ".pydocs-b.jsonl.tmp-2"
    stale.write_text("x")
    live.write_text("y")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    list(cached_stream("n", produce, tmp_path / "pydocs-c.jsonl"))
    assert not stale.exists() and live.exists()
    live.unlink()
    # A file cut short (no trailer) is ignored and rewritten from the source.
    path.write_text(path.read_text().rsplit("\n", 2)[0] + "\n")
    assert list(cached_stream("n", produce, path)) == docs
    assert len(calls) == 4
    # Header and trailer intact but a document damaged: a one-line error that says what to do.
    lines = path.read_text().splitlines()
    lines[4] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"damaged at document 3; delete it"):
        list(cached_stream("n", produce, path))
    # A cache folder that cannot be created does not stop the documents.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert list(cached_stream("n", produce, blocker / "sub" / "c.jsonl")) == docs
    assert list(cached_stream("n", produce, None)) == docs


@pytest.mark.slow
def test_full_pass_cached_equals_parsed(_private_cache: Path) -> None:
    parsed = list(pydocs_corpus(cache=False))
    first = list(pydocs_corpus())  # parses and writes the cache
    assert first == parsed
    assert len(list(_private_cache.glob("pydocs-*.jsonl"))) == 1
    assert list(pydocs_corpus()) == parsed  # read back from the cache
