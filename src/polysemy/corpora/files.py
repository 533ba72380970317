"""Local text files as a corpus: `.txt`, `.jsonl`, `.parquet`, folders and globs.

Rules (one per format, so every document has one obvious index):
- `.txt`: one document per block of lines separated by one or more blank lines; line
  breaks inside a block are kept. A file without blank lines is one document.
- `.jsonl`: one JSON object per non-blank line; the document is its `text` field.
- `.parquet`: the `text` column, streamed one row group at a time; nulls are skipped.
- a folder is searched recursively for these suffixes; a glob (`data/**/*.txt`) is expanded
  with `**` meaning any depth. Files are read in sorted order of their path.
Documents that are empty or only whitespace are skipped everywhere. Files are read as
UTF-8 (a leading byte-order mark is dropped); anything else is an error naming the file and
the byte offset of the first bad byte.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from polysemy.corpora.corpus import Corpus

logger = logging.getLogger(__name__)

SUFFIXES = (".txt", ".jsonl", ".parquet")
"""File suffixes a local corpus may hold."""

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


def resolve_files(spec: str) -> list[Path]:
    """The files `spec` names, in the deterministic order they are read."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        _check_suffix(path)
        return [path]
    if path.is_dir():
        found = sorted(
            (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        if not found:
            raise ValueError(f"corpus folder {spec!r} holds no {'/'.join(SUFFIXES)} files")
        return found
    if glob.has_magic(spec):
        matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
        if not matches:
            raise FileNotFoundError(f"corpus glob {spec!r} matches no file")
        found = [Path(m) for m in matches if Path(m).is_file()]
        found = [p for p in found if p.suffix.lower() in SUFFIXES]
        if not found:
            raise ValueError(
                f"corpus glob {spec!r} matches no {'/'.join(SUFFIXES)} file "
                f"({len(matches)} other paths)"
            )
        return found
    raise FileNotFoundError(
        f"corpus {spec!r} is not a built-in name (pydocs, concepts), an hf:NAME dataset, "
        "or an existing file, folder or glob"
    )


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(
            f"corpus file {str(path)!r} must end in {', '.join(SUFFIXES)}; "
            f"got {path.suffix or 'no suffix'!r}"
        )


def read_documents(path: Path, *, text_field: str = "text") -> Iterator[str]:
    """Documents of one file, by the rule of its suffix (see the module docstring)."""
    _check_suffix(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _read_txt(path)
    if suffix == ".jsonl":
        return _read_jsonl(path, text_field)
    return _read_parquet(path, text_field)


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its line break), streamed.

    Decoding line by line in binary keeps the exact byte offset for error messages; a
    newline byte never occurs inside a multi-byte UTF-8 sequence, so splitting is safe.
    """
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
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
