"""`polysemy sites` and `polysemy harvest`: JSON output, one-line errors, kill -9 and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polysemy.activations.store import ActivationStore
from polysemy.cli import main

SITE = "encoder.layer.3.output"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_sites_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["sites", "--model", "minilm", "--grep", "layer.3.", "--json"], capsys)
    assert code == 0
    obj = json.loads(out)
    assert obj["model"] == "minilm"
    by_name = {s["name"]: s for s in obj["sites"]}
    assert by_name[SITE]["width"] == 384 and by_name[SITE]["per_token"]
    assert by_name["encoder.layer.3.intermediate.intermediate_act_fn.output"]["width"] == 1536
    assert all("layer.3." in name for name in by_name)


def test_sites_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["sites", "--grep", "pooler"], capsys)
    assert code == 0
    assert "pooler.output" in out and "sites in minilm" in out


def test_harvest_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "acts"
    args = ["harvest", "--site", SITE, "--corpus", "pydocs", "--tokens", "400"]
    code, out, _ = run_cli([*args, "--out", str(out_dir), "--json"], capsys)
    assert code == 0
    obj = json.loads(out)
    assert obj["rows"] == 400 and obj["stores"] == {SITE: str(out_dir)}
    assert obj["sites"] == [{"name": SITE, "width": 384}]
    assert obj["corpus"].startswith("pydocs")
    store = ActivationStore(out_dir)
    assert store.rows == 400 and store.source["corpus"] == obj["corpus"]
    # A second run into the same store must say how to continue or replace it.
    code, _, err = run_cli([*args, "--out", str(out_dir)], capsys)
    assert code == 2 and "--resume" in error_line(err) and "--force" in error_line(err)
    code, out, _ = run_cli([*args, "--out", str(out_dir), "--force", "--json"], capsys)
    assert code == 0 and json.loads(out)["rows"] == 400


def test_harvest_several_sites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sites = ["encoder.layer.0.output", "encoder.layer.1.output"]
    args = ["harvest", "--corpus", "pydocs", "--tokens", "200", "--out", str(tmp_path / "o")]
    code, out, _ = run_cli([*args, "--site", sites[0], "--site", sites[1], "--json"], capsys)
    assert code == 0
    stores = json.loads(out)["stores"]
    assert stores == {s: str(tmp_path / "o" / s) for s in sites}
    assert all(ActivationStore(p).rows == 200 for p in stores.values())


@pytest.fixture
def empty_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "empty.txt"
    path.write_text("\n\n")
    return path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"--site": "encoder.layer.3.outptu"},
            r"unknown site .*close matches: encoder\.layer\.3\.output",
        ),
        ({"--model": "nobody/no-such-model"}, r"unknown model 'nobody/no-such-model'"),
        ({"--corpus": "EMPTY"}, r"empty"),
        ({"--tokens": "0"}, r"^error: --tokens must be an int >= 1; got 0$"),
        ({"--tokens": "x"}, r"--tokens: expected an int, got 'x'"),
        ({"--seq-len": "4096"}, r"^error: --seq-len must be <= 512 for model"),
        ({"--site": "pooler.output"}, r"one vector per sequence"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, empty_corpus: Path, capsys: pytest.CaptureFixture[str], change, match
) -> None:
    out_dir = tmp_path / "acts"
    opts = {"--site": SITE, "--corpus": "pydocs", "--tokens": "100", "--out": str(out_dir)}
    opts.update({k: (str(empty_corpus) if v == "EMPTY" else v) for k, v in change.items()})
    code, out, err = run_cli(["harvest", *[x for kv in opts.items() for x in kv]], capsys)
    assert code == 2
    assert out == ""
    assert re.search(match, error_line(err)), err
    assert not out_dir.exists()


def test_out_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    code, _, err = run_cli(
        ["harvest", "--site", SITE, "--corpus", "pydocs", "--tokens", "5", "--out", str(path)],
        capsys,
    )
    assert code == 2 and "must be a folder" in error_line(err)
    assert path.read_text() == "x"


def test_repeated_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["harvest", "--site", SITE, "--site", SITE, "--corpus", "pydocs", "--tokens", "5"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--site must be names that do not repeat" in error_line(err)


def test_kill_9_then_resume_gives_identical_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["harvest", "--site", SITE, "--corpus", "pydocs", "--tokens", "6000"]
    args += ["--shard-rows", "400", "--batch-size", "8", "--json"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "polysemy", *args, "--out", str(cut)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = cut / "manifest.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if len(json.loads(manifest.read_text())["shards"]) >= 2:
                    break
            except (FileNotFoundError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the harvest finished before it could be killed"
    partial = ActivationStore(cut)
    assert 0 < partial.rows < 6000

    code, out, _ = run_cli([*args, "--out", str(cut), "--resume"], capsys)
    assert code == 0 and json.loads(out)["rows_resumed"] == partial.rows
    code, out, _ = run_cli([*args, "--out", str(whole)], capsys)
    assert code == 0 and json.loads(out)["rows"] == 6000
    names = sorted(p.name for p in whole.glob("shard-*.safetensors"))
    assert names == sorted(p.name for p in cut.iterdir() if p.name.startswith("shard-"))
    assert not [p.name for p in cut.iterdir() if p.name.startswith(".")], "temp files left"
    for name in names:
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name
