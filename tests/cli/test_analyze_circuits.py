"""`polysemy analyze circuits`: JSON keys, the folder, one-line errors that leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.cli import main
from polysemy.sae import sae_from_weights, save_sae


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("circuits")
    loaded = tiny_encoder(seed=0)
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    g = torch.Generator().manual_seed(0)
    for name, layer in (("up", 0), ("down", 1)):
        W = torch.nn.functional.normalize(torch.randn(24, 32, generator=g), dim=-1)
        sae = sae_from_weights(
            "relu", W_enc=W.T.clone(), b_enc=torch.zeros(24) + 0.1, W_dec=W,
            b_dec=torch.zeros(32),
        )  # fmt: skip
        site = f"encoder.layer.{layer}.output"
        save_sae(sae, root / name, source={"site": site, "model": "tiny"}, training={})
    return {"model": root / "model", "up": root / "up", "down": root / "down"}


def _run(capsys, argv: list) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_circuits_json(capsys, paths, tmp_path: Path) -> None:
    out = tmp_path / "circ"
    code, stdout, _ = _run(capsys, [
        "analyze", "circuits", "--model", paths["model"], "--sae-up", paths["up"],
        "--sae-down", paths["down"], "--corpus", "concepts:heldout:100", "--examples", 10,
        "--top", 5, "--resamples", 100, "--out", out, "--json",
    ])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert obj["contexts"] == 10 and obj["site_down"] == "encoder.layer.1.output"
    assert len(obj["edges"]) == 5
    assert set(obj["edges"][0]) >= {"up", "down", "weight", "ci", "virtual", "verdict", "clusters"}
    assert set(obj["braids"]) >= {"braided_fraction", "ci", "null_ci"}
    assert (out / "analysis.json").is_file() and (out / "edges.json").is_file()
    code, stdout, _ = _run(capsys, [
        "analyze", "circuits", "--model", paths["model"], "--sae-up", paths["up"],
        "--sae-down", paths["down"], "--corpus", "concepts:heldout:100", "--examples", 10,
        "--top", 3, "--resamples", 100, "--out", out, "--force",
    ])  # fmt: skip
    assert code == 0 and "encoder.layer.0.output -> encoder.layer.1.output" in stdout
    assert "shuffled contexts" in stdout and "ablated" not in stdout


def test_circuits_ablate(capsys, paths, tmp_path: Path) -> None:
    argv = [
        "analyze", "circuits", "--model", paths["model"], "--sae-up", paths["up"],
        "--sae-down", paths["down"], "--corpus", "concepts:heldout:100", "--examples", 10,
        "--top", 4, "--resamples", 100, "--ablate", 2, "--ablate-random", 5,
    ]  # fmt: skip
    code, stdout, _ = _run(capsys, [*argv, "--out", tmp_path / "a", "--json"])
    assert code == 0
    ab = json.loads(stdout)["ablation"]
    assert ab["n_edges"] == 2 and ab["random"] == 5 and ab["contexts"] == 10
    assert set(ab) >= {"causal_fraction", "ci", "null", "agreement", "edges"}
    assert set(ab["edges"][0]) >= {"up", "down", "effect", "ci", "null", "verdict", "weight"}
    assert set(ab["agreement"]) == {"spearman_edges", "spearman_contexts", "relative_gap"}
    code, stdout, _ = _run(capsys, [*argv, "--out", tmp_path / "b"])
    assert code == 0 and "top edges causal" in stdout and "null band" in stdout
    assert "against random edges" in stdout
    code, _, err = _run(capsys, [*argv[:-2], "--ablate-random", 1, "--out", tmp_path / "c"])
    assert code == 2 and "--ablate-random must be" in err and not (tmp_path / "c").exists()


def test_reversed_sites_one_line_error(capsys, paths, tmp_path: Path) -> None:
    out = tmp_path / "bad"
    code, _, err = _run(capsys, [
        "analyze", "circuits", "--model", paths["model"], "--sae-up", paths["down"],
        "--sae-down", paths["up"], "--examples", 4, "--out", out,
    ])  # fmt: skip
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--site-down must be a site computed after" in errors[0]
    assert not out.exists()


def test_transcoder_checkpoints(capsys, paths, tmp_path: Path) -> None:
    """Transcoders from their checkpoints: latents read at the MLP input (source.site_in),
    written at its output (source.site_out); the next one read at its input."""
    g = torch.Generator().manual_seed(1)
    for name, layer in (("tc_up", 0), ("tc_down", 1)):
        tc = sae_from_weights(
            "transcoder", W_enc=torch.randn(32, 24, generator=g) / 6, b_enc=torch.zeros(24),
            W_dec=torch.nn.functional.normalize(torch.randn(24, 32, generator=g), dim=-1),
            b_dec=torch.zeros(32), k=4,
        )  # fmt: skip
        site_in = f"encoder.layer.{layer}.intermediate.input"
        source = {"site": site_in, "site_in": site_in, "model": "tiny",
                  "site_out": f"encoder.layer.{layer}.output.dense.output"}  # fmt: skip
        save_sae(tc, tmp_path / name, source=source, training={})
    code, stdout, _ = _run(capsys, [
        "analyze", "circuits", "--model", paths["model"], "--sae-up", tmp_path / "tc_up",
        "--sae-down", tmp_path / "tc_down", "--corpus", "concepts:heldout:100",
        "--examples", 6, "--top", 3, "--resamples", 100, "--out", tmp_path / "c", "--json",
    ])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert obj["site_up"] == "encoder.layer.0.output.dense.output"
    assert obj["site_up_in"] == "encoder.layer.0.intermediate.input"
    assert obj["site_down"] == "encoder.layer.1.intermediate.input"
    assert obj["method"] == "factored" and len(obj["edges"]) == 3
    code, _, stderr = _run(capsys, [
        "analyze", "circuits", "--model", paths["model"], "--sae-up", paths["up"],
        "--sae-down", tmp_path / "tc_down", "--corpus", "concepts:heldout:100",
        "--examples", 6, "--site-up-in", "encoder.layer.0.intermediate.input",
        "--out", tmp_path / "bad",
    ])  # fmt: skip
    assert code == 2 and "--site-up-in must be left out for an SAE" in stderr
    assert not (tmp_path / "bad").exists()
