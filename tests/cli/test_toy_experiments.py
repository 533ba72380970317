"""Tests for `polysemy toy phase` and `polysemy toy reproduce` (tiny, seeded runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polysemy.cli import main
from polysemy.toy.result import load_toy_run


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_phase_json_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "phase"
    threads = torch.get_num_threads()
    code = main(
        ["toy", "phase", "--n-features", "2", "--n-hidden", "1", "--grid", "3", "--steps", "300",
         "--best-of", "2", "--out", str(out), "--json"]
    )  # fmt: skip
    assert code == 0
    assert torch.get_num_threads() == threads  # --threads is restored for in-process callers
    obj = json.loads(capsys.readouterr().out)
    assert obj["cells"] == 9 and 0 <= obj["agreement_away_from_boundary"] <= 1
    assert (out / "phase.png").stat().st_size > 2000
    phase = json.loads((out / "phase.json").read_text())
    assert phase["format"] == "polysemy.toy-phase/1"
    assert len(phase["numbers"]["empirical"]) == 3
    run = load_toy_run(out)
    assert run.W.shape == (9, 1, 2) and run.config.best_of == 2
    # cell (i_p, i_r) has importance (1, r_i) and sparsity 1 - p_i
    r = phase["numbers"]["relative_importance"]
    assert run.config.importance[1] == pytest.approx((1.0, r[1]))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--n-features", "4", "--n-hidden", "2"], "--n-features must be 2 with n_hidden=1"),
        (["--density", "0.5,1.5"], "--density must be a list of numbers in (0, 1]"),
        (["--relative-importance=-1,2"], "--relative-importance must be a list of numbers > 0"),
        (["--density", "a,b"], "expected a number"),
        (["--grid", "0"], "--grid must be an int >= 1"),
        (["--device", "nonsense"], "--device must be a torch device like cpu or cuda"),
        pytest.param(
            ["--device", "cuda:0"],
            "asked for CUDA, but no CUDA device is available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"),
        ),
    ],
)
def test_phase_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    out = tmp_path / "p"
    try:
        code = main(["toy", "phase", "--steps", "5", "--out", str(out), *argv])
    except SystemExit as exc:  # argparse type errors exit from the parser
        code = int(exc.code or 0)
    err = _one_line_error(capsys, code)
    assert needle in err
    assert not out.exists()


def test_phase_refuses_foreign_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = main(["toy", "phase", "--steps", "5", "--grid", "2", "--out", str(out)])
    assert "--force" in _one_line_error(capsys, code)
    assert (out / "notes.txt").read_text() == "mine"


def test_reproduce_tiny_writes_page_summary_and_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "paper"
    argv = ["toy", "reproduce", "--only", "correlation,pentagon", "--fast", "--steps", "200",
            "--jobs", "1", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj["experiments"]) == {"correlation", "pentagon"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "polysemy.toy-report/1"
    assert summary["checks_total"] == obj["checks_total"] == 6
    page = (out / "index.html").read_text()
    for fig in ("pentagon.png", "correlation.png"):
        assert f'src="{fig}"' in page and (out / fig).stat().st_size > 2000
    assert "pair cosines" in page
    run = load_toy_run(out / "runs" / "pentagon")
    assert run.W.shape == (8, 2, 5)
    assert load_toy_run(out / "runs" / "correlation-anticorrelated").config.feature_kind == (
        "anticorrelated"
    )
    # re-running into the same kind of folder is allowed without --force
    assert main([*argv[:-1], "--jobs", "1"]) == 0


def test_reproduce_list_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["toy", "reproduce", "--list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["experiments"]
    assert "geometry" in listing and "phase-3-2" in listing
    out = tmp_path / "x"
    code = main(["toy", "reproduce", "--only", "pentagon,nope", "--out", str(out)])
    assert "--only must be a list of names from" in _one_line_error(capsys, code)
    code = main(["toy", "reproduce"])
    assert "--out is required" in _one_line_error(capsys, code)
    assert not out.exists()


def test_reproduce_help_via_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "polysemy", "toy", "reproduce", "--help"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "--only" in proc.stdout and "--jobs" in proc.stdout
