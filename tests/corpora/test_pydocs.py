"""The pydocs corpus: real prose, deterministic, deduplicated, parsed without importing."""

from __future__ import annotations

import platform
from pathlib import Path

from polysemy.corpora import open_corpus
from polysemy.corpora.pydocs import clean_prose, file_docstrings, stdlib_files


def test_name_records_python_and_packages() -> None:
    corpus = open_corpus("pydocs")
    assert corpus.name.startswith(f"pydocs(python={platform.python_version()}, packages=")


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
