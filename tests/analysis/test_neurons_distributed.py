"""The neurons pass under torchrun's environment with real processes on gloo over loopback:
the same result as one process, and a failing rank stopping the other (no hang)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from polysemy.activations.store import ActivationStore
from polysemy.analysis.neurons import analyze_neurons
from polysemy.sae import SAEConfig, TrainConfig, load_sae, train_sae
from polysemy.synth import SynthConfig, write_synth_store

Launch = Callable[[list[str]], list[subprocess.Popen[str]]]
FLAGS = ["--batch-size", "128", "--no-texts", "--resamples", "200", "--top-contexts", "5"]

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


def test_two_ranks_give_the_one_process_result_and_a_failure_stops_both(
    tmp_path: Path, two_ranks: Launch
) -> None:
    acts = tmp_path / "acts"
    write_synth_store(
        acts, SynthConfig(n_features=48, d_in=16, active=3, tokens=2100, seed=3, neuron_support=2)
    )
    store = ActivationStore(acts)
    train_sae(
        store,
        SAEConfig(arch="topk", d_in=16, d_sae=48, k=3),
        TrainConfig(tokens=20 * 256, batch_size=256, seed=0),
        out=tmp_path / "sae",
    )
    cli = ["-m", "polysemy", "analyze", "neurons", "--sae", str(tmp_path / "sae")]
    cli += ["--acts", str(acts), *FLAGS, "--json"]
    procs = two_ranks([*cli, "--out", str(tmp_path / "dp")])
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    assert outs[1][0].strip() == "", "only rank 0 prints"
    dp_summary = json.loads(outs[0][0].strip().splitlines()[-1])

    one = analyze_neurons(
        load_sae(tmp_path / "sae"),
        store,
        out=tmp_path / "one",
        batch_size=128,
        texts=False,
        resamples=200,
        top_contexts=5,
    )
    assert dp_summary == json.loads(json.dumps(one.summary()))
    a = load_file(str(tmp_path / "one" / "neurons.safetensors"))
    b = load_file(str(tmp_path / "dp" / "neurons.safetensors"))
    assert a.keys() == b.keys()
    for name in a:  # sums over rows in another order: equal to float64 rounding
        torch.testing.assert_close(b[name], a[name], rtol=1e-12, atol=1e-12, msg=name)

    # A rank that fails: both end (no hang), rank 0 naming the other's failure.
    procs = two_ranks(["-c", FAILING_WORKER, *cli[2:], "--out", str(tmp_path / "failed")])
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert procs[1].returncode != 0 and "planted failure" in errs[1], errs[1][-2000:]
    assert procs[0].returncode != 0, errs[0][-2000:]
    assert "1 other rank of this neurons pass failed" in errs[0], errs[0][-2000:]
    assert not (tmp_path / "failed" / "analysis.json").exists()
