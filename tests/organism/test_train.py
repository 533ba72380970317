from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.organism.conftest import TINY

import polysemy as ps
from polysemy.organism import OrganismRun, load_organism, snapshot_steps, train_organism


def test_run_folder_records_figures_with_intervals_and_baselines(tiny_run: OrganismRun) -> None:
    assert tiny_run.out is not None
    s = json.loads((tiny_run.out / "organism.json").read_text())
    assert s["format"] == "polysemy.organism/1" and s["status"] == "done"
    assert s == tiny_run.summary
    for figure in (s["heldout"], s["baselines"]["unigram"], s["baselines"]["bigram"]):
        lo, hi = figure["ci95"]
        assert lo <= figure["loss"] <= hi and figure["tokens"] > 0
    assert {v["verdict"] for v in s["versus"].values()} <= {"below", "above", "inconclusive"}
    # Even 60 steps learn something: below the unigram baseline, and below the untrained net.
    assert s["versus"]["unigram"]["verdict"] == "below"
    assert s["heldout"]["loss"] < s["snapshots"][0]["heldout_loss"]
    assert [h["step"] for h in s["history"]] == list(range(5, 61, 5))
    assert not (tiny_run.out / "state").exists()  # a finished run keeps no resumable state
    assert ps.runfolder.detect_kind(tiny_run.out) == "polysemy.organism/1"


def test_snapshots_are_ordinary_hugging_face_folders(tiny_run: OrganismRun) -> None:
    steps = [s["step"] for s in tiny_run.summary["snapshots"]]
    assert steps == snapshot_steps(60, 4)
    from transformers import AutoModelForCausalLM

    last = tiny_run.snapshots[-1]
    hf = AutoModelForCausalLM.from_pretrained(last)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, tiny_run.model(ids).logits, atol=1e-5)
    first = load_file(str(tiny_run.snapshots[0] / "model.safetensors"))
    final = load_file(str(last / "model.safetensors"))
    assert not torch.equal(
        first["transformer.h.0.mlp.c_fc.weight"], final["transformer.h.0.mlp.c_fc.weight"]
    )


def test_sites_and_harvest_work_on_a_snapshot(tiny_run: OrganismRun, tmp_path: Path) -> None:
    loaded = ps.load_model(tiny_run.snapshots[-1])
    sites = {s.name: s for s in ps.list_sites(loaded)}
    mlp = tiny_run.summary["model"]["sites"]["mlp"]
    assert sites[mlp].width == TINY["d_mlp"] and sites[mlp].per_token
    assert sites[tiny_run.summary["model"]["sites"]["resid"]].width == TINY["d_model"]
    store = ps.harvest(
        loaded,
        "concepts:heldout:50",
        site=mlp,
        tokens=200,
        seq_len=16,
        out=tmp_path / "acts",
        progress=False,
    )
    assert store.d_in == TINY["d_mlp"] and store.rows >= 200


def test_a_killed_run_resumes_to_the_same_final_weights(
    tiny_run: OrganismRun, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    # "Killed" after step 13: the last checkpoint is step 10, organism.json already has the
    # step-13 history; the resume must redo 11..13 and forget what the kill left behind.
    train_organism(out=out, progress=False, stop_after=13, **TINY)
    state = json.loads((out / "state" / "state.json").read_text())
    assert state["step"] == 10
    with pytest.raises(ValueError, match="interrupted organism run; pass resume=True"):
        train_organism(out=out, progress=False, **TINY)
    run = train_organism(out=out, progress=False, resume=True, **TINY)
    assert run.summary["resumed_from_step"] == 10 and run.summary["status"] == "done"
    assert run.summary["history"] == [
        {**h, "tokens_per_second": g["tokens_per_second"]}
        for h, g in zip(tiny_run.summary["history"], run.summary["history"], strict=True)
    ]
    a = load_file(str(tiny_run.snapshots[-1] / "model.safetensors"))
    b = load_file(str(run.snapshots[-1] / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert run.summary["heldout"] == tiny_run.summary["heldout"]


def test_resume_refuses_another_config(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    train_organism(out=out, progress=False, stop_after=6, **TINY)
    with pytest.raises(ValueError, match=r"config must match .* differ: lr"):
        train_organism(out=out, progress=False, resume=True, **{**TINY, "lr": 1e-4})


def test_a_finished_run_is_not_overwritten_unless_forced(tiny_run: OrganismRun) -> None:
    with pytest.raises(ValueError, match="holds a done organism run"):
        train_organism(out=tiny_run.out, progress=False, **TINY)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"corpus_chars": 5000, "batch_size": 256},
            "corpus_chars must be enough text for one batch",
        ),
        ({"vocab_size": 20000}, r"vocab_size must be <= \d+ for this corpus"),
        ({"n_ctx": 4000, "batch_size": 1}, "corpus_chars must be enough held-out text"),
    ],
)
def test_a_corpus_too_small_is_refused_before_anything_is_written(
    tmp_path: Path, change: dict, match: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        train_organism(out=out, progress=False, **{**TINY, **change})
    assert not out.exists()


def test_load_organism_refuses_an_encoder() -> None:
    from polysemy.models import minilm_path

    with pytest.raises(ValueError, match="model must be a causal language model"):
        load_organism(minilm_path())


def test_tied_embeddings_resume_too(tmp_path: Path) -> None:
    # A tied matrix is stored once in the state (safetensors refuses shared storage) and
    # must come back tied, to the same weights.
    tied = {**TINY, "tie_embeddings": True, "steps": 12}
    whole = train_organism(out=tmp_path / "whole", progress=False, **tied)
    train_organism(out=tmp_path / "killed", progress=False, stop_after=7, **tied)
    resumed = train_organism(out=tmp_path / "killed", progress=False, resume=True, **tied)
    assert resumed.summary["resumed_from_step"] == 5
    assert resumed.model.lm_head.weight is resumed.model.transformer.wte.weight
    for (name, a), (_, b) in zip(
        whole.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_same_weights(tmp_path: Path) -> None:
    # A real kill (SIGKILL of the CLI process at an arbitrary moment), not a clean stop.
    import os
    import signal
    import subprocess
    import sys
    import time

    long = {**TINY, "steps": 400, "checkpoint_every": 20}
    argv = [sys.executable, "-m", "polysemy", "organism", "train", "--threads", "1"]
    for key, value in long.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen([*argv, "--out", str(out)], env=env, stderr=subprocess.DEVNULL)
    state = out / "state" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 60:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 60 <= killed_at < 400
    subprocess.run([*argv, "--out", str(out), "--resume"], env=env, check=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI ran: reductions may differ with the thread count
    try:
        whole = train_organism(out=tmp_path / "whole", progress=False, **long)
    finally:
        torch.set_num_threads(threads)
    a = load_file(str(whole.snapshots[-1] / "model.safetensors"))
    b = load_file(str(out / whole.summary["final"] / "model.safetensors"))
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_before_the_first_checkpoint_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "early"
    train_organism(out=out, progress=False, stop_after=3, **TINY)  # checkpoint_every=5
    assert not (out / "state").exists()
    assert json.loads((out / "organism.json").read_text())["status"] == "training"
    with pytest.raises(ValueError, match="holds a training organism run"):
        train_organism(out=out, progress=False, **TINY)
    run = train_organism(out=out, progress=False, resume=True, **{**TINY, "steps": 6})
    assert run.summary["status"] == "done" and run.summary["resumed_from_step"] == 0
