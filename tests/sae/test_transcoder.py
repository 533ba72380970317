"""Transcoders: the contract (shapes, formula, sparse = dense, units, checkpoints), planted
recovery with its null, paired stores from one harvest, and the trainer's `target`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from polysemy.activations.paired import PairedStore
from polysemy.activations.store import ActivationStore
from polysemy.analysis.reconstruction import evaluate
from polysemy.sae import SAEConfig, TrainConfig, build_sae, load_sae, sae_from_weights, train_sae
from polysemy.sae.config import TRANSCODERS

D_IN, D_OUT, D_SAE, K = 12, 10, 40, 4


def make(arch: str, *, seed: int = 0, sparse: bool = True) -> torch.nn.Module:
    cfg = SAEConfig(arch=arch, d_in=D_IN, d_out=D_OUT, d_sae=D_SAE, k=K, sparse_decode=sparse)
    tc = build_sae(cfg, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-trivial biases and skip so every term is exercised
        g = torch.Generator().manual_seed(seed + 1)
        tc.b_dec.copy_(0.1 * torch.randn(D_OUT, generator=g))
        tc.b_enc.copy_(0.05 * torch.randn(D_SAE, generator=g))
        if tc.has_skip:
            tc.W_skip.copy_(0.1 * torch.randn(D_IN, D_OUT, generator=g))
    return tc


def pairs(rows: int = 64, seed: int = 3) -> torch.Tensor:
    return torch.randn(rows, D_IN + D_OUT, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", TRANSCODERS)
def test_shapes_and_the_documented_formula(arch: str) -> None:
    tc = make(arch).eval()
    xy = pairs()
    x = xy[:, :D_IN]
    assert tc.W_enc.shape == (D_IN, D_SAE) and tc.W_dec.shape == (D_SAE, D_OUT)
    assert tc.b_dec.shape == (D_OUT,)
    pre = x @ tc.W_enc + tc.b_enc  # no b_dec subtracted: it lives in the output space
    vals, idx = pre.topk(K, dim=1)
    z = torch.zeros_like(pre).scatter(1, idx, vals.clamp_min(0))
    torch.testing.assert_close(tc.encode(x), z)
    expected = z @ tc.W_dec + tc.b_dec + (x @ tc.W_skip if arch == "skip-transcoder" else 0)
    torch.testing.assert_close(tc.transcode(x), expected)
    out = tc(xy)
    assert out.x_hat.shape == (64, D_OUT)
    torch.testing.assert_close(out.x_hat, expected, rtol=1e-5, atol=1e-5)
    fvu = ((xy[:, D_IN:] - expected) ** 2).sum(1).mean()  # denominator 1 until training
    torch.testing.assert_close(out.losses["fvu"], fvu, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"d_in \+ d_out = 22\] .* got \(64, 12\)"):
        tc(x)


@pytest.mark.parametrize("arch", TRANSCODERS)
def test_sparse_path_equals_dense_path_and_every_parameter_learns(arch: str) -> None:
    xy = pairs(48)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[1::4] = True
    results = []
    for sparse in (True, False):
        tc = make(arch, sparse=sparse).train()
        out = tc(xy, dead_mask=dead)
        sum(out.losses.values()).backward()
        results.append((out, {n: p.grad.clone() for n, p in tc.named_parameters()}))
    (o1, g1), (o2, g2) = results
    assert set(o1.losses) == set(o2.losses) == {"fvu", "aux"}
    torch.testing.assert_close(o1.x_hat, o2.x_hat, rtol=1e-5, atol=1e-6)
    for key in o1.losses:
        torch.testing.assert_close(o1.losses[key], o2.losses[key], rtol=1e-5, atol=1e-6)
    names = {"W_enc", "b_enc", "W_dec", "b_dec"} | ({"W_skip"} if arch != "transcoder" else set())
    assert set(g1) == names
    for name in g1:
        assert g1[name].abs().sum() > 0, name
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("arch", TRANSCODERS)
def test_fold_input_scale_makes_raw_inputs_match_scaled_training(arch: str) -> None:
    tc = make(arch).eval()
    x = pairs()[:, :D_IN] * 7.0
    scale = 0.25
    trained = tc.transcode(x * scale) / scale  # trained on (s x -> s y)
    folded = copy.deepcopy(tc)
    folded.fold_input_scale_(scale)
    torch.testing.assert_close(folded.transcode(x), trained, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", TRANSCODERS)
def test_checkpoint_round_trip_keeps_d_out_sites_and_skip(arch: str, tmp_path: Path) -> None:
    from polysemy.sae import save_sae

    tc = make(arch).eval()
    source = {"site_in": "l.0.mlp.input", "site_out": "l.0.mlp.output"}
    save_sae(tc, tmp_path / "tc", source=source, training={})
    cfg = json.loads((tmp_path / "tc" / "config.json").read_text())
    assert cfg["format"] == "polysemy.sae/1" and cfg["arch"] == arch and cfg["d_out"] == D_OUT
    assert cfg["source"] == source
    cfg["a_key_from_the_future"] = 1  # loading tolerates unknown keys
    (tmp_path / "tc" / "config.json").write_text(json.dumps(cfg))
    back = load_sae(tmp_path / "tc")
    x = pairs()[:, :D_IN]
    torch.testing.assert_close(back.transcode(x), tc.transcode(x))
    again = sae_from_weights(arch, **tc.inference_tensors(), k=K)
    torch.testing.assert_close(again.transcode(x), tc.transcode(x))


def test_config_validation() -> None:
    assert SAEConfig(arch="transcoder", d_in=8, d_sae=16).d_out == 8  # an MLP's widths agree
    assert SAEConfig(arch="transcoder", d_in=8, d_sae=16, d_out=5).train_width == 13
    with pytest.raises(ValueError, match="d_out must be left out for arch 'topk'"):
        SAEConfig(arch="topk", d_in=8, d_sae=16, d_out=8)
    with pytest.raises(ValueError, match="d_out must be an int >= 1; got 0"):
        SAEConfig(arch="transcoder", d_in=8, d_sae=16, d_out=0)
    w = make("skip-transcoder").inference_tensors()
    with pytest.raises(ValueError, match=r"W_skip .* is required for arch 'skip-transcoder'"):
        sae_from_weights("skip-transcoder", **{k: v for k, v in w.items() if k != "W_skip"}, k=K)


# ---- planted recovery ------------------------------------------------------------------


def planted(n: int = 8192, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse codes z (64 features, about 3 active per row), x = 5 z A, y = z B, with unit
    rows in A [64, 32] and B [64, 24]: more features than input dimensions (superposition)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)
    B = torch.nn.functional.normalize(torch.randn(64, 24, generator=g), dim=1)
    z = (torch.rand(n, 64, generator=g) < 3 / 64) * torch.rand(n, 64, generator=g).add(0.5)
    return 5 * z @ A, z @ B, B


def recovered(W_dec: torch.Tensor, B: torch.Tensor) -> float:
    """Share of planted output directions matched by a decoder row at cosine > 0.9."""
    W = torch.nn.functional.normalize(W_dec.detach(), dim=1)
    return float(((B @ W.T).max(dim=1).values > 0.9).float().mean())


def test_transcoder_recovers_a_planted_map_and_not_a_shuffled_one() -> None:
    x, y, B = planted()
    cfg = SAEConfig(arch="transcoder", d_in=32, d_out=24, d_sae=128, k=4)
    train = TrainConfig(tokens=8192 * 12, batch_size=256, lr=2e-3)
    result = train_sae(x, cfg, train, target=y)
    rate = recovered(result.sae.W_dec, B)
    assert rate >= 0.9, rate  # 0.95 (61 of 64) on this seed
    assert result.fvu < 0.3 and result.l0 <= 4
    # The null: the same targets in another row order carry no map from x to learn.
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    null = train_sae(x, cfg, train, target=shuffled)
    assert recovered(null.sae.W_dec, B) < 0.5 * rate  # 0.00
    assert null.fvu > 0.8  # 0.99


def test_skip_transcoder_carries_a_linear_map_that_a_plain_transcoder_cannot() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g)
    S = torch.randn(16, 8, generator=g) / 4
    train = TrainConfig(tokens=4096 * 10, batch_size=256, lr=3e-3)
    fvu = {}
    for arch in TRANSCODERS:
        cfg = SAEConfig(arch=arch, d_in=16, d_out=8, d_sae=32, k=2)
        result = train_sae(x, cfg, train, target=x @ S)
        fvu[arch] = result.fvu
        if arch == "skip-transcoder":  # most of the map sits in W_skip (0.37 off on this seed)
            assert float((result.sae.W_skip.detach() - S).norm() / S.norm()) < 0.5
    # 0.02 against 0.30: two of 32 non-negative latents cannot follow a dense linear map
    assert fvu["skip-transcoder"] < 0.05 and fvu["transcoder"] > 0.2, fvu


# ---- paired stores and the trainer's target --------------------------------------------


@pytest.fixture(scope="module")
def mlp_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The MLP input and output of a tiny config-built BERT, harvested in one pass."""
    from polysemy.activations.harvest import HarvestConfig, harvest
    from polysemy.analysis.ablation_calibration import tiny_encoder

    loaded = tiny_encoder(seed=0)
    sites = ("encoder.layer.0.intermediate.input", "encoder.layer.0.output.dense.output")
    out = tmp_path_factory.mktemp("harvest") / "stores"
    docs = [f"sentence number {i} says the cat sat on mat {i % 7}" for i in range(300)]
    harvest(
        loaded,
        docs,
        HarvestConfig(sites=sites, tokens=3000, seq_len=16, dtype="float32"),
        out=out,
    )
    return {"in": out / sites[0], "out": out / sites[1]}


