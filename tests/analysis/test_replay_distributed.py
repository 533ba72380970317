"""The fidelity and ablation passes under torchrun's environment with real processes on gloo
over loopback, on a tiny config-built BERT: the one-process folder from 2 ranks on an uneven
split of batches, and a failing rank stopping the other in each pass (no hang)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from polysemy.analysis.ablation import ablate
from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.analysis.fidelity import analyze_fidelity
from polysemy.corpora import open_corpus
from polysemy.models import load_model
from polysemy.sae import load_sae
from polysemy.sae.io import save_sae

from .conftest import random_sae

REPO = Path(__file__).resolve().parents[2]
SITE = "encoder.layer.0.output"
# 45 sentences in batches of 8: 6 batches, 3 per rank, the last one short; the Spearman
# score reads the first 20 sentences, which both ranks hold.
FIDELITY = dict(site=SITE, examples=45, batch_size=8, seq_len=24, similarity_sentences=20,
                resamples=100)  # fmt: skip
# 21 examples in batches of 4: 6 batches, the last one of a single example. Resampling and
# the mean read every rank's coefficients; resampling draws for the other rank's batches.
ABLATE = dict(site=SITE, targets="feature:3,neuron:5", random=4, examples=21, batch_size=4,
              seq_len=24, feature_mode="resample", neuron_mode="mean",
              directions_per_pass=5)  # fmt: skip


def _flags(options: dict[str, Any]) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]


# Each rank runs the commands separated by `--then` in one process (the process group is
# joined once, a start-up saved per command) and prints each exit to stderr (an uncaught
# error: its last line). In a command after `--fail`, rank 1 fails on its second clean pass
# (`record`) or its second replay, whichever comes first.
WORKER = """
import os, sys
import polysemy.sae.distributed as D
from polysemy.analysis.replay import SiteReplay
from polysemy.cli import main
D.HEARTBEAT_BATCHES = 1
state = {"fail": False, "record": 0, "replay": 0}
def planted(name):
    plain = getattr(SiteReplay, name)
    def run(self, *a, **k):
        state[name] += 1
        if state["fail"] and os.environ["RANK"] == "1" and state[name] == 2:
            raise RuntimeError(f"planted failure in {name}")
        return plain(self, *a, **k)
    setattr(SiteReplay, name, run)
planted("record"), planted("replay")
commands, current = [], []
for arg in sys.argv[1:] + ["--then"]:
    if arg == "--then":
        commands.append(current)
        current = []
    else:
        current.append(arg)
for argv in commands:
    state.update(fail=argv[0] == "--fail", record=0, replay=0)
    try:
        code = main(argv[1:] if state["fail"] else argv)
    except Exception as exc:
        code = f"raised {type(exc).__name__}: {exc}"
    print(f"exit: {code}", file=sys.stderr, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(args: list[str]) -> list[tuple[int, str, str]]:
    env = dict(os.environ, OMP_NUM_THREADS="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(MASTER_PORT=str(_free_port()), HF_HUB_OFFLINE="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    return [(p.returncode, o, e) for p, (o, e) in zip(procs, outs, strict=True)]


def _close(a: Any, b: Any, where: str = "") -> None:
    """Equal JSON values, numbers to float rounding (each process runs its own matmuls)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_fidelity_and_ablation_on_two_ranks_give_the_one_process_folders_and_a_failure_stops_both(
    tmp_path: Path,
) -> None:
    tiny = tiny_encoder(seed=0)
    assert tiny.tokenizer is not None
    tiny.model.save_pretrained(tmp_path / "model")  # type: ignore[operator]
    tiny.tokenizer.save_pretrained(tmp_path / "model")
    save_sae(random_sae(32, seed=1), tmp_path / "sae", source={"site": SITE}, training={})
    common = ["--model", str(tmp_path / "model"), "--sae", str(tmp_path / "sae"), "--json"]
    fid = ["analyze", "fidelity", *common, *_flags(FIDELITY)]
    abl = ["analyze", "ablate", *common, *_flags(ABLATE)]

    # Both passes, then both again with rank 1 failing: one launch.
    ranks = _launch([
        *fid, "--out", str(tmp_path / "fid-dp"), "--then", *abl, "--out", str(tmp_path / "abl-dp"),
        "--then", "--fail", *fid, "--out", str(tmp_path / "fid-x"),
        "--then", "--fail", *abl, "--out", str(tmp_path / "abl-x"),
    ])  # fmt: skip
    for code, _, err in ranks:
        assert code == 0 and err.count("exit: 0") == 2, err[-3000:]
    assert ranks[1][1].strip() == "", "only rank 0 prints"
    fid_dp, abl_dp = (json.loads(line) for line in ranks[0][1].strip().splitlines()[-2:])

    loaded = load_model(tmp_path / "model")
    sae = load_sae(tmp_path / "sae")
    corpus = open_corpus("concepts:heldout", seed=0)
    one = analyze_fidelity(loaded, sae, corpus, out=tmp_path / "fid-one", **FIDELITY)  # type: ignore[arg-type]
    _close(json.loads(json.dumps(one.summary())), fid_dp)
    assert one.n == 45 and one.similarity_spearman is not None
    a = load_file(str(tmp_path / "fid-one" / "per_example.safetensors"))
    b = load_file(str(tmp_path / "fid-dp" / "per_example.safetensors"))
    assert a.keys() == b.keys() and a["tokens"].shape == (45,)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-6, atol=1e-9, msg=name)

    corpus = open_corpus("concepts:heldout", seed=0)
    result = ablate(loaded, corpus, sae=sae, out=tmp_path / "abl-one", **ABLATE)  # type: ignore[arg-type]
    _close(json.loads(json.dumps(result.summary())), abl_dp)
    a = load_file(str(tmp_path / "abl-one" / "effects.safetensors"))
    b = load_file(str(tmp_path / "abl-dp" / "effects.safetensors"))
    assert torch.equal(a["fires"], b["fires"]) and a["fires"].any()
    for name in ("targets", "null"):  # resampled coefficients included: same draws
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-8, msg=name)
    assert (a["targets"] > 0).all()

    # Rank 1 failed in each pass: both ranks ended both commands, rank 0 naming the failure.
    err0, err1 = ranks[0][2], ranks[1][2]
    assert err1.count("raised RuntimeError: planted failure in") == 2, err1[-3000:]
    for job in ("fidelity", "ablation"):
        expected = f"raised PeerFailed: rank 0: 1 other rank of this {job} pass failed"
        assert expected in err0, err0[-3000:]
    assert not (tmp_path / "fid-x").exists() and not (tmp_path / "abl-x").exists()
