"""`polysemy analyze geometry`: JSON keys match the library, one-line refusals, no folder
left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polysemy.activations.store import StoreWriter
from polysemy.analysis.folder import read_analysis
from polysemy.cli import main
from polysemy.sae import sae_from_weights, save_sae


def write_sae(path: Path, features: torch.Tensor) -> None:
    d_sae, d_in = features.shape
    sae = sae_from_weights(
        "topk",
        W_enc=features.T.contiguous(),
        b_enc=torch.zeros(d_sae),
        W_dec=features,
        b_dec=torch.zeros(d_in),
        k=4,
    )
    save_sae(sae, path, source={"model": "synth"}, training={})


@pytest.fixture()
def planted(tmp_path: Path) -> dict[str, str]:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(20, 12, generator=g)
    features = features / features.norm(dim=1, keepdim=True)
    codes = torch.rand(4000, 20, generator=g) * (torch.rand(4000, 20, generator=g) < 0.2)
    with StoreWriter(tmp_path / "acts", d_in=12, dtype="float32", source={"model": "s"}) as w:
        w.append(codes @ features)
    write_sae(tmp_path / "sae", features)
    write_sae(tmp_path / "sae8", features[:, :8] / features[:, :8].norm(dim=1, keepdim=True))
    return {k: str(tmp_path / k) for k in ("acts", "sae", "sae8")} | {"tmp": str(tmp_path)}


def argv(planted: dict[str, str], *extra: str, sae: str = "sae", out: str = "geo") -> list[str]:
    return [
        "analyze", "geometry", "--sae", planted[sae], "--acts", planted["acts"],
        "--out", str(Path(planted["tmp"]) / out), "--resamples", "100",
        "--permutations", "100", "--min-count", "5", *extra,
    ]  # fmt: skip


def test_json_keys_and_folder(planted, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([*argv(planted), "--json", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    got = json.loads(lines[0])
    for key in ("dimensionality_mean", "interference_p99", "welch_bound", "verdict", "n"):
        assert key in got
    assert set(got["cooccurrence_overlap"]) >= {"rho", "ci", "null_ci"}
    assert got["n"] == 20 * 19 // 2 and got["d_sae"] == 20
    folder = read_analysis(Path(planted["tmp"]) / "geo", "geometry")
    assert folder.summary["cooccurrence_overlap"] == got["cooccurrence_overlap"]
    assert folder.inputs["seed"] == 3 and folder.inputs["sae_path"] == planted["sae"]
    assert main([*argv(planted, out="geo2"), "--measure", "pmi"]) == 0
    assert "overlap vs co-occurrence (pmi" in capsys.readouterr().out


def one_line_error(capsys, args: list[str], match: str) -> None:  # type: ignore[no-untyped-def]
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err


def test_bad_input(planted, capsys) -> None:  # type: ignore[no-untyped-def]
    one_line_error(capsys, argv(planted, sae="sae8"), "has d_in=8 but acts")
    one_line_error(capsys, argv(planted, "--min-count", "99999"), "--min-count must be")
    one_line_error(capsys, argv(planted, "--top-features", "3"), "--top-features must be")
    one_line_error(capsys, argv(planted, "--measure", "cos"), "invalid choice")
    bad = argv(planted)
    bad[bad.index("--sae") + 1] = planted["tmp"] + "/missing"
    one_line_error(capsys, bad, "--sae")
    assert not (Path(planted["tmp"]) / "geo").exists()
