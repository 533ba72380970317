"""The trainer: recovery on planted features, units folded back, resume after SIGKILL,
bad input refused."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from polysemy.activations.store import ActivationStore
from polysemy.sae import SAEConfig, TrainConfig, build_sae, load_sae, train_sae
from polysemy.sae.io import read_safetensors
from polysemy.synth import SynthConfig, write_synth_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matrices: a second OpenMP thread only adds contention on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "acts"
    write_synth_store(out, SynthConfig(n_features=64, d_in=16, active=3, tokens=40_000, seed=0))
    return out


def _mean_max_cos(truth: torch.Tensor, W_dec: torch.Tensor) -> float:
    W = W_dec / W_dec.norm(dim=1, keepdim=True)
    return float((truth @ W.detach().T).max(dim=1).values.mean())


def test_topk_recovers_planted_features(planted: Path, tmp_path: Path) -> None:
    store = ActivationStore(planted)
    planted_truth = store.truth()
    assert planted_truth is not None
    truth = planted_truth["features"]
    result = train_sae(
        store,
        SAEConfig(arch="topk", d_in=16, d_sae=128, k=3),
        TrainConfig(tokens=120_000, batch_size=256, lr=1e-2),
        out=tmp_path / "sae",
    )
    assert _mean_max_cos(truth, result.sae.W_dec) > 0.95
    assert result.heldout is not None and result.heldout["fvu"] < 0.3
    assert result.l0 <= 3.0
    cfg = json.loads((tmp_path / "sae" / "config.json").read_text())
    assert cfg["source"]["acts"] == str(planted) and cfg["training"]["tokens"] == 120_000
    assert cfg["input_scale"] == pytest.approx(result.input_scale)


@pytest.mark.parametrize("arch", ["relu", "batchtopk", "jumprelu"])
def test_every_architecture_trains_and_reduces_error(arch: str, planted: Path) -> None:
    store = ActivationStore(planted)
    k = 3 if arch == "batchtopk" else None
    # relu's default L1 coefficient (5) suits wide layers; at d_in 16 it would kill every latent.
    coefficient = 0.5 if arch == "relu" else None
    result = train_sae(
        store,
        SAEConfig(arch=arch, d_in=16, d_sae=64, k=k, sparsity_coefficient=coefficient),
        TrainConfig(tokens=40_960, batch_size=512, lr=2e-3, log_every=10),
    )
    first, last = result.history[0]["fvu"], result.history[-1]["fvu"]
    assert last < first
    assert result.heldout is not None and result.heldout["fvu"] < 0.9


def test_saved_weights_work_in_original_units(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = 40.0 * torch.randn(4096, 8, generator=g) + 3.0  # far from E||x||^2 = d_in
    config = SAEConfig(arch="jumprelu", d_in=8, d_sae=16)
    result = train_sae(x, config, TrainConfig(tokens=8192, batch_size=512), out=tmp_path / "s")
    scale = result.input_scale
    assert scale == pytest.approx((8 / x.pow(2).sum(1).mean()).sqrt().item(), rel=0.1)
    # The training-time SAE (scaled units) from the final state.
    state = read_safetensors(tmp_path / "s" / "state" / "state.safetensors")
    training_sae = build_sae(config)
    training_sae.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    training_sae.eval()
    saved = load_sae(tmp_path / "s")
    raw = x[:100]
    torch.testing.assert_close(
        saved(raw).x_hat, training_sae(raw * scale).x_hat / scale, rtol=1e-4, atol=1e-3
    )
    torch.testing.assert_close(
        saved.encode(raw), training_sae.encode(raw * scale) / scale, rtol=1e-4, atol=1e-4
    )


def test_nonfinite_rows_are_named(tmp_path: Path) -> None:
    x = torch.randn(2048, 8)
    x[17, 3] = float("nan")
    x[900, 0] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or Inf in 2 rows \(row 17, 900\)"):
        train_sae(
            x,
            SAEConfig(arch="topk", d_in=8, d_sae=16, k=2),
            TrainConfig(tokens=1024, batch_size=512),
        )
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("acts", "error", "match"),
    [
        (torch.zeros(2048, 8), ValueError, "are all zero; nothing to learn"),
        (torch.randn(300, 8), ValueError, "batch_size 512 is larger than the 300 rows given"),
        (
            torch.randn(4, 512, 8),
            ValueError,
            r"must be 2-D \[rows, d_in\]; got shape \[4, 512, 8\]",
        ),
        (
            torch.ones(2048, 8, dtype=torch.long),
            TypeError,
            "must be floating point; got torch.int64",
        ),
    ],
)
def test_unusable_activations_are_refused(acts: torch.Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        train_sae(
            acts,
            SAEConfig(arch="relu", d_in=8, d_sae=16),
            TrainConfig(tokens=1024, batch_size=512),
        )


def test_configs_of_the_wrong_type_are_refused() -> None:
    x, config, train = torch.randn(2048, 8), SAEConfig(arch="relu", d_in=8, d_sae=16), TrainConfig()
    with pytest.raises(TypeError, match="config must be an SAEConfig; got dict"):
        train_sae(x, {"arch": "relu"}, train)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train must be a TrainConfig; got dict"):
        train_sae(x, config, {"tokens": 1024})  # type: ignore[arg-type]
    from polysemy.sae.optim import ScheduleFreeSignum

    with pytest.raises(ValueError, match=r"momentum must be in \(0, 1\); got 1.0"):
        ScheduleFreeSignum([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=1.0)


def test_d_in_mismatch_and_busy_out(tmp_path: Path) -> None:
    x = torch.randn(2048, 8)
    with pytest.raises(ValueError, match=r"d_in mismatch: the SAE has d_in=6 .* width 8"):
        train_sae(
            x, SAEConfig(arch="relu", d_in=6, d_sae=16), TrainConfig(tokens=1024, batch_size=512)
        )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a polysemy run"):
        train_sae(
            x,
            SAEConfig(arch="relu", d_in=8, d_sae=16),
            TrainConfig(tokens=1024, batch_size=512),
            out=tmp_path / "busy",
        )
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_state_without_resume_is_refused_and_resume_checks_config(tmp_path: Path) -> None:
    x = torch.randn(2048, 8)
    cfg = SAEConfig(arch="topk", d_in=8, d_sae=16, k=2)
    train = TrainConfig(tokens=2048, batch_size=512, checkpoint_every=1)
    train_sae(x, cfg, train, out=tmp_path / "s")
    with pytest.raises(ValueError, match="pass resume=True to continue it or force=True"):
        train_sae(x, cfg, train, out=tmp_path / "s")
    with pytest.raises(ValueError, match=r"training options differ \(lr\)"):
        train_sae(
            x,
            cfg,
            TrainConfig(tokens=2048, batch_size=512, lr=1e-2),
            out=tmp_path / "s",
            resume=True,
        )
    other = SAEConfig(arch="topk", d_in=8, d_sae=16, k=3)
    with pytest.raises(ValueError, match="cannot resume"):
        train_sae(x, other, train, out=tmp_path / "s", resume=True)


def test_resume_keeps_the_precision_the_state_chose(tmp_path: Path) -> None:
    # `auto` resolves per machine; a resumed run must keep the state's choice, not re-resolve.
    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    cfg = SAEConfig(arch="topk", d_in=8, d_sae=64, k=2)
    out = tmp_path / "s"
    first = train_sae(x, cfg, TrainConfig(tokens=2048, batch_size=512), out=out)
    auto = TrainConfig().resolved_selection_dtype(torch.device("cpu"))
    assert first.selection_dtype == str(auto).removeprefix("torch.")
    state_json = out / "state" / "state.json"
    state = json.loads(state_json.read_text())
    assert state["selection_dtype_resolved"] == first.selection_dtype
    # As if the state came from a machine where auto chose the other precision.
    other = "float32" if first.selection_dtype == "bfloat16" else "bfloat16"
    state["selection_dtype_resolved"] = other
    state_json.write_text(json.dumps(state))
    # Resuming the finished run trains nothing, reports its logged figures and keeps both
    # the weights and the state's precision.
    same = TrainConfig(tokens=2048, batch_size=512)
    resumed = train_sae(x, cfg, same, out=out, resume=True)
    assert resumed.resumed_from_step == 4 and resumed.selection_dtype == other
    assert resumed.summary()["selection_dtype"] == other
    assert resumed.fvu == first.fvu and resumed.l0 == first.l0
    torch.testing.assert_close(resumed.sae.W_dec, first.sae.W_dec, rtol=0, atol=0)
    dense = train_sae(x, SAEConfig(arch="relu", d_in=8, d_sae=16), same)
    assert dense.selection_dtype is None  # only the TopK family chooses latents


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("json", "is not valid JSON"),
        ("list", "must hold format 'polysemy.sae-state/1'; got 'list'"),
        ("format", "must hold format 'polysemy.sae-state/1'; got 'other/9'"),
        ("keys", "lacks step$"),
        ("tensors", "does not fit this SAE"),
    ],
)
def test_resume_refuses_a_damaged_state(tmp_path: Path, damage: str, match: str) -> None:
    from safetensors.torch import save_file

    x = torch.randn(2048, 8, generator=torch.Generator().manual_seed(0))
    cfg = SAEConfig(arch="topk", d_in=8, d_sae=16, k=2)
    train = TrainConfig(tokens=2048, batch_size=512)
    out = tmp_path / "s"
    train_sae(x, cfg, train, out=out)
    state_json = out / "state" / "state.json"
    state = json.loads(state_json.read_text())
    if damage == "json":
        state_json.write_text("{not json")
    elif damage == "list":
        state_json.write_text("[1, 2]")
    elif damage == "format":
        state_json.write_text(json.dumps({**state, "format": "other/9"}))
    elif damage == "keys":
        state_json.write_text(json.dumps({k: v for k, v in state.items() if k != "step"}))
    else:  # tensors of another width under the right names
        other = build_sae(SAEConfig(arch="topk", d_in=8, d_sae=32, k=2))
        tensors = {f"model.{k}": v.contiguous() for k, v in other.state_dict().items()}
        save_file(tensors, str(out / "state" / "state.safetensors"))
    with pytest.raises(ValueError, match=match):
        train_sae(x, cfg, train, out=out, resume=True)


def _cli(out: Path, acts: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "polysemy",
        "sae",
        "train",
        "--acts",
        str(acts),
        "--arch",
        "topk",
        "--d-sae",
        "64",
        "--k",
        "3",
        "--tokens",
        str(1500 * 64),
        "--batch-size",
        "64",
        "--lr",
        "1e-3",
        "--seed",
        "1",
        "--threads",
        "1",
        "--out",
        str(out),
        "--json",
        *extra,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_resume_after_sigkill_reaches_the_same_weights(planted: Path, tmp_path: Path) -> None:
    ref = subprocess.run(
        _cli(tmp_path / "ref", planted), env=_env(), capture_output=True, text=True
    )
    assert ref.returncode == 0, ref.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(killed, planted, "--checkpoint-every", "100"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = killed / "state" / "state.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.is_file() and json.loads(state.read_text())["step"] >= 200:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (killed / "config.json").exists()  # nothing final was written
    step = json.loads(state.read_text())["step"]
    assert 0 < step < 1500
    resumed = subprocess.run(
        _cli(killed, planted, "--checkpoint-every", "100", "--resume"),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed_from_step"] == step and summary["steps"] == 1500
    a = read_safetensors(tmp_path / "ref" / "sae.safetensors")
    b = read_safetensors(killed / "sae.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_signum_optimizer_trains(planted: Path) -> None:
    result = train_sae(
        ActivationStore(planted),
        SAEConfig(arch="topk", d_in=16, d_sae=64, k=3),
        TrainConfig(tokens=40_960, batch_size=512, lr=2e-3, optimizer="signum", log_every=10),
    )
    assert result.history[-1]["fvu"] < 0.8 * result.history[0]["fvu"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tokens": 100, "batch_size": 512}, "tokens must be >= batch_size=512; got 100"),
        ({"optimizer": "sgd"}, "optimizer must be one of adam, signum, schedule-free-signum"),
        ({"lr": 0.0}, "lr must be a number > 0; got 0.0"),
        ({"lr_decay_fraction": 1.5}, r"lr_decay_fraction must be a number in \[0, 1\]; got 1.5"),
    ],
)
def test_train_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_learning_rate_schedule() -> None:
    train = TrainConfig(
        tokens=100 * 10, batch_size=10, lr=1.0, lr_warmup_steps=10, lr_decay_fraction=0.2
    )
    lrs = [train.lr_at(s, d_sae=64) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[50] == 1.0 and lrs[80] == pytest.approx(1.0) and lrs[99] == pytest.approx(0.05)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_schedule_free_signum_update_rule() -> None:
    from polysemy.sae.optim import ScheduleFreeSignum

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = ScheduleFreeSignum([p], lr=0.5, momentum=0.9)
    zs = []
    z = p.detach().clone()
    for grad in ([1.0, -1.0], [2.0, 3.0], [-1.0, 0.5]):
        p.grad = torch.tensor(grad)
        opt.step()
        z = z - 0.5 * torch.tensor(grad).sign()
        zs.append(z.clone())
    x = torch.stack(zs).mean(0)  # equal lr: the plain average of the z iterates
    torch.testing.assert_close(opt.averaged(p), x)
    torch.testing.assert_close(p.detach(), 0.1 * zs[-1] + 0.9 * x)


def test_schedule_free_signum_constraint_on_y_moves_x_not_z() -> None:
    # A projection applied to the parameter (y) between steps, like the unit-norm decoder
    # rows, must leave the base iterate z alone and land in the average x scaled by
    # 1 / momentum. Recovering z from y instead amplified it by 1 / (1 - momentum) (the bug
    # that cost 0.06 held-out FVU on MiniLM layer 3).
    from polysemy.sae.optim import ScheduleFreeSignum

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = ScheduleFreeSignum([p], lr=0.5, momentum=0.9)
    p.grad = torch.tensor([1.0, -1.0])
    opt.step()
    z = opt.state[p]["z"].clone()
    x = opt.averaged(p).clone()
    delta = torch.tensor([0.1, -0.3])
    with torch.no_grad():
        p.add_(delta)  # the "constraint"
    torch.testing.assert_close(opt.state[p]["z"], z)
    torch.testing.assert_close(opt.averaged(p), x + delta / 0.9)
    p.grad = torch.tensor([-1.0, -1.0])
    opt.step()
    z_next = z + 0.5
    torch.testing.assert_close(opt.state[p]["z"], z_next)
    x_next = 0.5 * (x + delta / 0.9) + 0.5 * z_next  # c = 1/2 at the second equal-lr step
    torch.testing.assert_close(opt.averaged(p), x_next)
    torch.testing.assert_close(p.detach(), 0.1 * z_next + 0.9 * x_next)


def test_schedule_free_signum_trains_and_saves_the_trained_parameters(
    planted: Path, tmp_path: Path
) -> None:
    result = train_sae(
        ActivationStore(planted),
        SAEConfig(arch="topk", d_in=16, d_sae=64, k=3),
        TrainConfig(
            tokens=40_960, batch_size=512, lr=1e-2, optimizer="schedule-free-signum", log_every=10
        ),
        out=tmp_path / "s",
    )
    assert result.heldout is not None and result.heldout["fvu"] < 0.5
    assert result.history[-1]["lr"] == 1e-2  # no decay
    saved = load_sae(tmp_path / "s")
    torch.testing.assert_close(saved.W_dec, result.sae.W_dec)
    # Saved: the parameters as trained (y, where every training statistic was measured),
    # not the schedule-free average x, whose decoder rows drift off unit norm.
    state = read_safetensors(tmp_path / "s" / "state" / "state.safetensors")
    torch.testing.assert_close(saved.W_dec, state["model.W_dec"], rtol=0, atol=0)
    torch.testing.assert_close(saved.W_dec.norm(dim=1), torch.ones(64))


OPTIMIZERS = ("adam", "signum", "schedule-free-signum")
ARCHS = ("relu", "topk", "batchtopk", "jumprelu")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_reported_figures_are_those_of_the_saved_weights_on_heldout_rows(
    optimizer: str, arch: str, planted: Path, tmp_path: Path
) -> None:
    from polysemy.analysis.reconstruction import evaluate

    store = ActivationStore(planted)
    k = 3 if arch in ("topk", "batchtopk") else None
    coefficient = 0.5 if arch == "relu" else None  # see test_every_architecture_trains...
    result = train_sae(
        store,
        SAEConfig(arch=arch, d_in=16, d_sae=64, k=k, sparsity_coefficient=coefficient),
        TrainConfig(tokens=10_240, batch_size=512, optimizer=optimizer, log_every=5),  # type: ignore[arg-type]
        out=tmp_path / "s",
    )
    recomputed = evaluate(load_sae(tmp_path / "s"), store, split="heldout")
    assert result.evaluated_on == "heldout"
    for key in ("fvu", "l0", "dead_fraction", "dense_fraction"):
        assert getattr(result, key) == pytest.approx(getattr(recomputed, key), rel=1e-6), key
    summary = result.summary()
    assert summary["fvu"] == result.fvu and summary["heldout"]["fvu"] == result.fvu
    assert set(summary["train_window"]) == {"fvu", "l0", "dead_fraction", "dense_fraction"}
    saved = json.loads((tmp_path / "s" / "config.json").read_text())["training"]
    assert saved["final"]["fvu"] == result.fvu and saved["evaluated_on"] == "heldout"
    assert saved["lr"] == TrainConfig(optimizer=optimizer).resolved_lr(64)  # type: ignore[arg-type]


def test_data_without_a_heldout_split_says_which_rows_it_reports(tmp_path: Path) -> None:
    from polysemy.analysis.reconstruction import evaluate

    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    result = train_sae(
        x,
        SAEConfig(arch="topk", d_in=8, d_sae=16, k=2),
        TrainConfig(tokens=2048, batch_size=512),
        out=tmp_path / "s",
    )
    assert result.evaluated_on == "train" and result.heldout is None
    assert result.fvu == pytest.approx(evaluate(load_sae(tmp_path / "s"), x).fvu, rel=1e-6)


def test_the_library_picks_the_learning_rate_of_the_optimizer() -> None:
    # A notebook user who only names the sign optimizer must not get Adam's lr.
    assert TrainConfig().resolved_lr(3072) == 4e-4
    schedule_free = TrainConfig(optimizer="schedule-free-signum").resolved_lr(2**14)
    assert schedule_free == pytest.approx(5e-3)
    # Plain signum has no averaged iterate and takes a tenth (it collapsed at the full rule).
    assert TrainConfig(optimizer="signum").resolved_lr(2**14) == pytest.approx(5e-4)
    assert TrainConfig(optimizer="signum", lr=1e-3).resolved_lr(2**14) == 1e-3


def test_decay_by_default_only_on_long_runs() -> None:
    short = TrainConfig(tokens=1999 * 4, batch_size=4)
    long = TrainConfig(tokens=2000 * 4, batch_size=4)
    assert short.lr_at(short.steps - 1, 64) == short.resolved_lr(64)
    assert long.lr_at(long.steps - 1, 64) < 0.01 * long.resolved_lr(64)
    assert long.lr_at(int(long.steps * 0.79), 64) == long.resolved_lr(64)
