"""The built-in `pydocs` corpus: English prose from the docs of Python and installed packages.

Always there, offline, and human-written: the docstrings of the standard library and of every
installed distribution, the Python reference topics that `help()` prints
(`pydoc_data/topics.py`), and each distribution's long description (its README, from
`METADATA`).

How documents are made:
- source files are parsed with `ast` (never imported: importing is slow and has side
  effects); module, class and function docstrings are taken in source order and cleaned with
  `inspect.cleandoc`;
- each text is split into blank-line blocks and blocks that are not prose are dropped:
  doctest and code blocks (indented or fenced), reST directives and underlines, tables,
  blocks with fewer than four words or too few letters, and non-English text;
- what remains must have at least eight words; exact repeats (after whitespace folding)
  are dropped, so a docstring inherited or vendored in ten places appears once.

Order is deterministic on a given machine: the standard library first in sorted path order
(test packages skipped), then installed distributions in sorted name order, each with its
description and then its modules in sorted path order. Documents stream lazily: a harvest
parses only the files its token budget needs. The corpus name records the
Python version, a fingerprint of the installed distributions and the version of these rules.

A pass that reads the whole corpus saves it in a cache file (`cache_dir()`, e.g.
`~/.cache/polysemy/pydocs-<key>.jsonl`, a JSON line per document); later passes read that
file, some 300x faster than parsing (benchmarks/RESULTS.md, "Corpora"). The key covers the
corpus name and the interpreter's paths, so a new package or Python gets a new file.
`POLYSEMY_CACHE=off` turns the cache off.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.metadata as metadata
import inspect
import json
import logging
import os
import platform
import re
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from polysemy.corpora.corpus import Corpus

logger = logging.getLogger(__name__)

MIN_WORDS = 8
"""A document needs at least this many words after cleaning."""
MIN_BLOCK_WORDS = 4
"""A blank-line block needs at least this many words to count as prose."""
MAX_FILE_BYTES = 4_000_000
"""Source files larger than this (generated tables) are skipped."""

_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "__pycache__", "test", "tests", "testing", "idle_test"}
)
_UNDERLINE = re.compile(r"^\s*([-=~^*+#`'\"])\1{2,}\s*$")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+\S")
_FENCE = re.compile(r"^\s*(```|~~~)")
_NOT_ASCII_LETTER = re.compile(r"[^A-Za-z]+")


VERSION = 1
"""Version of the extraction rules, part of the corpus name; bumped when documents change."""

CACHE_FORMAT = "polysemy.pydocs-cache/1"
"""Format string in the first line of a cache file."""


def cache_dir() -> Path | None:
    """Folder of the pydocs cache, or None when caching is off.

    `$POLYSEMY_CACHE` if set (`off`, `0` or empty turns caching off), else
    `$XDG_CACHE_HOME/polysemy`, else `~/.cache/polysemy`.
    """
    env = os.environ.get("POLYSEMY_CACHE")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "false", "no", "none"):
            return None
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "polysemy"


def pydocs_corpus(*, cache: bool = True) -> Corpus:
    """The `pydocs` corpus of this machine (see the module docstring).

    With `cache`, a pass that reads the whole corpus saves it (see `cached_stream`) and later
    passes stream that file instead of parsing sources again; the documents are the same.
    """
    dists = _distributions()
    fingerprint = hashlib.blake2b(
        "\n".join(f"{n}=={v}" for n, v, _ in dists).encode(), digest_size=4
    ).hexdigest()
    name = (
        f"pydocs(python={platform.python_version()}, packages={len(dists)}@{fingerprint}, "
        f"version={VERSION})"
    )
    folder = cache_dir() if cache else None
    path = None
    if folder is not None:
        # The name pins the documents; the interpreter's paths tell two venvs apart.
        where = f"{name}\n{sysconfig.get_paths()['stdlib']}\n{sysconfig.get_paths()['purelib']}"
        key = hashlib.blake2b(where.encode(), digest_size=8).hexdigest()
        path = folder / f"pydocs-{key}.jsonl"

    def parse() -> Iterator[str]:
        seen: set[bytes] = set()
        for text in _raw_texts(dists):
            doc = clean_prose(text)
            if doc is None:
                continue
            key = hashlib.blake2b(" ".join(doc.split()).encode(), digest_size=8).digest()
            if key in seen:
                continue
            seen.add(key)
            yield doc

    return Corpus(name, lambda: cached_stream(name, parse, path))


def cached_stream(
    name: str, produce: Callable[[], Iterator[str]], path: Path | None
) -> Iterator[str]:
    """Documents of `produce()`, read from the cache file `path` when a complete one exists.

    A pass that runs `produce()` to its end writes every document to a temporary file and
    renames it to `path`, so the cache is either complete or absent; a pass stopped early
    (a harvest that needed fewer tokens) leaves nothing. A cache written for another corpus
    name, or damaged, is ignored and rewritten. `path=None` turns caching off.
    """
    if path is not None:
        cached = _read_cache(path, name)
        if cached is not None:
            logger.debug("pydocs: reading cache %s", path)
            yield from cached
            return
    writer = _CacheWriter(path, name) if path is not None else None
    complete = False
    try:
        for doc in produce():
            if writer is not None:
                writer.write(doc)
            yield doc
        complete = True
    finally:
        if writer is not None:
            writer.finish(complete)


class _CacheWriter:
    """Writes a cache file through a temporary sibling; any OSError just stops caching."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.count = 0
        self.tmp: str | None = None
        self.fh: Any = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temps(path.parent)
            fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
            self.fh = os.fdopen(fd, "w", encoding="utf-8")
            self.fh.write(json.dumps({"format": CACHE_FORMAT, "corpus": name}) + "\n")
        except OSError as exc:
            logger.debug("pydocs: not caching (%s)", exc)
            self._drop()

    def write(self, doc: str) -> None:
        if self.fh is None:
            return
        try:
            self.fh.write(json.dumps(doc) + "\n")
            self.count += 1
        except OSError as exc:
            logger.debug("pydocs: cache write failed (%s)", exc)
            self._drop()

    def finish(self, complete: bool) -> None:
        if self.fh is None or self.tmp is None:
            return
        if not complete:
            self._drop()
            return
        try:
            self.fh.write(json.dumps({"documents": self.count}) + "\n")
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.tmp, self.path)
            logger.info("pydocs: cached %d documents in %s", self.count, self.path)
        except OSError as exc:
            logger.debug("pydocs: cache not saved (%s)", exc)
            self._drop()

    def _drop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self.fh.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
        self.fh = self.tmp = None


