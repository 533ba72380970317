"""benchmarks/gpu_check.sh refuses at once where no CUDA GPU is visible (its GPU path cannot
run in CI; docs/scale.md says what was run where)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_refuses_without_cuda(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines() == [
        "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing was run"
    ]
    assert done.stdout == ""
    assert not work.exists(), "nothing is written"
