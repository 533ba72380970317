"""Circuits and braids end to end on real models: benchmarks/circuits_minilm.py (bundled
MiniLM) and benchmarks/circuits_organism.py (a 2-layer organism trained on the spot), each
run as a script with tiny settings: harvest, two trained TopK SAEs, `analyze_circuits` on
held-out contexts, the printed table. Slow (15 s for both at light load, a minute under
load): the planted calibration lives in test_circuits.py, the agreement of faster paths with
autograd beside them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from polysemy.analysis.folder import read_analysis

REPO = Path(__file__).resolve().parents[2]
TINY = ["--d-sae", "128", "--k", "8", "--harvest-tokens", "8192", "--train-tokens", "16384",
        "--examples", "24", "--top", "12", "--show", "5", "--explain", "2",
        "--resamples", "200", "--shuffles", "5"]  # fmt: skip


def _run(script: str, out: Path, *extra: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--out", str(out), *TINY, *extra],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "braided_fraction" in done.stdout
    return json.loads((out / "circuits-run.json").read_text())


def _check(figures: dict[str, Any], out: Path, label: str, sites: tuple[str, str]) -> None:
    summary = figures["summary"]
    assert (summary["site_up"], summary["site_down"]) == sites
    assert summary["contexts"] == 24 and summary["n_down"] == 128
    edges = summary["edges"]
    assert len(edges) == 12
    for e in edges:
        w, ci = e["weight"], e["ci"]
        assert math.isfinite(w) and w != 0.0
        assert ci["low"] <= w <= ci["high"], e  # a percentile interval of a mean holds it
        assert e["verdict"] == ("effect" if ci["low"] > 0 or ci["high"] < 0 else "inconclusive")
        assert 1 <= e["contexts"] <= 24
        assert 0 <= e["up"] < 128 and 0 <= e["down"] < 128
        assert e["virtual"] is not None and math.isfinite(e["virtual"])  # same width
    weights = [abs(e["weight"]) for e in edges]
    assert weights == sorted(weights, reverse=True)
    null = summary["null"]["quantiles"]
    assert list(null.values()) == sorted(null.values())
    assert min(weights) > null["q50"]  # the strongest edges stand out of all pairs
    braids = summary["braids"]
    assert 0.0 <= braids["braided_fraction"] <= 1.0 and braids["n_edges"] == 12
    assert braids["ci"]["low"] <= braids["braided_fraction"] <= braids["ci"]["high"]
    assert 0.0 <= braids["null_ci"]["low"] <= braids["null_ci"]["high"] <= 1.0
    folder = read_analysis(out / "analyses" / f"circuits-{label}", kind="circuits")
    assert folder.summary["braids"]["braided_fraction"] == braids["braided_fraction"]
    assert json.loads(folder.file("edges.json").read_text()) == edges
    for name in ("up", "down"):
        examples = json.loads((out / "analyses" / f"features-{name}" / "examples.json").read_text())
        assert len(examples) == 128 and any(f["top"] and "[[" in f["top"][0]["text"]
                                            for f in examples)  # fmt: skip
    assert "| 0 |" in (out / "table.md").read_text()


@pytest.mark.slow
def test_circuits_on_minilm(tmp_path: Path) -> None:
    figures = _run("circuits_minilm.py", tmp_path)
    _check(figures, tmp_path, "minilm",
           ("encoder.layer.2.output", "encoder.layer.3.intermediate.input"))  # fmt: skip


@pytest.mark.slow
def test_circuits_on_the_organism(tmp_path: Path) -> None:
    figures = _run("circuits_organism.py", tmp_path, "--steps", "20", "--corpus-chars",
                   "300000", "--d-model", "32")  # fmt: skip
    _check(figures, tmp_path, "organism", ("h.1.input", "h.1.mlp.input"))
    organism = json.loads((tmp_path / "organism" / "organism.json").read_text())
    assert organism["status"] == "done" and organism["config"]["n_layer"] == 2
