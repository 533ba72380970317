"""Harvest under torchrun with real processes on gloo over loopback: a rank killed mid-run,
the harvest resumed under torchrun, and the store compared with a one-process harvest."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from polysemy.activations.harvest import HarvestConfig, harvest, iter_batches
from polysemy.activations.shards import part_manifest
from polysemy.activations.store import ActivationStore, StoreWriter, join_parts
from polysemy.corpora import open_corpus
from polysemy.models import load_model

REPO = Path(__file__).resolve().parents[2]
SITE = "encoder.layer.3.output"
# Small batches and shards, so each rank runs several batches and writes several shards.
SETTINGS: dict[str, Any] = {"tokens": 2400, "batch_size": 4, "window_batches": 2, "shard_rows": 300}

# One rank of a harvest under torchrun's environment variables; rank 1 is SIGKILLed in the
# middle of its third forward pass (a real kill: no exception handler, no cleanup runs).
KILLED_WORKER = """
import os, signal, sys, torch
torch.set_num_threads(1)
import polysemy.activations.harvest as H
from polysemy.activations.harvest import HarvestConfig, harvest
from polysemy.corpora import open_corpus
from polysemy.models import load_model, patch_site
settings = {settings}
H.HEARTBEAT_BATCHES = 1  # compare failure flags after every batch: a failure stops all at once
loaded = load_model("minilm")
calls = []
def die_on_the_third(x):
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x
config = HarvestConfig(sites=({site!r},), dtype="float32", **settings)
with patch_site(loaded, "encoder.layer.0.output", die_on_the_third):
    harvest(loaded, open_corpus(sys.argv[1]), config, out=sys.argv[2])