def test_paired_store_trains_a_transcoder_with_sites_recorded(
    mlp_stores: dict[str, Path], tmp_path: Path
) -> None:
    pair = PairedStore(mlp_stores["in"], mlp_stores["out"])
    assert (pair.d_in_input, pair.d_out, pair.width) == (32, 32, 64)
    row = pair.read(5, 6)
    torch.testing.assert_close(row[:, :32], ActivationStore(mlp_stores["in"]).read(5, 6))
    torch.testing.assert_close(row[:, 32:], pair.target.read(5, 6))
    import polysemy as ps

    result = ps.train_sae(  # the notebook spelling: d_in and d_out read from the stores
        mlp_stores["in"],
        target=mlp_stores["out"],
        arch="skip-transcoder",
        d_sae=64,
        k=8,
        tokens=2048 * 4,
        batch_size=256,
        out=tmp_path / "tc",
        progress=False,
    )
    assert result.evaluated_on == "heldout" and 0 < result.fvu < 1.0
    saved = json.loads((tmp_path / "tc" / "config.json").read_text())
    assert saved["d_out"] == 32
    assert saved["source"]["site_in"] == "encoder.layer.0.intermediate.input"
    assert saved["source"]["site_out"] == "encoder.layer.0.output.dense.output"
    again = evaluate(load_sae(tmp_path / "tc"), pair)
    assert again.fvu == pytest.approx(result.fvu, rel=1e-4)


