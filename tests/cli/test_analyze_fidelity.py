"""`polysemy analyze fidelity` and `polysemy analyze ablate`: JSON keys, folders, one-line
errors that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.cli import main
from polysemy.sae import sae_from_weights, save_sae

SITE = "encoder.layer.0.output"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analyze")
    loaded = tiny_encoder(seed=0)
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    g = torch.Generator().manual_seed(0)
    for name, d_in in (("sae", 32), ("narrow", 16)):
        W = torch.nn.functional.normalize(torch.randn(48, d_in, generator=g), dim=-1)
        sae = sae_from_weights(
            "relu", W_enc=W.T.clone(), b_enc=torch.zeros(48), W_dec=W, b_dec=torch.zeros(d_in)
        )
        save_sae(sae, root / name, source={"site": SITE, "model": "tiny"}, training={})
    return {"root": root, "model": root / "model", "sae": root / "sae", "narrow": root / "narrow"}


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fidelity_json(capsys, paths, tmp_path: Path) -> None:
    out = tmp_path / "fid"
    code, stdout, _ = _run(capsys, [
        "analyze", "fidelity", "--model", paths["model"], "--sae", paths["sae"],
        "--corpus", "concepts:heldout:200", "--examples", 30, "--resamples", 100,
        "--out", out, "--json",
    ])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert {"fvu", "embedding_cosine", "similarity_spearman", "recovered_vs_zero",
            "recovered_vs_mean", "n"} <= set(obj)  # fmt: skip
    assert obj["n"] == 30 and obj["site"] == SITE  # read from the SAE's checkpoint
    assert (out / "analysis.json").is_file() and (out / "per_example.safetensors").is_file()


def test_ablate_json(capsys, paths, tmp_path: Path) -> None:
    out = tmp_path / "abl"
    code, stdout, _ = _run(capsys, [
        "analyze", "ablate", "--model", paths["model"], "--sae", paths["sae"],
        "--corpus", "concepts:heldout:200", "--examples", 30, "--targets", "feature:3,neuron:7",
        "--random", 19, "--out", out, "--json",
    ])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert set(obj) >= {"results", "null"}
    targets = [r["target"] for r in obj["results"]]
    assert targets[:2] == ["feature:3", "neuron:7"] and targets[2] == "random:0"
    for r in obj["results"]:
        assert set(r) >= {"target", "mean_effect", "ci", "quantiles", "frac_above_null"}
    code, stdout, _ = _run(capsys, [
        "analyze", "ablate", "--model", paths["model"], "--sae", paths["sae"],
        "--corpus", "concepts:heldout:200", "--examples", 30, "--targets", "feature:3",
        "--random", 19, "--out", out, "--force",
    ])  # fmt: skip
    assert code == 0 and "random directions flagged" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fidelity", "--sae", "{narrow}"], "error: --sae must be an SAE with d_in=32"),
        (["fidelity", "--sae", "{sae}", "--site", "encoder.nope.output"],
         "error: --site must be a site of the model"),
        (["fidelity", "--sae", "{sae}", "--examples", "5000"], "error: --examples must be at most"),
        (["fidelity", "--sae", "{root}/missing"], "error: --sae '"),
        (["ablate", "--targets", "neuron:99", "--site", SITE],
         "error: --targets must be neurons below the site's width 32"),
        (["ablate", "--targets", "neuron:1", "--site", SITE, "--examples", "5000"],
         "error: --examples must be at most"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_no_folder(capsys, paths, tmp_path, argv, message) -> None:
    out = tmp_path / "never"
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    code, _, stderr = _run(capsys, [
        "analyze", *argv, "--model", paths["model"], "--corpus", "concepts:heldout:100",
        "--out", out,
    ])  # fmt: skip
    assert code == 2
    assert stderr.startswith(message), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not out.exists()