"""


# Rank 1 raises (a failure Python sees, unlike a kill): it must tell rank 0 before failing.
FAILING_WORKER = KILLED_WORKER.replace(
    "os.kill(os.getpid(), signal.SIGKILL)", "raise RuntimeError('planted failure')"
).replace("len(calls) == 3", "len(calls) == 1")


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


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    docs = itertools.islice(open_corpus("pydocs"), 120)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_killed_rank_resumes_to_the_one_process_rows(
    corpus_file: Path, tmp_path: Path, one_thread
) -> None:
    out = tmp_path / "store"
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                KILLED_WORKER.format(settings=SETTINGS, site=SITE),
                str(corpus_file),
                str(out),
            ],
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
    # No hang: the surviving rank ends with an error naming the dead one.
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert procs[1].returncode == -9, errs[1][-2000:]
    assert procs[0].returncode != 0
    assert "another rank of this harvest died" in errs[0], errs[0][-2000:]
    assert not (out / "manifest.json").exists(), "no manifest before every rank is done"
    rank1 = json.loads((out / part_manifest(1)).read_text())
    assert 0 < rank1["rows"] < SETTINGS["tokens"] // 2  # killed on its 3rd batch

    # Resume under the real torchrun, through the CLI.
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
        "harvest",
        "--corpus",
        str(corpus_file),
        "--site",
        SITE,
        "--dtype",
        "float32",
        *(f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()),
        "--out",
        str(out),
        "--resume",
        "--json",
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout  # only rank 0 reports
    summary = json.loads(lines[0])
    assert summary["world_size"] == 2 and summary["rows"] == SETTINGS["tokens"]
    assert 0 < summary["rows_resumed"] < SETTINGS["tokens"]

    dist = ActivationStore(out)
    manifest = dist.manifest
    assert manifest["row_order"] == "by rank"
    assert [p["rank"] for p in manifest["parts"]] == [0, 1]
    assert all(s["file"].startswith(("rank-00000-", "rank-00001-")) for s in manifest["shards"])

    # The one-process harvest of the same corpus and settings, in this process.
    loaded = load_model("minilm")
    config = HarvestConfig(sites=(SITE,), dtype="float32", **SETTINGS)
    harvest(loaded, open_corpus(str(corpus_file)), config, out=tmp_path / "one")
    one = ActivationStore(tmp_path / "one")
    assert one.rows == dist.rows == SETTINGS["tokens"]
    assert dist.source == one.source

    # Same rows (activations and traces), up to order.
    def by_text(s: ActivationStore) -> torch.Tensor:
        assert s.doc is not None and s.pos is not None
        return torch.argsort(s.doc * 1_000_000 + s.pos.long())

    a, b = by_text(one), by_text(dist)
    for col in ("tokens", "doc", "pos"):
        assert torch.equal(getattr(one, col)[a], getattr(dist, col)[b]), col
    assert torch.equal(one.read(0, one.rows)[a], dist.read(0, dist.rows)[b])

    # To the same bytes: rank r's shards are the one-process rows of batches r, r+2, ...,
    # written by a part writer, even for the rank that was killed and resumed.
    sizes = [
        b.rows
        for b in iter_batches(
            loaded.tokenizer,
            open_corpus(str(corpus_file)),
            seq_len=128,
            batch_size=SETTINGS["batch_size"],
            window_batches=SETTINGS["window_batches"],
        )
    ]
    bounds = list(itertools.accumulate(sizes, initial=0))
    expected = tmp_path / "expected"
    for rank in range(2):
        rows = [
            r
            for i in range(rank, len(sizes), 2)
            for r in range(bounds[i], min(bounds[i + 1], SETTINGS["tokens"]))
        ]
        idx = torch.tensor(rows)
        with StoreWriter(
            expected,
            d_in=384,
            dtype="float32",
            source=one.source,
            shard_rows=SETTINGS["shard_rows"],
            part=(rank, 2),
        ) as w:
            w.append(
                one.read(0, one.rows)[idx],
                tokens=one.tokens[idx],  # type: ignore[index]
                doc=one.doc[idx],  # type: ignore[index]
                pos=one.pos[idx],  # type: ignore[index]
            )
    join_parts(expected, 2)
    names = sorted(p.name for p in out.glob("rank-*"))
    assert names == sorted(p.name for p in expected.glob("rank-*"))
    for name in names:
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name
    assert json.loads((out / "manifest.json").read_text()) == json.loads(
        (expected / "manifest.json").read_text()
    )


def _write_part(out: Path, rank: int, rows: int, *, world: int = 2, d_in: int = 4) -> None:
    g = torch.Generator().manual_seed(rank)
    with StoreWriter(
        out, d_in=d_in, dtype="float32", source={"s": 1}, shard_rows=3, part=(rank, world)
    ) as w:
        w.append(torch.randn(rows, d_in, generator=g))


def test_parts_join_into_one_store_in_rank_order(tmp_path: Path) -> None:
    _write_part(tmp_path, 1, 4)
    _write_part(tmp_path, 0, 5)
    assert not (tmp_path / "manifest.json").exists()
    # A part writer starting afresh touches only its own rank's files.
    _write_part(tmp_path, 0, 5)
    assert (tmp_path / "rank-00001-shard-00001.safetensors").is_file()
    manifest = join_parts(tmp_path, 2)
    store = ActivationStore(tmp_path)
    assert store.rows == 9 and store.n_shards == 4
    assert manifest["parts"] == [
        {"rank": 0, "rows": 5, "shards": 2},
        {"rank": 1, "rows": 4, "shards": 2},
    ]
    assert store.source == {"s": 1}
    g = torch.Generator().manual_seed(1)
    torch.testing.assert_close(store.read(5, 9), torch.randn(4, 4, generator=g))
    # One process cannot continue what several ranks wrote.
    with pytest.raises(ValueError, match="harvested by 2 ranks under torchrun"):
        StoreWriter(tmp_path, d_in=4, dtype="float32", source={"s": 1}, resume=True)


def test_join_refuses_a_missing_or_foreign_part(tmp_path: Path) -> None:
    _write_part(tmp_path, 0, 2)
    with pytest.raises(FileNotFoundError, match=r"rank-00001\.manifest\.json"):
        join_parts(tmp_path, 2)
    _write_part(tmp_path, 1, 2, world=3)
    with pytest.raises(ValueError, match=re.escape("expected {'rank': 1, 'world_size': 2}")):
        join_parts(tmp_path, 2)
    assert not (tmp_path / "manifest.json").exists()


def test_one_process_harvest_refuses_an_unfinished_torchrun_harvest(tmp_path: Path) -> None:
    _write_part(tmp_path, 0, 2, d_in=384)
    loaded = load_model("minilm")
    config = HarvestConfig(sites=(SITE,), tokens=10)
    with pytest.raises(ValueError, match="holds a harvest under torchrun"):
        harvest(loaded, ["some text"], config, out=tmp_path)
    with pytest.raises(ValueError, match="resume it under torchrun with --nproc-per-node 2"):
        harvest(loaded, ["some text"], config, out=tmp_path, resume=True)


@pytest.mark.slow
def test_a_rank_that_raises_fails_every_rank(corpus_file: Path, tmp_path: Path) -> None:
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                FAILING_WORKER.format(settings=SETTINGS, site=SITE),
                str(corpus_file),
                str(tmp_path / "store"),
            ],
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
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert procs[1].returncode == 1 and "planted failure" in errs[1], errs[1][-2000:]
    assert procs[0].returncode == 1, errs[0][-2000:]
    assert "1 other rank of this harvest failed" in errs[0], errs[0][-2000:]
    assert not (tmp_path / "store" / "manifest.json").exists()
    # Rank 0 stopped at the next heartbeat (after its first batch), far from the end of its
    # share (~1200 rows).
    assert json.loads((tmp_path / "store" / part_manifest(0)).read_text())["rows"] <= 600
