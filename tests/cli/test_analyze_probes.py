"""`polysemy analyze probes` and `polysemy analyze edits`: JSON keys, folders, one-line errors
that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy.activations.harvest import HarvestConfig, harvest
from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.cli import main
from polysemy.corpora import open_corpus
from polysemy.sae import sae_from_weights, save_sae

SITE = "encoder.layer.0.output"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analyze-probes")
    loaded = tiny_encoder(seed=0)
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    config = HarvestConfig(sites=(SITE,), tokens=10**6, seq_len=64, dtype="float32")
    harvest(loaded, open_corpus("concepts:train:200"), config, out=root / "acts")
    g = torch.Generator().manual_seed(0)
    W = torch.nn.functional.normalize(torch.randn(48, 32, generator=g), dim=-1)
    sae = sae_from_weights(
        "relu", W_enc=W.T.clone(), b_enc=torch.zeros(48), W_dec=W, b_dec=torch.zeros(32)
    )
    save_sae(sae, root / "sae", source={"site": SITE, "model": "tiny"}, training={})
    (root / "twins.jsonl").write_text(
        '{"text": "The dog ran.", "twin": "The cat ran.", "concept": "animal"}\n{"text": 1}\n'
    )
    return {"root": root, "model": root / "model", "acts": root / "acts", "sae": root / "sae",
            "twins": root / "twins.jsonl"}  # fmt: skip


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_probes_json(capsys, paths, tmp_path: Path) -> None:
    out = tmp_path / "probes"
    code, stdout, _ = _run(capsys, [
        "analyze", "probes", "--acts", paths["acts"], "--sae", paths["sae"], "--model",
        paths["model"], "--heldout-sentences", 50, "--concept", "plurality", "--resamples", 100,
        "--out", out, "--json",
    ])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert {"concept", "rows", "positive_rate", "probes", "null", "out"} <= set(obj)
    assert [p["kind"] for p in obj["probes"]] == ["neuron", "neurons", "direction", "feature",
                                                  "features"]  # fmt: skip
    for p in obj["probes"]:
        assert {"accuracy", "control_accuracy", "selectivity", "gaps", "chance"} <= set(p)
        assert set(p["gaps"]) == {"concepts:heldout"}
    assert (out / "analysis.json").is_file() and (out / "weights.safetensors").is_file()
    code, stdout, _ = _run(capsys, [
        "analyze", "probes", "--acts", paths["acts"], "--concept", "plurality",
        "--resamples", 100, "--out", out, "--force",
    ])  # fmt: skip
    assert code == 0 and "selectivity" in stdout and "skipped (no SAE)" in stdout


def test_edits_json(capsys, paths, tmp_path: Path) -> None:
    out = tmp_path / "edits"
    code, stdout, _ = _run(capsys, [
        "analyze", "edits", "--model", paths["model"], "--sae", paths["sae"], "--concept",
        "tense", "--targets", "feature:3,neuron:7", "--sentences", 60, "--resamples", 100,
        "--permutations", 100, "--out", out, "--json",
    ])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert {"site", "concept", "pairs", "concepts", "results", "null", "out"} <= set(obj)
    assert obj["site"] == SITE and obj["pairs"]["tense"] == 60
    r = obj["results"][0]
    assert {"target", "sensitivity", "specificity", "leak", "others", "control",
            "control_split"} <= set(r)  # fmt: skip
    assert (out / "deltas.safetensors").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["probes", "--acts", "{acts}", "--concept", "flavour"], "error: --concept must be one of"),
        (["probes", "--acts", "{acts}", "--concept", "negation", "--max-rows", "10"],
         "error: --concept must be a "),
        (["probes", "--acts", "{acts}", "--value", "future"], "error: --value must be a value"),
        (["edits", "--model", "{model}", "--sae", "{sae}", "--targets", "feature:48"],
         "error: --targets must be features below d_sae=48"),
        (["edits", "--model", "{model}", "--site", SITE, "--targets", "neuron:1", "--twins",
          "{twins}"], "error: --twins line 2: \"text\" and \"twin\""),
        (["edits", "--model", "{model}", "--site", SITE, "--targets", "neuron:1", "--concept",
          "flavour"], "error: --concept must be one of"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_no_folder(capsys, paths, tmp_path, argv, message) -> None:
    out = tmp_path / "never"
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    code, _, stderr = _run(capsys, ["analyze", *argv, "--out", out])
    assert code == 2
    assert stderr.startswith(message), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not out.exists()
