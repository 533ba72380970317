"""Dictionary geometry: dimensionality on known frames, interference, co-occurrence measures
by hand, the overlap test on planted relations, the analysis folder and every refusal."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from polysemy.analysis.folder import read_analysis
from polysemy.analysis.geometry import (
    GeometryConfig,
    analyze_geometry,
    count_cooccurrence,
    feature_dimensionality,
    overlap_test,
    pair_cosines,
    pair_sample,
    welch_bound,
)
from polysemy.analysis.geometry_calibration import calibrate_geometry
from polysemy.sae import sae_from_weights
from polysemy.toy import metrics
from polysemy.validation import ParameterError


def polygon(k: int) -> torch.Tensor:
    angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    return torch.stack([angles.cos(), angles.sin()], dim=1)  # (k, 2)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (torch.eye(4, dtype=torch.float64), 1.0),  # dedicated dimensions
        (torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64), 0.5),  # antipodal
        (polygon(3), 2 / 3),  # triangle
        (polygon(5), 2 / 5),  # pentagon
    ],
)
def test_dimensionality_of_known_frames(rows: torch.Tensor, expected: float) -> None:
    torch.testing.assert_close(
        feature_dimensionality(rows), torch.full((rows.shape[0],), expected, dtype=torch.float64)
    )


def test_dimensionality_matches_toy_metric_and_ignores_chunking() -> None:
    W = torch.randn(300, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    W[7] = 0.0  # a dead row gets 0, not NaN
    ours = feature_dimensionality(W)
    torch.testing.assert_close(ours, metrics.feature_dimensionality(W.T))
    torch.testing.assert_close(feature_dimensionality(W, chunk=7), ours)
    assert ours[7] == 0.0


def test_welch_bound_and_pairs() -> None:
    assert welch_bound(3, 2) == pytest.approx(0.5)  # the three-vector frame meets it
    assert pair_cosines(polygon(3), *pair_sample(3, 100)).max() == pytest.approx(0.5)
    assert welch_bound(4, 8) == 0.0
    i, j = pair_sample(10, 100)
    assert i.numel() == 45 and bool((i < j).all())
    a, b = pair_sample(1000, 500, seed=3)
    assert a.numel() == 500 and bool((a < b).all()) and bool((b < 1000).all())
    c, _ = pair_sample(1000, 500, seed=3)
    assert torch.equal(a, c)


def test_phi_and_pmi_by_hand() -> None:
    fired = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.bool)
    cooc = count_cooccurrence([fired[:3], fired[3:]], 3)
    assert cooc.rows == 4 and cooc.counts.tolist() == [2, 2, 2]
    assert cooc.joint.tolist() == [[2, 1, 0], [1, 2, 1], [0, 1, 2]]
    phi = cooc.phi()
    # phi is Pearson's r of the binary columns.
    f = fired.double()
    assert phi[0, 1] == pytest.approx(float(torch.corrcoef(f.T)[0, 1]))
    assert phi[0, 2] == pytest.approx(-1.0)
    assert cooc.pmi()[0, 1] == pytest.approx(math.log(1.5 * 4 / 4))
    assert cooc.pmi()[0, 2] == pytest.approx(math.log(0.5 * 4 / 4))


def planted_matrices(n: int, strength: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, n, generator=g, dtype=torch.float64)
    cooc = (base + base.T) / 2
    noise = torch.rand(n, n, generator=g, dtype=torch.float64)
    overlap = strength * (1 - cooc) + (noise + noise.T) / 2
    return overlap, cooc


def test_overlap_test_finds_a_planted_relation_and_not_a_missing_one() -> None:
    overlap, cooc = planted_matrices(30, 2.0, 0)
    found = overlap_test(overlap, cooc, resamples=200, permutations=200)
    assert found.verdict == "effect" and found.rho.estimate < -0.5
    assert found.pairs == 435 and found.features == 30
    none = overlap_test(*planted_matrices(30, 0.0, 1), resamples=200, permutations=200)
    assert none.verdict != "effect" and none.null.contains(0.0)
    pairs = overlap_test(overlap, cooc, resample="pairs", resamples=200, permutations=200)
    assert pairs.rho.estimate == found.rho.estimate
    with pytest.raises(ValueError, match="4 features give 6 pairs"):
        overlap_test(overlap[:4, :4], cooc[:4, :4])


def oracle_sae(features: torch.Tensor) -> object:
    d_sae, d_in = features.shape
    return sae_from_weights(
        "relu",
        W_enc=features.T.contiguous(),
        b_enc=torch.full((d_sae,), -0.3),
        W_dec=features,
        b_dec=torch.zeros(d_in),
    )


@pytest.fixture(scope="module")
def planted() -> tuple[object, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(24, 16, generator=g)
    features = features / features.norm(dim=1, keepdim=True)
    codes = torch.rand(3000, 24, generator=g) * (torch.rand(3000, 24, generator=g) < 0.15)
    return oracle_sae(features), codes @ features


def test_analysis_folder_and_summary(planted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sae, x = planted
    out = tmp_path / "geo"
    r = analyze_geometry(sae, x, out=out, top_features=24, min_count=5, resamples=100,
                         permutations=100, seed=1)  # fmt: skip
    s = r.summary()
    for key in ("dimensionality_mean", "interference_p99", "welch_bound", "verdict", "n"):
        assert key in s
    assert set(s["cooccurrence_overlap"]) >= {"rho", "ci", "null_ci"}
    assert s["n"] == r.cooccurrence.features * (r.cooccurrence.features - 1) // 2
    assert s["welch_bound"] == pytest.approx(welch_bound(24, 16))
    assert s["interference_max"] >= s["welch_bound"]  # no frame beats the bound
    folder = read_analysis(out, "geometry")
    assert folder.summary == s
    dims = folder.tensors("features.safetensors")["dimensionality"]
    torch.testing.assert_close(dims, feature_dimensionality(sae.W_dec))
    pairs = folder.tensors("pairs.safetensors")
    assert pairs["abs_cos"].numel() == s["n"]
    hist = folder.tensors("interference.safetensors")
    assert int(hist["counts"].sum()) == s["interference_pairs"] == 24 * 23 // 2
    again = analyze_geometry(sae, x, top_features=24, min_count=5, resamples=100,
                             permutations=100, seed=1)  # fmt: skip
    assert again.summary() == s  # deterministic under a seed


def test_refusals(planted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sae, x = planted
    with pytest.raises(ValueError, match=r"^sae has d_in=16 but the activations have d_in=8"):
        analyze_geometry(sae, x[:, :8])
    with pytest.raises(ParameterError, match="only 0 of 24 latents fire on >= 100000"):
        analyze_geometry(sae, x, min_count=100_000, out=tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    with pytest.raises(ParameterError, match="top_features must be an int >= 5; got 2"):
        GeometryConfig(top_features=2)
    with pytest.raises(ParameterError, match="measure must be one of phi, pmi"):
        analyze_geometry(sae, x, measure="cosine")
    with pytest.raises(ParameterError, match="resample"):
        GeometryConfig(resample="rows")  # type: ignore[arg-type]


def test_calibration_smoke() -> None:
    cal = calibrate_geometry(
        seeds=2, toy_instances=1, toy_steps=200, resamples=100, permutations=100,
        resample=("features",), tokens=8000,
    )  # fmt: skip
    assert cal.case("synth-groups-orthogonal").to_dict()["rho_mean"] < 0
    assert cal.case("synth-groups-aligned").to_dict()["rho_mean"] > 0
    null = cal.case("synth-independent")
    assert null.truth == "none" and null.trials == 2 and null.effects == 0
    assert null.rate.high < 1.0


@pytest.mark.slow
def test_minilm_end_to_end(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Harvest MiniLM, train a small TopK SAE, run `polysemy analyze geometry` on held-out rows."""
    import json

    import polysemy as ps
    from polysemy.cli import main

    store = ps.harvest(
        "minilm", "pydocs", site="encoder.layer.3.output", tokens=40_000, out=tmp_path / "acts"
    )
    ps.train_sae(store, arch="topk", d_sae=1536, k=16, tokens=400_000, out=tmp_path / "sae",
                 progress=False)  # fmt: skip
    out = tmp_path / "geo"
    args = ["analyze", "geometry", "--sae", str(tmp_path / "sae"), "--acts", str(tmp_path / "acts"),
            "--out", str(out), "--split", "all", "--top-features", "128", "--json"]  # fmt: skip
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    print(json.dumps(got))  # the figures docs/evidence.md quotes
    assert got["d_in"] == 384 and got["d_sae"] == 1536 and got["rows"] == 40_000
    assert got["welch_bound"] == pytest.approx(welch_bound(1536, 384))
    assert 0 < got["dimensionality_mean"] <= 1
    assert got["interference_p50"] <= got["interference_p99"] <= got["interference_max"]
    assert got["interference_max"] >= got["welch_bound"]
    assert got["n"] == got["features"] * (got["features"] - 1) // 2 and got["features"] >= 5
    test = got["cooccurrence_overlap"]
    assert test["ci"][0] <= test["rho"] <= test["ci"][1]
    assert got["verdict"] in ("effect", "no effect", "inconclusive")
    assert read_analysis(out, "geometry").summary["n"] == got["n"]


