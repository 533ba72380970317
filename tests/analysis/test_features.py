"""Features: the streaming merges against brute force, exact statistics under an oracle SAE,
spread over neurons against its null, co-occurrence dense vs sketch, the folder and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from polysemy.analysis.feature_pass import Cooccurrence, StreamingTop, bin_index, segment_top
from polysemy.analysis.features import (
    FeaturesConfig,
    analyze_features,
    nearest_features,
    spread_over_neurons,
)
from polysemy.analysis.folder import read_analysis
from polysemy.cli import main
from polysemy.sae import SAEConfig, build_sae, save_sae


def test_streaming_top_equals_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    d_sae, n = 7, 3
    top = StreamingTop(d_sae, n, "cpu")
    all_f, all_v = [], []
    for step in range(5):
        f = torch.randint(0, d_sae - 1, (40,), generator=g)  # feature 6 never fires
        v = torch.rand(40, generator=g)
        top.update(f, v, torch.arange(40) + 40 * step, v * 2)
        all_f.append(f), all_v.append(v)
    f, v = torch.cat(all_f), torch.cat(all_v)
    for feat in range(d_sae - 1):
        want = v[f == feat].topk(min(n, int((f == feat).sum()))).values
        assert torch.allclose(top.score[feat, : want.numel()], want)
        rows = top.row[feat, : want.numel()]
        assert torch.allclose(v[rows], want) and torch.allclose(
            top.value[feat, : want.numel()], 2 * want
        )
    assert (top.row[d_sae - 1] == -1).all()
    s, pos = segment_top(torch.tensor([2, 2, 0]), torch.tensor([0.1, 0.5, 0.3]), 2, 3)
    assert (
        s[2].tolist() == pytest.approx([0.5, 0.1])
        and pos[2].tolist() == [1, 0]
        and pos[1].tolist() == [-1, -1]
    )


def test_spread_over_neurons_and_nearest() -> None:
    W = torch.tensor([[0.0, 3.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 0.0, 0.0]])
    pr, n50, n90 = spread_over_neurons(W)
    assert pr.tolist() == pytest.approx([1.0, 4.0, 25 / 17])
    assert n50.tolist() == [1, 2, 1] and n90.tolist() == [1, 4, 2]
    idx, cos = nearest_features(W, 1)
    assert idx[0, 0] == 1 and cos[0, 0] == pytest.approx(0.5)  # 3 / (3 * 2) > 3 / (3 * 5**0.5)


def test_histogram_bins() -> None:
    b = bin_index(torch.tensor([1e-5, 1e-3, 0.99, 1.01, 1e5]), 1e-3, 1e3, 6)
    assert b.tolist() == [0, 0, 2, 3, 5]


def test_cooccurrence_dense_and_sketch_agree() -> None:
    # Odd rows: features 0 and 1 together plus a random other; even rows: one random other.
    g = torch.Generator().manual_seed(1)
    rows = 500
    other = torch.randint(2, 10, (rows,), generator=g)
    idx = torch.stack(
        [torch.zeros(rows, dtype=torch.long), torch.ones(rows, dtype=torch.long), other], 1
    )
    val = torch.ones(rows, 3)
    idx[::2, 0] = other[::2]
    val[::2, 1:] = 0.0  # padding
    fired = torch.zeros(10, dtype=torch.long)
    for row_idx, row_val in zip(idx, val, strict=True):
        fired[row_idx[row_val > 0].unique()] += 1
    dense = Cooccurrence(10, max_bytes=1 << 20, width=16, device="cpu")
    sketch = Cooccurrence(10, max_bytes=0, width=64, device="cpu")
    dense.update(idx, val), sketch.update(idx, val)
    assert (dense.method, sketch.method) == ("dense", "count-min sketch")
    p_d, c_d, lift = dense.partners(fired, 2)
    p_s, c_s, _ = sketch.partners(fired, 2)
    # 0 and 1 fire together on all 250 odd rows: 125 expected under independence, lift 2.
    assert p_d[1, 0] == 0 and c_d[1, 0] == 250 and lift[1, 0] == pytest.approx(2.0)
    assert torch.all(c_s >= c_d - 1e-6)  # a count-min sketch never undercounts
    assert p_s[1, 0] == 0 and p_s[0, 0] == 1


def test_partners_and_nearest_equal_brute_force() -> None:
    # Wide enough (d_sae 256) that the fast row selection, not torch.topk, picks the winners.
    g = torch.Generator().manual_seed(2)
    d, rows, m = 256, 3000, 6
    idx = torch.rand(rows, d, generator=g).argsort(1)[:, :m]  # m distinct latents per row
    val = torch.rand(rows, m, generator=g) + 0.1
    val[::3, 1] = 0.0  # padding slots never count
    on = torch.zeros(rows, d)
    on.scatter_(1, idx, (val > 0).float())
    counts = on.t() @ on  # brute-force co-occurrence, diagonal = firings
    fired = counts.diagonal().long()
    dense = Cooccurrence(d, max_bytes=1 << 30, width=64, device="cpu")
    sketch = Cooccurrence(d, max_bytes=0, width=128, device="cpu")
    for a in range(0, rows, 700):
        dense.update(idx[a : a + 700], val[a : a + 700])
        sketch.update(idx[a : a + 700], val[a : a + 700])
    partner, count, lift = dense.partners(fired, 5, chunk=100)
    excess = counts - fired[:, None] * fired[None, :] / rows
    excess.fill_diagonal_(-torch.inf)
    want = excess.topk(5, dim=1).values
    got = excess.gather(1, partner)
    assert torch.allclose(got, want)  # same excesses, largest first (ties may swap partners)
    assert torch.equal(count, counts.gather(1, partner))
    expected = fired[:, None] * fired[partner] / rows
    assert torch.allclose(lift, count / expected)
    _, s_count, _ = sketch.partners(fired, 5, chunk=100)
    assert (s_count >= count.min(1, keepdim=True).values - 1e-6).all()  # never undercounts
    W = torch.randn(d, 12, generator=g)
    index, cosine = nearest_features(W, 4, chunk=100)
    U = torch.nn.functional.normalize(W, dim=1)
    sims = U @ U.t()
    sims.fill_diagonal_(-torch.inf)
    top = sims.topk(4, dim=1)
    assert torch.allclose(cosine, top.values, atol=1e-6) and torch.equal(index, top.indices)


def test_oracle_features_are_exact(make_planted, tmp_path) -> None:
    store, sae = make_planted(traced=True)
    r = analyze_features(
        sae, store, out=tmp_path / "f", examples=3, quantile_examples=4, sample_size=16, window=2
    )
    a = r.arrays
    count = store.planted_count
    z = sae.encode(store.read(0, store.rows))  # brute force: every code at once
    assert torch.allclose(a["density"], (z > 0).double().mean(0))
    # ... which is the planted firing rate, up to coefficients under the oracle's threshold
    assert ((a["density"] - count.double() / store.rows).abs() < 0.05).all()
    assert torch.allclose(a["top_values"], z.t().topk(3, dim=1).values, atol=1e-5)
    assert torch.allclose(a["histogram"].sum(1).double(), a["density"] * store.rows)
    # The oracle's decoder rows are the planted features, supported on 2 neurons each.
    assert (a["neurons_90"] <= 2).all() and (a["participation_ratio"] <= 2 + 1e-6).all()
    assert r.concentrated_fraction.estimate == 1.0
    assert r.null_participation_ratio.estimate > 5  # random directions in 24 dims: ~8
    q = a["quantile_values"]
    assert (q[count > 4].diff(dim=1) >= 0).all()  # evenly spaced quantiles, ascending
    folder = read_analysis(tmp_path / "f", "features")
    examples = folder.json("examples.json")
    assert len(examples) == 16 and "[[" in examples[0]["top"][0]["text"]
    assert folder.tensors("features.safetensors")["histogram"].shape == (16, 48)


def test_bad_inputs_and_cli(make_planted, tmp_path, capsys) -> None:
    store, sae = make_planted()
    with pytest.raises(ValueError, match=r"^sae must be an SAE with d_in=24"):
        analyze_features(build_sae(SAEConfig(arch="relu", d_in=5, d_sae=8)), store, texts=False)
    with pytest.raises(ValueError, match="quantile_examples must be at most sample_size"):
        FeaturesConfig(quantile_examples=9, sample_size=8)
    save_sae(sae, tmp_path / "sae", source={}, training={})
    save_sae(
        build_sae(SAEConfig(arch="relu", d_in=5, d_sae=8)),
        tmp_path / "wide",
        source={},
        training={},
    )
    args = ["analyze", "features", "--acts", str(store.path)]
    assert (
        main(
            [
                *args,
                "--sae",
                str(tmp_path / "sae"),
                "--out",
                str(tmp_path / "a"),
                "--no-texts",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["n_features"] == 16 and out["cooccurrence"] == "dense"
    assert main([*args, "--sae", str(tmp_path / "wide"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "has d_in=5" in err and err.count("\n") == 1 and not (tmp_path / "b").exists()
    assert main([*args, "--sae", str(tmp_path / "sae"), "--out", str(tmp_path / "c")]) == 2
    assert "--no-texts" in capsys.readouterr().err
