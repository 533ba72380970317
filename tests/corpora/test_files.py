"""Local file corpora: .txt blocks, .jsonl, .parquet, folders, globs and every error path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polysemy.corpora import open_corpus
from polysemy.corpora.files import resolve_files


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def test_txt_blank_line_blocks_are_documents(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.txt", "\ufeffFirst line\nsame doc\n\n\n  \nSecond doc.\r\n\r\nThird\n")
    docs = list(open_corpus(str(f)))
    assert docs == ["First line\nsame doc", "Second doc.", "Third"]


def test_jsonl_text_field_skips_blank_and_null(tmp_path: Path) -> None:
    rows = [{"text": "alpha"}, {"text": "  "}, {"text": None}, {"text": "beta", "id": 3}]
    f = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert list(open_corpus(str(f))) == ["alpha", "beta"]
    g = _write(tmp_path / "e.jsonl", json.dumps({"body": "gamma"}) + "\n")
    assert list(open_corpus(str(g), text_field="body")) == ["gamma"]


def test_parquet_streams_row_groups_in_order(tmp_path: Path) -> None:
    texts = [f"document number {i}" for i in range(25)] + [None, ""]
    table = pa.table({"text": texts, "n": list(range(27))})
    f = tmp_path / "p.parquet"
    pq.write_table(table, f, row_group_size=4)
    assert pq.ParquetFile(f).num_row_groups > 1
    assert list(open_corpus(str(f))) == texts[:25]


def test_folder_is_recursive_sorted_and_reiterable(tmp_path: Path) -> None:
    _write(tmp_path / "b" / "z.txt", "from b/z")
    _write(tmp_path / "a.jsonl", json.dumps({"text": "from a"}))
    _write(tmp_path / "b" / "c.txt", "from b/c\n\nsecond of b/c")
    _write(tmp_path / "notes.md", "ignored")
    corpus = open_corpus(str(tmp_path))
    expected = ["from a", "from b/c", "second of b/c", "from b/z"]
    assert list(corpus) == expected
    assert list(corpus) == expected  # a fresh pass yields the same documents
    assert corpus.take(2) == expected[:2]
    assert str(tmp_path) in corpus.name


def test_glob_matches_any_depth(tmp_path: Path) -> None:
    _write(tmp_path / "x" / "y" / "deep.txt", "deep")
    _write(tmp_path / "top.txt", "top")
    _write(tmp_path / "skip.jsonl", json.dumps({"text": "not a txt"}))
    # sorted full paths: "top.txt" sorts before "x/y/deep.txt"
    assert list(open_corpus(str(tmp_path / "**" / "*.txt"))) == ["top", "deep"]
    paths = resolve_files(str(tmp_path / "**" / "*.txt"))
    assert paths == sorted(paths)


def test_non_utf8_names_file_and_byte_offset(tmp_path: Path) -> None:
    f = _write(tmp_path / "bad.txt", b"good line\n\nok \xff here\n")
    corpus = open_corpus(str(f))  # the first document is fine, so opening succeeds
    with pytest.raises(ValueError, match=r"bad\.txt.*not UTF-8.*0xff.*byte offset 14 \(line 3\)"):
        list(corpus)


def test_non_utf8_first_document_fails_at_open(tmp_path: Path) -> None:
    f = _write(tmp_path / "latin1.jsonl", '{"text": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.jsonl.*not UTF-8.*byte offset 13"):
        open_corpus(str(f))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "\n\n  \n", "is empty"),
        ("blank.jsonl", '{"text": " "}\n', "is empty"),
        ("broken.jsonl", "{not json\n", "line 1 is not valid JSON"),
        ("nofield.jsonl", '{"body": "x"}\n', "must be a JSON object with a 'text' field"),
        ("list.jsonl", "[1, 2]\n", "must be a JSON object"),
        ("number.jsonl", '{"text": 5}\n', "must be a string; got int"),
        ("data.csv", "text\nhello\n", r"must end in \.txt"),
        ("fake.parquet", "not parquet at all", "not a readable parquet file"),
    ],
)
def test_bad_files_raise_one_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    f = _write(tmp_path / name, content)
    with pytest.raises(ValueError, match=message) as info:
        open_corpus(str(f))
    assert "\n" not in str(info.value)


def test_parquet_column_errors(tmp_path: Path) -> None:
    f = tmp_path / "n.parquet"
    pq.write_table(pa.table({"body": ["a"]}), f)
    with pytest.raises(ValueError, match=r"no column 'text'; columns are \['body'\]"):
        open_corpus(str(f))
    g = tmp_path / "i.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), g)
    with pytest.raises(ValueError, match="must hold strings"):
        open_corpus(str(g))


def test_missing_paths_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a built-in name"):
        open_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        open_corpus(str(tmp_path / "*.txt"))
    (tmp_path / "only.md").write_text("x")
    with pytest.raises(
        ValueError, match=r"holds no \.txt/\.jsonl/\.parquet/\.txt\.gz/\.jsonl\.gz files"
    ):
        open_corpus(str(tmp_path))
    with pytest.raises(ValueError, match=r"matches no \.txt/\.jsonl/.* file \(1 other paths\)"):
        open_corpus(str(tmp_path / "*.md"))


def test_gzip_files_stream_like_plain_ones(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt.gz", gzip.compress(b"one\n\ntwo\n"))
    _write(tmp_path / "b.jsonl.gz", gzip.compress(b'{"text": "three"}\n'))
    assert list(open_corpus(str(tmp_path))) == ["one", "two", "three"]
    bad = _write(tmp_path / "bad" / "c.txt.gz", gzip.compress(b"fine\n\nnot \xff utf8\n"))
    with pytest.raises(ValueError, match=r"c\.txt\.gz.*not UTF-8.*byte offset 10"):
        list(open_corpus(str(bad)))
    truncated = _write(tmp_path / "t" / "d.jsonl.gz", gzip.compress(b'{"text": "x"}\n' * 500)[:60])
    with pytest.raises(ValueError, match=r"d\.jsonl\.gz.*cannot be read"):
        list(open_corpus(str(truncated)))


def test_hidden_files_skipped_and_globbed_folders_searched(tmp_path: Path) -> None:
    _write(tmp_path / "data" / "a.txt", "visible")
    _write(tmp_path / "data" / ".git" / "x.txt", "hidden folder")
    _write(tmp_path / "data" / ".b.txt", "hidden file")
    _write(tmp_path / "data" / "sub" / "c.txt", "nested")
    assert list(open_corpus(str(tmp_path / "data"))) == ["visible", "nested"]
    # A glob that matches a folder reads it like a folder; a file matched twice is read once.
    spec = str(tmp_path / "d*")
    assert list(open_corpus(spec)) == ["visible", "nested"]
    assert list(open_corpus(str(tmp_path / "data" / "**"))) == ["visible", "nested"]
