"""The features and geometry passes under torchrun's environment with real processes on gloo
over loopback: the same result as one process on an uneven split of batches, and a failing
rank stopping the other (no hang). The neurons pass has its own file."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from polysemy.activations.store import ActivationStore
from polysemy.analysis.features import analyze_features
from polysemy.analysis.geometry import analyze_geometry
from polysemy.sae import SAEConfig, TrainConfig, load_sae, train_sae
from polysemy.synth import SynthConfig, write_synth_store

Launch = Callable[[list[str]], list[subprocess.Popen[str]]]
# 2100 rows in batches of 128: 17 batches, 9 on rank 0 and 8 on rank 1, the last one short.
# Co-occurrence over the first 1000 rows (a batch cut in two) in a count-min sketch.
OPTIONS: dict[str, Any] = dict(
    batch_size=128, texts=False, examples=5, sample_size=16, quantile_examples=4,
    cooccurrence_rows=1000, cooccurrence_bytes=0, sketch_width=16, null_directions=200,
)  # fmt: skip
FLAGS = [
    f"--{k.replace('_', '-')}={v}" if not isinstance(v, bool) else "--no-texts"
    for k, v in OPTIONS.items()
]

# Rank 1 fails on its second read: rank 0 must stop at the next heartbeat with an error.
FAILING_WORKER = """
import os, sys
import polysemy.sae.distributed as D
from polysemy.activations.store import ActivationStore
D.HEARTBEAT_BATCHES = 1
reads = []
plain = ActivationStore.read
def read(self, *a, **k):
    reads.append(1)
    if os.environ["RANK"] == "1" and len(reads) == 2:
        raise RuntimeError("planted failure")
    return plain(self, *a, **k)
ActivationStore.read = read
from polysemy.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic store (2100 rows) and a TopK SAE trained on it."""
    path = tmp_path_factory.mktemp("passes")
    write_synth_store(
        path / "acts", SynthConfig(n_features=48, d_in=16, active=3, tokens=2100, seed=3)
    )
    train_sae(
        ActivationStore(path / "acts"),
        SAEConfig(arch="topk", d_in=16, d_sae=48, k=3),
        TrainConfig(tokens=20 * 256, batch_size=256, seed=0),
        out=path / "sae",
    )
    return path


def test_features_on_two_ranks_give_the_one_process_result_and_a_failure_stops_both(
    trained: Path, tmp_path: Path, two_ranks: Launch
) -> None:
    acts = trained / "acts"
    store = ActivationStore(acts)
    cli = ["-m", "polysemy", "analyze", "features", "--sae", str(trained / "sae")]
    cli += ["--acts", str(acts), *FLAGS, "--json"]
    procs = two_ranks([*cli, "--out", str(tmp_path / "dp")])
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert outs[1][0].strip() == "", "only rank 0 prints"
    dp_summary = json.loads(outs[0][0].strip().splitlines()[-1])

    one = analyze_features(load_sae(trained / "sae"), store, out=tmp_path / "one", **OPTIONS)
    expected = json.loads(json.dumps(one.summary()))
    assert dp_summary.pop("seconds") > 0 and expected.pop("seconds") > 0
    assert dp_summary == expected
    a = load_file(str(tmp_path / "one" / "features.safetensors"))
    b = load_file(str(tmp_path / "dp" / "features.safetensors"))
    assert a.keys() == b.keys()
    for name in a:  # sums over rows in another order: equal to float64 rounding
        torch.testing.assert_close(b[name], a[name], rtol=1e-12, atol=1e-12, msg=name)
    assert (a["quantile_rows"] >= 0).any() and (a["partner_count"] > 0).any()
    examples = [json.loads((tmp_path / d / "examples.json").read_text()) for d in ("one", "dp")]
    assert examples[0] == examples[1]

    # A rank that fails: both end (no hang), rank 0 naming the other's failure.
    procs = two_ranks(["-c", FAILING_WORKER, *cli[2:], "--out", str(tmp_path / "failed")])
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert procs[1].returncode != 0 and "planted failure" in errs[1], errs[1][-2000:]
    assert procs[0].returncode != 0, errs[0][-2000:]
    assert "1 other rank of this features pass failed" in errs[0], errs[0][-2000:]
    assert not (tmp_path / "failed" / "analysis.json").exists()


def test_geometry_on_two_ranks_gives_the_one_process_result_and_a_failure_stops_both(
    trained: Path, tmp_path: Path, two_ranks: Launch
) -> None:
    # 2100 rows in batches of 128 again: 9 batches on rank 0, 8 on rank 1.
    options: dict[str, Any] = dict(
        split="all", batch_size=128, top_features=12, min_count=5, resamples=100,
        permutations=100, interference_pairs=500, bins=20,
    )  # fmt: skip
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    cli = ["-m", "polysemy", "analyze", "geometry", "--sae", str(trained / "sae")]
    cli += ["--acts", str(trained / "acts"), *flags, "--json", "--out", str(tmp_path / "dp")]
    procs = two_ranks(cli)
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert outs[1][0].strip() == "", "only rank 0 prints"
    dp_summary = json.loads(outs[0][0].strip().splitlines()[-1])

    one = analyze_geometry(
        load_sae(trained / "sae"), ActivationStore(trained / "acts"), out=tmp_path / "one",
        **options,
    )  # fmt: skip
    assert dp_summary.pop("out") == str(tmp_path / "dp")
    assert dp_summary == json.loads(json.dumps(one.summary()))
    assert one.rows == 2100 and one.cooccurrence.features == 12
    for name in ("features", "interference", "pairs"):  # integer counts: exactly equal
        a = load_file(str(tmp_path / "one" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "dp" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)

    # Its encoding pass has its own loop: a failing rank stops both there too.
    failing = ["-c", FAILING_WORKER, *cli[2:-1], str(tmp_path / "failed")]
    procs = two_ranks(failing)
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert procs[1].returncode != 0 and "planted failure" in errs[1], errs[1][-2000:]
    assert procs[0].returncode != 0, errs[0][-2000:]
    assert "1 other rank of this geometry pass failed" in errs[0], errs[0][-2000:]
    assert not (tmp_path / "failed" / "analysis.json").exists()


def test_codes_from_one_process_are_refused_under_torchrun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="keep_codes"):
        analyze_features(object(), object(), keep_codes=10)  # type: ignore[arg-type]
    sae = SimpleNamespace(W_dec=torch.zeros(4, 2), encode=lambda x: x)
    with pytest.raises(ValueError, match="codes must be None under torchrun"):
        analyze_geometry(sae, torch.zeros(8, 2), codes=object())  # type: ignore[arg-type]