def _remove_stale_temps(folder: Path, max_age_s: float = 3600.0) -> None:
    """Delete temp files of killed passes (a live writer touches its file every moment)."""
    now = time.time()
    for tmp in folder.glob(".pydocs-*.tmp-*"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()


def _read_cache(path: Path, name: str) -> Iterator[str] | None:
    """A stream over a complete cache file for `name`, or None (missing, other, damaged)."""
    try:
        with open(path, "rb") as fh:
            header = json.loads(fh.readline())
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256))
            tail = fh.read().decode("utf-8", "replace").rstrip("\n").rsplit("\n", 1)[-1]
        count = json.loads(tail)["documents"]
    except (OSError, ValueError, KeyError, TypeError):
        if path.exists():
            logger.debug("pydocs: ignoring damaged cache %s", path)
        return None
    if header != {"format": CACHE_FORMAT, "corpus": name} or not isinstance(count, int):
        return None

    def stream() -> Iterator[str]:
        with open(path, encoding="utf-8") as fh:
            fh.readline()  # the header
            for i in range(count):
                try:
                    doc = json.loads(fh.readline())
                except ValueError:
                    doc = None
                if not isinstance(doc, str):
                    raise ValueError(
                        f"pydocs cache {str(path)!r} is damaged at document {i}; delete it"
                    )
                yield doc

    return stream()


def _distributions() -> list[tuple[str, str, metadata.Distribution]]:
    """Installed distributions as (normalized name, version, dist), sorted, first on path wins."""
    found: dict[str, tuple[str, str, metadata.Distribution]] = {}
    for dist in metadata.distributions():
        raw = dist.metadata["Name"] if dist.metadata else None
        if not raw:
            continue
        key = re.sub(r"[-_.]+", "-", raw).lower()
        found.setdefault(key, (key, dist.version or "", dist))
    return [found[k] for k in sorted(found)]


def _raw_texts(dists: list[tuple[str, str, metadata.Distribution]]) -> Iterator[str]:
    yield from _files_texts(stdlib_files())
    for name, _, dist in dists:
        description = _description(dist)
        if description:
            yield description
        yield from _files_texts(_distribution_files(name, dist))