def test_paired_store_refuses_stores_that_are_not_the_same_tokens(
    mlp_stores: dict[str, Path], tmp_path: Path
) -> None:
    from polysemy.activations.store import StoreWriter

    store = PairedStore(mlp_stores["in"], mlp_stores["out"])
    rows = store.target.read(0, 100)
    trace = store.read_trace(0, 100)
    with StoreWriter(tmp_path / "shifted", d_in=32, dtype="float32", source={}) as w:
        w.append(rows, tokens=trace.tokens, doc=trace.doc, pos=trace.pos + 1)
    with pytest.raises(ValueError, match="target must have the input's rows"):
        PairedStore(mlp_stores["in"], tmp_path / "shifted")
    short = PairedStore(tmp_path / "shifted", tmp_path / "shifted")  # aligned with itself
    assert short.rows == 100
    with StoreWriter(tmp_path / "moved", d_in=32, dtype="float32", source={}) as w:
        w.append(rows, tokens=trace.tokens, doc=trace.doc, pos=trace.pos)
    with pytest.raises(ValueError, match="pos differs first at row 0"):
        PairedStore(tmp_path / "moved", tmp_path / "shifted")


def test_train_sae_target_is_checked() -> None:
    x = torch.randn(512, 6)
    train = TrainConfig(tokens=512, batch_size=256)
    with pytest.raises(ValueError, match="target must be None for arch 'topk'"):
        train_sae(x, SAEConfig(arch="topk", d_in=6, d_sae=8, k=2), train, target=x)
    tc = SAEConfig(arch="transcoder", d_in=6, d_sae=8, k=2)
    with pytest.raises(ValueError, match="target must be the activations to predict"):
        train_sae(x, tc, train)
    with pytest.raises(ValueError, match="same rows; got shapes \\[512, 6\\] and \\[511, 6\\]"):
        train_sae(x, tc, train, target=x[:-1])
    with pytest.raises(ValueError, match="d_in/d_out mismatch"):
        train_sae(x, tc, train, target=torch.randn(512, 5))


