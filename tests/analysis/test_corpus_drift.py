"""Drift across data: exact scores on hand-made sums, detection and false-positive rates on
planted corpora, the analysis folder and CLI on a tiny organism, and every refusal (issue 12's
bad input too: snapshots of different architectures, a non-causal model where an organism is
needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tests.organism.conftest import TINY

from polysemy.analysis.corpus_drift import (
    CorpusDriftConfig,
    CorpusRows,
    corpus_drift,
    corpus_drift_scores,
    corpus_rows,
    organism_snapshot,
)
from polysemy.analysis.corpus_drift_calibration import calibrate_corpus_drift
from polysemy.analysis.folder import read_analysis
from polysemy.cli import main
from polysemy.organism import OrganismRun, train_organism

FAST = CorpusDriftConfig(null_splits=20, neuron_resamples=20, resamples=200)
SMALL = ["--tokens", "1024", "--sae-rows", "2048", "--sae-tokens", "8192", "--k", "8",
         "--expansion", "2", "--seq-len", "16", "--null-splits", "20",
         "--neuron-resamples", "20", "--resamples", "200"]  # fmt: skip
"""Sizes for the tiny organism: 64 neurons, a quick SAE of 128 latents, about a second."""
A, B = "concepts:heldout:400", "concepts:train:400"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> OrganismRun:
    return train_organism(out=tmp_path_factory.mktemp("cdrift") / "run", progress=False, **TINY)


def _rows(mass: list[list[float]], error: list[list[float]]) -> CorpusRows:
    m = torch.tensor(mass, dtype=torch.float64)
    return CorpusRows(m, torch.tensor(error, dtype=torch.float64), torch.ones(len(mass)).long())


def test_score_is_total_variation_of_the_shares_with_the_error_as_a_voice() -> None:
    W = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # (3 features, 2 neurons)
    a = _rows([[1, 0, 0]] * 4, [[0, 0]] * 4)  # only feature 0 fires on A
    b = _rows([[0, 1, 0]] * 4, [[0, 0]] * 4)  # only feature 1 fires on B
    res = corpus_drift_scores(a, b, W, FAST)
    # neuron 0: all feature 0 on A, all feature 1 on B: disjoint voices, score 1;
    # neuron 1: nothing on A (inactive), all feature 1 on B.
    assert res.score[0] == pytest.approx(1.0)
    assert res.active.tolist() == [True, False]
    assert (res.dominant_a[0], res.dominant_b[0]) == (0, 1)
    same = corpus_drift_scores(a, a, W, FAST)
    assert float(same.score[0]) == 0.0 and not bool(same.different.any())
    # Error counted as a voice: half the energy in the error line on B halves each share.
    half = corpus_drift_scores(a, _rows([[1, 0, 0]] * 4, [[1, 0]] * 4), W, FAST)
    assert half.score[0] == pytest.approx(0.5)
    assert half.error_b[0] == pytest.approx(0.5)
    assert float(half.feature_score[0]) == pytest.approx(0.0)  # among features: unchanged


def test_corpus_rows_sums_per_document() -> None:
    z = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]])
    e = torch.tensor([[1.0], [0.0], [2.0]])
    r = corpus_rows(z, e, torch.tensor([7, 7, 9]))
    assert r.mass.tolist() == [[5.0, 1.0], [0.0, 9.0]]
    assert r.error.tolist() == [[1.0], [4.0]] and r.rows.tolist() == [2, 1]


def test_planted_shifts_are_detected_and_unchanged_neurons_mostly_are_not() -> None:
    cfg = CorpusDriftConfig(null_splits=50, neuron_resamples=20)
    cal = calibrate_corpus_drift(seeds=3, ratio=3.0, config=cfg)
    assert cal.detection["estimate"] >= 0.9
    assert cal.false_positive["high"] < 0.3 and cal.false_positive["estimate"] <= 0.12
    assert all(v["mean_score"] == "effect" for v in cal.verdicts)
    assert sum(v["different"] == "effect" for v in cal.verdicts) >= 2
    null = calibrate_corpus_drift(seeds=3, ratio=1.0, config=cfg)  # nothing differs
    assert null.detection["n"] == 0 and null.false_positive["estimate"] <= 0.12
    assert all(v["different"] != "effect" and v["mean_score"] != "effect" for v in null.verdicts)


def test_too_few_documents_and_a_wrong_dictionary_are_refused() -> None:
    W = torch.ones(3, 2)
    with pytest.raises(ValueError, match="corpus_b must be a sample of at least 4 documents"):
        corpus_drift_scores(_rows([[1, 0, 0]] * 4, [[0, 0]] * 4), _rows([[1, 0, 0]] * 3,
                            [[0, 0]] * 3), W, FAST)  # fmt: skip
    with pytest.raises(ValueError, match="W_dec must be"):
        four = _rows([[1, 0, 0]] * 4, [[0, 0]] * 4)
        corpus_drift_scores(four, four, torch.ones(2, 2), FAST)
    with pytest.raises(ValueError, match="null_splits"):
        CorpusDriftConfig(null_splits=1)


def test_organism_snapshot_across_two_corpora_writes_the_folder(
    run: OrganismRun, tmp_path: Path
) -> None:
    assert run.out is not None
    snap, site = organism_snapshot(run.out)
    assert snap.name == "step-000060" and site == "h.0.mlp.act.output"
    out = tmp_path / "cd"
    res = corpus_drift(
        str(snap), site, None, A, "pydocs", FAST, out=out, tokens=2048, sae_rows=2048,
        sae_tokens=8192, k=8, expansion=2, seq_len=16,
    )  # fmt: skip
    s = res.summary
    assert s["across"] == "corpora" and s["sae"]["trained_here"] and s["d"] == 64
    assert s["rows"] == {"a": 2048, "b": 2048}
    n = s["neurons"]
    assert n["n"] == int(res.active.sum()) and 0 <= n["different_fraction"]["estimate"] <= 1
    assert bool((res.score_low <= res.score + 1e-6).all())
    assert bool((res.score <= res.score_high + 1e-6).all())
    folder = read_analysis(out, "drift")
    assert folder.inputs["corpus_b"].startswith("pydocs")
    voices = json.loads((out / "voices.json").read_text())
    assert len(voices) == n["n"] and voices[0]["score"] >= voices[-1]["score"]
    assert {"a", "b", "dominant_a", "dominant_b", "ci", "null_threshold"} <= set(voices[0])
    assert abs(sum(sh for _, sh in voices[0]["a"]) + voices[0]["error_share_a"]) <= 1 + 1e-6


def test_same_corpus_twice_is_not_called_different(run: OrganismRun) -> None:
    assert run.out is not None
    snap, site = organism_snapshot(run.out)
    res = corpus_drift(
        str(snap), site, None, A, A, FAST, tokens=1024, sae_rows=2048, sae_tokens=8192, k=8,
        expansion=2, seq_len=16,
    )  # fmt: skip
    assert float(res.score.abs().max()) < 1e-6 and not bool(res.different.any())


def test_cli_json_and_refusals(
    run: OrganismRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.out is not None
    base = ["analyze", "drift", "--organism", str(run.out), *SMALL]
    out = tmp_path / "d"
    assert main([*base, "--corpus-a", A, "--corpus-b", B, "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["out"] == str(out) and {"neurons", "null", "verdict", "examples"} <= set(s)
    f = s["features"]
    assert f["mostly_a"] + f["mostly_b"] + f["both"] == f["fired"] > 0
    assert s["null"]["splits"] == 40  # 20 halvings of each corpus

    def refused(argv: list[str], message: str) -> None:
        dest = tmp_path / "refused"
        assert main([*argv, "--out", str(dest)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not dest.exists()

    refused([*base, "--corpus-a", A], "--corpus-b must be a corpus spec")
    refused([*base, "--corpus-a", A, "--corpus-b", B, "--snapshot", "7"], "--snapshot must be")
    refused(["analyze", "drift", "--model", str(run.out / "snapshots" / "step-000060"),
             "--corpus-a", A, "--corpus-b", B, *SMALL], "--site must be")  # fmt: skip
    sae = tmp_path / "sae"
    from polysemy.api import train_sae

    train_sae(torch.randn(256, 8), arch="topk", k=2, d_sae=16, tokens=512, batch_size=128, out=sae,
              progress=False)  # fmt: skip
    refused([*base, "--corpus-a", A, "--corpus-b", B, "--sae", str(sae)], "d_in=64")


def _copy_with(run: OrganismRun, dest: Path, snapshots: list[int]) -> Path:
    assert run.out is not None
    shutil.copytree(run.out, dest)
    meta = json.loads((dest / "organism.json").read_text())
    meta["snapshots"] = [meta["snapshots"][i] for i in snapshots]
    (dest / "organism.json").write_text(json.dumps(meta))
    return dest


def test_issue_12_bad_input_on_the_command_line(
    run: OrganismRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Snapshots of different architectures, and a non-causal model where an organism's
    snapshot is needed: one line, exit 2, nothing written."""
    mixed = _copy_with(run, tmp_path / "mixed", [0, 3])
    cfg_path = mixed / "snapshots" / "step-000000" / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "n_inner": 32}))
    encoder = _copy_with(run, tmp_path / "encoder", [0, 3])
    # An encoder's config where a causal LM belongs (refused before any weights are read).
    bert = {"architectures": ["BertModel"], "model_type": "bert"}
    (encoder / "snapshots" / "step-000060" / "config.json").write_text(json.dumps(bert))
    small = ["--rows", "512", "--sae-rows", "2048"]
    cases = [
        (["--organism", str(mixed), *small], "share one architecture"),
        (["--organism", str(encoder), *small], "must be a causal language model"),
        (["--organism", str(encoder), "--corpus-a", A, "--corpus-b", B],
         "must be a causal language model"),
    ]  # fmt: skip
    for argv, message in cases:
        dest = tmp_path / "o"
        assert main(["analyze", "drift", *argv, "--out", str(dest)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("error:")
        assert not dest.exists()
