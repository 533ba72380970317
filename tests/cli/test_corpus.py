"""`polysemy corpus show|stats|concepts`, in-process and through a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polysemy.cli import main
from polysemy.corpora import generate_concepts


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object on stdout
    return json.loads(out)


def test_show_prints_first_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "a.txt"
    f.write_text("one\n\ntwo\n\nthree\n")
    assert main(["corpus", "show", str(f), "--n", "2", "--json"]) == 0
    result = _json(capsys)
    assert result["documents"] == ["one", "two"]
    assert str(f) in result["corpus"]
    assert main(["corpus", "show", "concepts:heldout", "--n", "1", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert generate_concepts(1, seed=3, split="heldout", twins=False)[0].text in out


def test_stats_counts_and_checks_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "hello big world"}\n{"text": "again"}\n')
    (tmp_path / "b.txt").write_text("last one\n")
    assert main(["corpus", "stats", str(tmp_path), "--json"]) == 0
    result = _json(capsys)
    assert (result["documents"], result["words"], result["chars"]) == (3, 6, 15 + 5 + 8)
    assert result["complete"] is True
    assert main(["corpus", "stats", str(tmp_path), "--limit", "1", "--json"]) == 0
    assert _json(capsys)["complete"] is False
    # A bad byte after the first document is found by stats (one line, exit 2).
    (tmp_path / "c.txt").write_bytes(b"fine\n\nbroken \xc3\x28\n")
    assert main(["corpus", "stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "c.txt" in err and "not UTF-8" in err and "byte offset 13" in err


def test_concepts_export_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.jsonl"
    args = ["corpus", "concepts", "--n", "5", "--seed", "2", "--split", "heldout"]
    assert main([*args, "--out", str(out), "--json"]) == 0
    result = _json(capsys)
    assert result["sentences"] == 5
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = generate_concepts(5, seed=2, split="heldout")
    assert [r["text"] for r in records] == [s.text for s in expected]
    assert sum(len(r["twins"]) for r in records) == result["twins"] > 5
    # Refuses to overwrite without --force, and writes nothing on a bad --out.
    assert main([*args, "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--force", "--no-twins"]) == 0
    assert all(json.loads(x)["twins"] == [] for x in out.read_text().splitlines())
    assert main([*args, "--out", str(tmp_path / "c.json")]) == 2
    assert "--out must be a path ending in .jsonl" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()
    folder = tmp_path / "d.jsonl"
    folder.mkdir()
    assert main([*args, "--out", str(folder), "--force"]) == 2
    assert "is a folder; expected a .jsonl file" in capsys.readouterr().err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["corpus", "show", "no/such/file.txt"], "not a built-in name"),
        (["corpus", "show", "concepts:nope"], "concepts[:train|heldout][:N]"),
        (["corpus", "show", "pydocs", "--n", "0"], "expected an int >= 1"),
        (["corpus", "concepts", "--n", "3"], "--out"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors exit directly
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_subprocess_json_keeps_stdout_clean(tmp_path: Path) -> None:
    f = tmp_path / "d.txt"
    f.write_text("alpha beta\n")
    proc = subprocess.run(
        [sys.executable, "-m", "polysemy", "corpus", "stats", str(f), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["words"] == 2