def stdlib_files() -> list[Path]:
    """The standard library's `.py` files in sorted relative-path order, tests skipped."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        base = Path(folder)
        for f in files:
            if f.endswith(".py"):
                path = base / f
                found.append((path.relative_to(root).as_posix(), path))
    return [p for _, p in sorted(found)]


def _distribution_files(name: str, dist: metadata.Distribution) -> list[Path]:
    try:
        files = dist.files or []
    except Exception:  # a broken RECORD must not break the corpus
        logger.debug("pydocs: cannot list files of %s", name)
        return []
    out: list[tuple[str, Path]] = []
    for f in files:
        rel = f.as_posix()
        if not rel.endswith(".py") or rel.startswith(".."):
            continue
        if any(part in _SKIP_DIRS for part in f.parts[:-1]):
            continue
        out.append((rel, Path(str(dist.locate_file(f)))))
    return [p for _, p in sorted(out)]


def _description(dist: metadata.Distribution) -> str:
    meta: Any = dist.metadata  # an email.message.Message at run time
    if meta is None:
        return ""
    body = meta.get_payload() if hasattr(meta, "get_payload") else None
    if isinstance(body, str) and body.strip():
        return body
    return str(meta["Description"] or "")


def _files_texts(paths: Iterable[Path]) -> Iterator[str]:
    for path in paths:
        yield from file_docstrings(path)


def file_docstrings(path: Path) -> list[str]:
    """Cleaned docstrings of one source file in source order ([] if it cannot be parsed).

    `pydoc_data/topics.py` is special: its `topics` dict holds the Python reference manual's
    topic texts, one paragraph block per topic.
    """
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return []
        source = path.read_bytes()
        with warnings.catch_warnings():
            # Third-party sources trigger "invalid escape sequence" and similar warnings
            # when compiled; they say nothing about the docstrings, so keep stderr quiet.
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=str(path))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        logger.debug("pydocs: skipping %s (%s)", path, type(exc).__name__)
        return []
    out: list[str] = []
    if path.name == "topics.py" and path.parent.name == "pydoc_data":
        out.extend(_topic_texts(tree))
    _collect(tree, out)
    return out


def _collect(node: ast.AST, out: list[str]) -> None:
    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            out.append(doc)
        for child in node.body:
            # Docstrings live only at these levels; skipping other statements keeps it quick.
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                _collect(child, out)
            elif isinstance(child, ast.If | ast.Try):
                for sub in ast.iter_child_nodes(child):
                    if isinstance(sub, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                        _collect(sub, out)


def _topic_texts(tree: ast.Module) -> list[str]:
    out: list[str] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Dict):
            for value in stmt.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    # Each topic is a chapter; its paragraphs make separate documents.
                    out.extend(_split_sections(inspect.cleandoc(value.value)))
    return out


def _split_sections(text: str, max_chars: int = 4000) -> list[str]:
    """Cut a long text at blank lines into chunks of about `max_chars`."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for block in re.split(r"\n\s*\n", text):
        current.append(block)
        size += len(block)
        if size >= max_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def _strip_markdown_code(text: str) -> str:
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return "\n".join(lines)


def clean_prose(text: str) -> str | None:
    """The prose blocks of `text` joined by blank lines, or None when too little is prose."""
    kept: list[str] = []
    for block in re.split(r"\n\s*\n", _strip_markdown_code(text).strip()):
        prose = _prose_block(block)
        if prose is not None:
            kept.append(prose)
    if not kept:
        return None
    doc = "\n\n".join(kept)
    if len(doc.split()) < MIN_WORDS:
        return None
    return doc


def _prose_block(block: str) -> str | None:
    lines = [line.rstrip() for line in block.splitlines() if line.strip()]
    if not lines:
        return None
    first = lines[0]
    if first.startswith(("    ", "\t")):  # an indented literal / code block
        return None
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith((">>>", "... ", "$ ", "|", "+--", "[![", "<")):
            return None
        if _DIRECTIVE.match(line):
            return None
    lines = [line for line in lines if not _UNDERLINE.match(line)]
    if not lines:
        return None
    body = "\n".join(lines)
    words = body.split()
    if len(words) < MIN_BLOCK_WORDS:
        return None
    # Counted with C-level helpers: this filter sees every character of the corpus.
    letters = sum(map(str.isalpha, body))
    if letters < 0.7 * len("".join(words)):
        return None  # mostly symbols, digits or code
    if len(_NOT_ASCII_LETTER.sub("", body)) < 0.95 * letters:
        return None  # not English
    # Code that slipped through: many lines ending in code punctuation.
    codey = sum(line.rstrip().endswith(("{", "}", ");", ")", ":", ",")) for line in lines)
    if len(lines) >= 3 and codey > 0.6 * len(lines):
        return None
    return body
