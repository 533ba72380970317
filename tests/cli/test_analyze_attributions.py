"""`polysemy analyze attributions`: --json keys, the folder, one-line errors with no folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.cli import main
from polysemy.sae import sae_from_weights, save_sae

SITE = "encoder.layer.1.output"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attributions")
    loaded = tiny_encoder(seed=0)
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    W = torch.nn.functional.normalize(torch.randn(48, 32, generator=torch.Generator()), dim=-1)
    sae = sae_from_weights(
        "relu", W_enc=W.T.clone(), b_enc=torch.zeros(48), W_dec=W, b_dec=torch.zeros(32)
    )
    save_sae(sae, root / "sae", source={"site": SITE, "model": "tiny"}, training={})
    return {"root": root, "model": root / "model", "sae": root / "sae"}


def _run(capsys, argv: list) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_and_folder(capsys, paths, tmp_path: Path) -> None:
    out = tmp_path / "attr"
    code, stdout, _ = _run(capsys, [
        "analyze", "attributions", "--model", paths["model"], "--sae", paths["sae"],
        "--target", "feature:3", "--examples", 3, "--steps", 4, "--seeds", 2,
        "--noise-samples", 2, "--methods", "saliency,integrated_gradients",
        "--baselines", "zero,noise", "--resamples", 100, "--out", out, "--json",
    ])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert {"site", "target", "n", "comparisons", "ig_delta"} <= set(obj)
    assert obj["site"] == SITE and obj["n"] == 3  # the site read from the SAE's checkpoint
    assert set(obj["comparisons"]) == {
        "control/saliency", "control/integrated_gradients", "baselines/zero~noise",
        "seeds/integrated_gradients(noise)",
    }  # fmt: skip
    for stats in obj["comparisons"].values():
        assert set(stats) == {"spearman", "top_k"}
        assert {"mean", "ci", "n", "quantiles", "null_mean", "null_range", "verdict"} <= set(
            stats["spearman"]
        )
    assert (out / "analysis.json").is_file() and (out / "stability.safetensors").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sae", "{sae}", "--target", "feature:48"],
         "error: --target must be a feature below d_sae=48"),
        (["--target", "neuron:32", "--site", SITE],
         "error: --target must be a neuron below the site's width 32"),
        (["--target", "neuron:1", "--site", SITE, "--methods", "lime"],
         "error: --methods must be one of saliency"),
        (["--target", "neuron:1", "--site", SITE, "--baselines", "zero,ones"],
         "error: --baselines must be one of zero"),
        (["--target", "direction", "--site", SITE], "error: --direction must be a file"),
        (["--target", "direction", "--site", SITE, "--direction", "{root}/missing.npy"],
         "error: readout '"),
        (["--target", "cat:1", "--site", SITE], "error: --target must be feature:F"),
        (["--target", "neuron:1"], "error: --site must be given"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_no_folder(capsys, paths, tmp_path, argv, message) -> None:
    out = tmp_path / "never"
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    code, _, stderr = _run(capsys, [
        "analyze", "attributions", *argv, "--model", paths["model"], "--out", out,
    ])  # fmt: skip
    assert code == 2
    assert stderr.startswith(message), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not out.exists()