def test_codes_from_the_features_pass_are_shared(tmp_path: Path) -> None:
    from polysemy.analysis.features import analyze_features
    from polysemy.api import synth
    from polysemy.sae import SAEConfig, build_sae

    store = synth(tmp_path / "s", n_features=48, d_in=16, active=4, tokens=3000, progress=False)
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(arch="topk", d_in=16, d_sae=64, k=4)).eval()
    opts = {"split": "all", "max_rows": 2500, "min_count": 5, "resamples": 100,
            "permutations": 100}  # fmt: skip
    alone = analyze_geometry(sae, store, **opts)  # type: ignore[arg-type]
    # Encoded once: the firing counts are those of the dense encoder on the same rows.
    dense = (sae.encode(store.read(0, 2500, split="all")) > 0).sum(0)
    assert torch.equal(alone.firing_count, dense)
    f = analyze_features(sae, store, texts=False, keep_codes=2500)
    assert f.codes is not None and f.codes.rows == 2500 and f.codes.split == "all"
    shared = analyze_geometry(sae, store, codes=f.codes, **opts)  # type: ignore[arg-type]
    assert torch.equal(shared.features, alone.features)
    assert torch.equal(shared.firing_count, alone.firing_count)
    assert shared.cooccurrence.rho.estimate == alone.cooccurrence.rho.estimate
    few = analyze_features(sae, store, texts=False, keep_codes=100).codes
    with pytest.raises(ParameterError, match="codes must be codes of at least the 2500 rows"):
        analyze_geometry(sae, store, codes=few, **opts)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="codes must be codes of split 'heldout'"):
        analyze_geometry(sae, store, codes=f.codes, **{**opts, "split": "heldout"})  # type: ignore[arg-type]


def test_ranker_counts_the_ranks_a_sort_gives() -> None:
    from polysemy.analysis.geometry import _Ranker
    from polysemy.analysis.stats import ranks

    g = torch.Generator().manual_seed(0)
    v = torch.randn(40, 40, generator=g, dtype=torch.float64).round(decimals=1)  # many ties
    rank = _Ranker(v)
    for _ in range(5):
        sample = torch.randint(0, v.numel(), (700,), generator=g)  # with repeats
        assert torch.equal(rank(sample), ranks(v.flatten()[sample]))
