"""`polysemy report`: JSON on stdout, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

from polysemy.cli import main


def test_report_command_prints_json(run_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    code = main(["report", str(run_folder / "analyses" / "neurons-mlp"), "--out", str(out),
                 "--chorus-cards", "2", "--json"])  # fmt: skip
    assert code == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["out"] == str(out) and obj["interactive"] is True
    assert obj["chorus_cards"] == 2 and obj["charts"] == 1
    assert (out / "index.html").is_file()


def test_not_a_run_folder_exits_2(tmp_path: Path, capsys) -> None:
    code = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: path must be a run folder") and err.count("\n") == 1
    assert not (tmp_path / "report").exists()


def test_bad_config_flag_exits_2(run_folder: Path, tmp_path: Path, capsys) -> None:
    code = main(["report", str(run_folder), "--out", str(tmp_path / "r"), "--voices", "0"])
    assert code == 2
    assert "--voices" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
