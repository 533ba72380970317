"""`polysemy sae eval | recover | import | export`, in process and once through a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from polysemy.activations.store import ActivationStore, StoreWriter
from polysemy.analysis.reconstruction import evaluate
from polysemy.analysis.recovery import load_truth, recovery_scores
from polysemy.cli import main
from polysemy.sae import load_sae, sae_from_weights, save_sae

D_IN, D_SAE, K = 8, 32, 4
METRICS = {
    "fvu",
    "mse",
    "explained_variance",
    "cosine",
    "l0",
    "dead_fraction",
    "dense_fraction",
    "l2_ratio",
}


@pytest.fixture()
def planted(tmp_path: Path) -> dict[str, Path]:
    """A tiny planted store (with truth) and a TopK SAE whose decoder holds the truth."""
    g = torch.Generator().manual_seed(0)
    features = torch.randn(16, D_IN, generator=g)
    features = features / features.norm(dim=1, keepdim=True)
    codes = torch.rand(600, 16, generator=g) * (torch.rand(600, 16, generator=g) < 0.15)
    acts = codes @ features + 0.01 * torch.randn(600, D_IN, generator=g)
    store = tmp_path / "acts"
    with StoreWriter(
        store, d_in=D_IN, dtype="float32", source={"model": "synth"}, shard_rows=128
    ) as w:
        w.append(acts)
    save_file({"features": features}, str(store / "truth.safetensors"))
    W_dec = torch.cat([features, torch.randn(D_SAE - 16, D_IN, generator=g)])
    W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
    sae = sae_from_weights(
        "topk",
        W_enc=W_dec.T.contiguous(),
        b_enc=torch.zeros(D_SAE),
        W_dec=W_dec,
        b_dec=torch.zeros(D_IN),
        k=K,
    )
    save_sae(sae, tmp_path / "sae", source={"model": "synth", "site": "planted"}, training={})
    return {"store": store, "sae": tmp_path / "sae", "tmp": tmp_path}


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


def eval_argv(planted: dict[str, Path], *extra: str) -> list[str]:
    return ["sae", "eval", "--sae", str(planted["sae"]), "--acts", str(planted["store"]), *extra]


def test_eval_json_matches_library_on_heldout(planted, capsys) -> None:  # type: ignore[no-untyped-def]
    got = run_json(capsys, eval_argv(planted, "--batch-size", "7"))
    assert set(got) >= METRICS and got["split"] == "heldout"
    store = ActivationStore(planted["store"])
    assert got["rows"] == store.split_rows("heldout") > 0
    lo, hi = store.split_range("heldout")
    direct = evaluate(load_sae(planted["sae"]), store.read(lo, hi), batch_size=10_000)
    for name in METRICS:
        assert got[name] == pytest.approx(getattr(direct, name), rel=1e-6, abs=1e-9), name
    assert got["l0"] <= K


def test_eval_other_split_and_text_output(planted, capsys) -> None:  # type: ignore[no-untyped-def]
    got = run_json(capsys, eval_argv(planted, "--split", "all", "--max-rows", "100"))
    assert got["rows"] == 100
    assert main(eval_argv(planted)) == 0
    assert "fvu" in capsys.readouterr().out


def test_recover_json(planted, capsys) -> None:  # type: ignore[no-untyped-def]
    got = run_json(
        capsys,
        [
            "sae",
            "recover",
            "--sae",
            str(planted["sae"]),
            "--truth",
            str(planted["store"] / "truth.safetensors"),
        ],
    )
    # the decoder contains every planted feature exactly
    assert got["mean_max_cosine"] == pytest.approx(1.0)
    assert got["fraction_recovered"] == 1.0
    assert got["n_features"] == 16 and got["d_sae"] == D_SAE
    truth = load_truth(planted["store"] / "truth.safetensors")
    assert got == recovery_scores(load_sae(planted["sae"]).W_dec, truth).metrics()


def test_export_then_import_round_trip(planted, capsys) -> None:  # type: ignore[no-untyped-def]
    tmp = planted["tmp"]
    x = ActivationStore(planted["store"]).read(0, 50)
    original = load_sae(planted["sae"])
    for fmt in ("saelens", "sparsify"):
        got = run_json(
            capsys,
            ["sae", "export", "--to", fmt, "--sae", str(planted["sae"]), "--out", str(tmp / fmt)],
        )
        assert got["to"] == fmt and got["d_sae"] == D_SAE
        got = run_json(
            capsys,
            ["sae", "import", "--from", fmt, str(tmp / fmt), "--out", str(tmp / f"back-{fmt}")],
        )
        assert got["arch"] == "topk" and got["k"] == K
        back = load_sae(tmp / f"back-{fmt}")
        with torch.no_grad():
            torch.testing.assert_close(back.encode(x), original.encode(x))
            torch.testing.assert_close(back(x).x_hat, original(x).x_hat)
    config = json.loads((tmp / "back-saelens" / "config.json").read_text())
    assert config["format"] == "polysemy.sae/1"
    assert config["source"]["site"] == "planted"


def test_import_real_saelens_folder(planted, capsys) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae_lens = pytest.importorskip("sae_lens")
    peer = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE))
    with torch.no_grad():
        for p in peer.parameters():
            p.normal_(0, 0.3)
        peer.threshold.abs_()
    peer.save_model(str(planted["tmp"] / "peer"))
    run_json(
        capsys,
        [
            "sae",
            "import",
            "--from",
            "saelens",
            str(planted["tmp"] / "peer"),
            "--out",
            str(planted["tmp"] / "imp"),
        ],
    )
    ours = load_sae(planted["tmp"] / "imp")
    x = ActivationStore(planted["store"]).read(0, 50)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), peer.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.decode(ours.encode(x)), peer(x), rtol=1e-5, atol=1e-5)


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors exit from inside the parser
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert match in err[0], err[0]


def test_bad_input_is_one_line_exit_2(planted, capsys) -> None:  # type: ignore[no-untyped-def]
    sae, store, tmp = str(planted["sae"]), str(planted["store"]), planted["tmp"]
    one_line_error(
        capsys, ["sae", "eval", "--sae", str(tmp / "nope"), "--acts", store], "does not exist"
    )
    one_line_error(
        capsys, ["sae", "eval", "--sae", sae, "--acts", str(tmp / "nope")], "activations not found"
    )
    one_line_error(
        capsys, ["sae", "eval", "--sae", sae, "--acts", store, "--split", "test"], "invalid choice"
    )
    one_line_error(
        capsys,
        ["sae", "eval", "--sae", sae, "--acts", store, "--batch-size", "0"],
        "--batch-size must be an int >= 1; got 0",
    )
    wide = tmp / "wide.npy"
    import numpy as np

    np.save(wide, np.random.default_rng(0).standard_normal((50, D_IN + 1)).astype(np.float32))
    one_line_error(capsys, ["sae", "eval", "--sae", sae, "--acts", str(wide)], "d_in=9")
    save_file({"features": torch.randn(3, D_IN + 1)}, str(tmp / "t.safetensors"))
    one_line_error(
        capsys, ["sae", "recover", "--sae", sae, "--truth", str(tmp / "t.safetensors")], "d_in=9"
    )
    one_line_error(
        capsys,
        [
            "sae",
            "recover",
            "--sae",
            sae,
            "--truth",
            str(planted["store"] / "truth.safetensors"),
            "--threshold",
            "2",
        ],
        "threshold must be",
    )
    one_line_error(
        capsys,
        ["sae", "import", "--from", "saelens", str(tmp / "nope"), "--out", str(tmp / "o")],
        "does not exist",
    )
    one_line_error(
        capsys,
        ["sae", "import", "--from", "hf", str(tmp), "--out", str(tmp / "o")],
        "invalid choice",
    )
    (tmp / "pickle").mkdir()
    torch.save({"x": torch.zeros(1)}, tmp / "pickle" / "sae_weights.safetensors")
    (tmp / "pickle" / "cfg.json").write_text(
        json.dumps({"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE})
    )
    one_line_error(
        capsys,
        ["sae", "import", "--from", "saelens", str(tmp / "pickle"), "--out", str(tmp / "o")],
        "not a readable safetensors",
    )
    assert not (tmp / "o").exists()
    # an --out holding something else is refused before any work
    one_line_error(
        capsys,
        ["sae", "import", "--from", "saelens", str(tmp / "pickle"), "--out", store],
        "already holds",
    )
    one_line_error(
        capsys, ["sae", "export", "--to", "sparsify", "--sae", sae, "--out", store], "is not empty"
    )


def test_export_refuses_relu_to_sparsify(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    relu = sae_from_weights(
        "relu",
        W_enc=torch.randn(D_IN, D_SAE),
        b_enc=torch.zeros(D_SAE),
        W_dec=torch.randn(D_SAE, D_IN),
        b_dec=torch.zeros(D_IN),
    )
    save_sae(relu, tmp_path / "relu", source={}, training={})
    one_line_error(
        capsys,
        [
            "sae",
            "export",
            "--to",
            "sparsify",
            "--sae",
            str(tmp_path / "relu"),
            "--out",
            str(tmp_path / "x"),
        ],
        "sparsify holds only TopK",
    )
    assert not (tmp_path / "x").exists()


def test_help_and_subprocess_json(planted) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "polysemy",
            "sae",
            "recover",
            "--sae",
            str(planted["sae"]),
            "--truth",
            str(planted["store"]),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fraction_recovered"] == 1.0
    for cmd in ("eval", "recover", "import", "export"):
        with pytest.raises(SystemExit) as exc:
            main(["sae", cmd, "--help"])
        assert exc.value.code == 0
