"""Data-parallel training with real processes on gloo over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polysemy.sae import SAEConfig, TrainConfig, load_sae, train_sae
from polysemy.sae.distributed import SINGLE, all_reduce_, init_from_env
from polysemy.synth import SynthConfig, write_synth_store

REPO = Path(__file__).resolve().parents[2]

WORKER = """
import os, sys, numpy as np, torch
torch.set_num_threads(1)
from polysemy.sae import SAEConfig, TrainConfig, train_sae
x = torch.from_numpy(np.load(sys.argv[1]))
train_sae(x, SAEConfig(arch="topk", d_in=8, d_sae=32, k=2),
          TrainConfig(tokens=40 * 256, batch_size=256, lr=3e-3, seed=0), out=sys.argv[2])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_two_process_run_matches_one_process_run(tmp_path: Path, one_thread) -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4096, 24, generator=g) < 0.1).float() @ torch.randn(24, 8, generator=g)
    np.save(tmp_path / "x.npy", x.numpy())
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / "x.npy"), str(tmp_path / "dp")],
            env=_env(
                WORLD_SIZE="2",
                RANK=str(r),
                LOCAL_RANK=str(r),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    single = train_sae(
        x,
        SAEConfig(arch="topk", d_in=8, d_sae=32, k=2),
        TrainConfig(tokens=40 * 256, batch_size=256, lr=3e-3, seed=0),
    )
    dp = load_sae(tmp_path / "dp")
    assert dp.metadata["training"]["world_size"] == 2
    for name, t in single.sae.inference_tensors().items():
        torch.testing.assert_close(dp.inference_tensors()[name], t, rtol=1e-3, atol=1e-3, msg=name)


def test_torchrun_with_uneven_shards_finishes(tmp_path: Path) -> None:
    acts = tmp_path / "acts"
    # 5 shards over 2 ranks: rank 0 owns more rows; the job must neither hang nor crash.
    write_synth_store(
        acts, SynthConfig(n_features=32, d_in=8, active=2, tokens=5000, seed=1, shard_rows=1000)
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "polysemy",
        "sae",
        "train",
        "--acts",
        str(acts),
        "--arch",
        "batchtopk",
        "--d-sae",
        "32",
        "--k",
        "2",
        "--tokens",
        "12800",
        "--batch-size",
        "256",
        "--out",
        str(tmp_path / "sae"),
        "--json",
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 prints
    summary = json.loads(lines[0])
    assert summary["world_size"] == 2 and summary["steps"] == 50
    assert load_sae(tmp_path / "sae").config.arch == "batchtopk"


def test_single_process_helpers_are_no_ops() -> None:
    assert init_from_env() == SINGLE
    t = torch.ones(3)
    all_reduce_([t], SINGLE, average=[True])
    assert torch.equal(t, torch.ones(3))
