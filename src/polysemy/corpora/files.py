"""Local text files as a corpus: `.txt`, `.jsonl`, `.parquet`, folders and globs.

Rules (one per format, so every document has one obvious index):
- `.txt`: one document per block of lines separated by one or more blank lines; line
  breaks inside a block are kept. A file without blank lines is one document.
- `.jsonl`: one JSON object per non-blank line; the document is its `text` field.
- `.parquet`: the `text` column, streamed one row group at a time; nulls are skipped.
- a folder is searched recursively for these suffixes; a glob (`data/**/*.txt`) is expanded
  with `**` meaning any depth, and a folder it matches is searched like a folder. Files are
  read in sorted order of their path.
`.txt.gz` and `.jsonl.gz` are read the same way, decompressed as a stream (byte offsets in
errors then count decompressed bytes). Hidden files and folders (`.git`, ...) inside a folder
are skipped. Documents that are empty or only whitespace are skipped everywhere. Files are read as
UTF-8 (a leading byte-order mark is dropped); anything else is an error naming the file and
the byte offset of the first bad byte.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from polysemy.corpora.corpus import Corpus

logger = logging.getLogger(__name__)

SUFFIXES = (".txt", ".jsonl", ".parquet", ".txt.gz", ".jsonl.gz")
"""File suffixes a local corpus may hold (`.gz`: gzip-compressed, streamed)."""

_BOM = b"\xef\xbb\xbf"


def files_corpus(spec: str, *, text_field: str = "text") -> Corpus:
    """A corpus over the files that `spec` (a file, folder or glob) names."""
    paths = resolve_files(spec)
    name = f"files({spec})" if len(paths) != 1 else f"file({paths[0]})"

    def documents() -> Iterator[str]:
        for path in paths:
            yield from read_documents(path, text_field=text_field)

    logger.debug("corpus %s: %d files", spec, len(paths))
    return Corpus(name, documents)


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def _folder_files(folder: Path) -> list[Path]:
    """Corpus files under `folder`, recursively, sorted by relative path; hidden ones skipped."""
    found: list[tuple[str, Path]] = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue  # .git, .ipynb_checkpoints, editor backups: never corpus text
        if _suffix(p) and p.is_file():
            found.append((rel.as_posix(), p))
    return [p for _, p in sorted(found)]


def resolve_files(spec: str) -> list[Path]:
    """The files `spec` names, in the deterministic order they are read."""
    kinds = "/".join(SUFFIXES)
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        _check_suffix(path)
        return [path]
    if path.is_dir():
        found = _folder_files(path)
        if not found:
            raise ValueError(f"corpus folder {spec!r} holds no {kinds} files")
        return found
    if glob.has_magic(spec):
        matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
        if not matches:
            raise FileNotFoundError(f"corpus glob {spec!r} matches no file")
        found = []
        for m in map(Path, matches):
            if m.is_dir():
                found.extend(_folder_files(m))  # a matched folder is searched like a folder
            elif _suffix(m):
                found.append(m)
        # A file matched directly and through its folder is read once, at its first place.
        found = list(dict.fromkeys(found))
        if not found:
            raise ValueError(
                f"corpus glob {spec!r} matches no {kinds} file ({len(matches)} other paths)"
            )
        return found
    raise FileNotFoundError(
        f"corpus {spec!r} is not a built-in name (pydocs, concepts), an hf:NAME dataset, "
        "or an existing file, folder or glob"
    )


def _check_suffix(path: Path) -> str:
    suffix = _suffix(path)
    if suffix is None:
        raise ValueError(
            f"corpus file {str(path)!r} must end in {', '.join(SUFFIXES)}; "
            f"got {''.join(path.suffixes) or 'no suffix'!r}"
        )
    return suffix


def read_documents(path: Path, *, text_field: str = "text") -> Iterator[str]:
    """Documents of one file, by the rule of its suffix (see the module docstring)."""
    suffix = _check_suffix(path)
    if suffix.startswith(".txt"):
        return _read_txt(path)
    if suffix.startswith(".jsonl"):
        return _read_jsonl(path, text_field)
    return _read_parquet(path, text_field)


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile is an IO[bytes]
    return open(path, "rb")


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its line break), streamed.

    Decoding line by line in binary keeps the exact byte offset for error messages; a
    newline byte never occurs inside a multi-byte UTF-8 sequence, so splitting is safe.
    """
    offset = 0
    with _open_binary(path) as fh:
        for number, raw in enumerate(_checked_lines(fh, path), start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
                offset += len(_BOM)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                raise ValueError(
                    f"corpus file {str(path)!r} is not UTF-8: byte 0x{raw[exc.start]:02x} at "
                    f"byte offset {bad} (line {number})"
                ) from None
            offset += len(raw)
            yield number, line.rstrip("\r\n")


def _checked_lines(fh: IO[bytes], path: Path) -> Iterator[bytes]:
    # A damaged or truncated .gz shows up only while reading: name the file in one line.
    try:
        yield from fh
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"corpus file {str(path)!r} cannot be read: {exc}") from None


def _read_txt(path: Path) -> Iterator[str]:
    block: list[str] = []
    for _, line in _utf8_lines(path):
        if line.strip():
            block.append(line.rstrip())
        elif block:
            yield "\n".join(block).strip()
            block = []
    if block:
        yield "\n".join(block).strip()


def _read_jsonl(path: Path, text_field: str) -> Iterator[str]:
    for number, line in _utf8_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"corpus file {str(path)!r} line {number} is not valid JSON: {exc.msg}"
            ) from None
        if not isinstance(record, dict) or text_field not in record:
            got = sorted(record)[:8] if isinstance(record, dict) else type(record).__name__
            raise ValueError(
                f"corpus file {str(path)!r} line {number} must be a JSON object with a "
                f"{text_field!r} field; got {got}"
            )
        text = record[text_field]
        if text is None:
            continue
        if not isinstance(text, str):
            raise ValueError(
                f"corpus file {str(path)!r} line {number}: field {text_field!r} must be a "
                f"string; got {type(text).__name__}"
            )
        if text.strip():
            yield text


def _read_parquet(path: Path, text_field: str) -> Iterator[str]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            f"reading {str(path)!r} needs pyarrow: pip install 'polysemy[hf]'"
        ) from None
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(
            f"corpus file {str(path)!r} is not a readable parquet file: {exc}"
        ) from None
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise ValueError(
            f"corpus file {str(path)!r} has no column {text_field!r}; columns are {names}"
        )
    kind = parquet.schema_arrow.field(text_field).type
    if not (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    ):
        raise ValueError(
            f"corpus file {str(path)!r}: column {text_field!r} must hold strings; got {kind}"
        )
    # One row group at a time keeps memory bounded by the largest row group.
    for group in range(parquet.num_row_groups):
        try:
            column = parquet.read_row_group(group, columns=[text_field]).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(
                f"corpus file {str(path)!r}: cannot read row group {group}: {exc}"
            ) from None
        for text in column.to_pylist():
            if text is not None and text.strip():
                yield text
