import subprocess
import sys

import pytest

from polysemy.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "commands" in capsys.readouterr().out


def test_unknown_command_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_python_dash_m_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "polysemy", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "polysemy" in proc.stdout
