"""`polysemy check`: JSON keys, the claims folder, --sae NAME=PATH, one-line errors (exit 2)
that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy.analysis.ablation_calibration import tiny_encoder
from polysemy.cli import main
from polysemy.sae import sae_from_weights, save_sae

SITE = "encoder.layer.0.output"
FAST = ["--sentences", "60", "--shifted", "30", "--edit-sentences", "20", "--resamples",
        "100", "--permutations", "100", "--ablation-examples", "4", "--random", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("check")
    loaded = tiny_encoder(seed=0)
    loaded.model.save_pretrained(root / "model")
    loaded.tokenizer.save_pretrained(root / "model")
    g = torch.Generator().manual_seed(0)
    W = torch.nn.functional.normalize(torch.randn(48, 32, generator=g), dim=-1)
    sae = sae_from_weights(
        "relu", W_enc=W.T.clone(), b_enc=torch.zeros(48), W_dec=W, b_dec=torch.zeros(32)
    )
    save_sae(sae, root / "sae", source={"site": SITE, "model": "tiny"}, training={})
    (root / "claims.toml").write_text(
        f'site = "{SITE}"\n[[claim]]\nneuron = 3\nconcept = "tense"\n'
        '[[claim]]\nfeature = 5\nsae = "l0"\nconcept = "food"\n'
        '[[claim]]\ndirection = "tense"\nconcept = "tense"\n'
    )
    (root / "unknown.toml").write_text('[[claim]]\nneuron = 3\nsite = "x"\nconcept = "tense"\n'
                                       'colour = "red"\n')  # fmt: skip
    (root / "twins.jsonl").write_text(
        '{"text": "The dog ran.", "twin": "The cat ran.", "concept": "animal"}\n{"text": 1}\n'
    )
    return {"root": root, "model": root / "model", "sae": root / "sae"}


def _run(capsys, argv: list[object]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_json_and_folder(capsys, paths, tmp_path: Path) -> None:
    out = tmp_path / "claims"
    code, stdout, _ = _run(capsys, ["check", paths["root"] / "claims.toml", "--model",
                                    paths["model"], "--sae", f"l0={paths['sae']}", "--out", out,
                                    "--json", *FAST])  # fmt: skip
    assert code == 0
    obj = json.loads(stdout)
    assert len(obj["claims"]) == 3
    for entry in obj["claims"]:
        assert set(entry) == {"claim", "verdict", "evidence", "sentence"}
        assert entry["verdict"] in ("supported", "partial", "refuted", "inconclusive")
        assert "auroc" in entry["evidence"]["heldout"]
    assert obj["claims"][1]["claim"] == {"feature": 5, "sae": "l0", "concept": "food"}
    assert obj["claims"][0]["evidence"]["ablation"]["n"] == 4
    saved = json.loads((out / "claims.json").read_text())
    assert saved == obj
    assert json.loads((out / "analysis.json").read_text())["kind"] == "claims"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--sae", "l0"], "--sae must be NAME=PATH"),
        (["--auroc", "1.5"], r"--auroc must be a number in \[0, 1\]"),
        (["--twins", "TWINS"], "twins line 2"),
        (["--sae", "l0=/no/such/sae"], "does not exist"),
    ],
)
def test_check_errors_exit_2_and_write_nothing(capsys, paths, tmp_path, extra, match) -> None:
    out = tmp_path / "claims"
    extra = [str(paths["root"] / "twins.jsonl") if e == "TWINS" else e for e in extra]
    code, stdout, err = _run(capsys, ["check", paths["root"] / "claims.toml", "--model",
                                      paths["model"], "--out", out, *FAST, *extra])  # fmt: skip
    assert code == 2 and stdout == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert match in err or __import__("re").search(match, err)
    assert not out.exists()


def test_check_unknown_key_exit_2(capsys, paths, tmp_path) -> None:
    out = tmp_path / "claims"
    code, _, err = _run(capsys, ["check", paths["root"] / "unknown.toml", "--model",
                                 paths["model"], "--out", out])  # fmt: skip
    assert code == 2 and "claim[0] must be keys among" in err and "'colour'" in err
    assert not out.exists()