# ---- export and import -----------------------------------------------------------------


@pytest.mark.parametrize("arch", TRANSCODERS)
def test_sparsify_round_trip_with_real_sparsify(arch: str, tmp_path: Path) -> None:
    import warnings

    from polysemy.sae.interop import export_sae, import_sae

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparsify = pytest.importorskip("sparsify")
    cfg = SAEConfig(arch=arch, d_in=D_IN, d_sae=D_SAE, k=K)  # sparsify: d_out = d_in
    tc = build_sae(cfg, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        tc.b_dec.copy_(0.1 * torch.randn(D_IN, generator=g))
        tc.b_enc.copy_(0.05 * torch.randn(D_SAE, generator=g))
        if tc.has_skip:
            tc.W_skip.copy_(0.1 * torch.randn(D_IN, D_IN, generator=g))
    export_sae(tc, "sparsify", tmp_path / "layers.0.mlp")
    peer = sparsify.SparseCoder.load_from_disk(tmp_path / "layers.0.mlp")
    assert peer.cfg.transcode and peer.cfg.skip_connection == tc.has_skip
    x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = peer(x, x)  # (input, target): the target only enters the loss
        back = import_sae("sparsify", tmp_path / "layers.0.mlp")
        expected = tc.transcode(x)
        torch.testing.assert_close(out.sae_out, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(back.transcode(x), expected, rtol=1e-5, atol=1e-5)
    assert back.arch == arch


def test_exports_that_cannot_be_exact_are_refused(tmp_path: Path) -> None:
    from polysemy.sae.interop import export_sae

    with pytest.raises(ValueError, match="SAELens transcoders are ReLU or JumpReLU"):
        export_sae(make("transcoder"), "saelens", tmp_path / "a")
    with pytest.raises(ValueError, match="one d_in\\); got d_in=12, d_out=10"):
        export_sae(make("transcoder"), "sparsify", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_resume_reads_a_transcoder_state_back(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2048, 8, generator=g), torch.randn(2048, 6, generator=g)
    cfg = SAEConfig(arch="skip-transcoder", d_in=8, d_out=6, d_sae=16, k=2)
    train = TrainConfig(tokens=2048, batch_size=512, checkpoint_every=1)
    first = train_sae(x, cfg, train, target=y, out=tmp_path / "tc")
    # Resuming the finished run trains nothing and keeps every tensor, W_skip included.
    again = train_sae(x, cfg, train, target=y, out=tmp_path / "tc", resume=True)
    assert again.resumed_from_step == first.steps == 4 and again.fvu == first.fvu
    for name, t in first.sae.inference_tensors().items():
        torch.testing.assert_close(again.sae.inference_tensors()[name], t, rtol=0, atol=0)
    other = SAEConfig(arch="skip-transcoder", d_in=8, d_out=6, d_sae=16, k=3)
    with pytest.raises(ValueError, match="cannot resume"):
        train_sae(x, other, train, target=y, out=tmp_path / "tc", resume=True)
