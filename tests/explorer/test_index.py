"""build_index / ensure_index on a tiny run folder written by the real library."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from polysemy.explorer import build_index, ensure_index


def _read(run: Path, rel: str) -> Any:
    return json.loads((run / "explorer" / rel).read_text())


def _page(run: Path, rel: str) -> Any:
    """A feature's or neuron's page (`dicts/mlp/features/3`) from its 64-id shard."""
    folder, _, ident = rel.rpartition("/")
    shard = _read(run, f"{folder}/{int(ident) // 64}.json")
    return shard.get(ident)


def test_index_lists_what_the_run_holds(tiny_run: Path) -> None:
    index = _read(tiny_run, "index.json")
    assert index["format"] == "polysemy.explorer/1"
    (d,) = index["dictionaries"]
    assert d["id"] == "mlp" and d["d_sae"] == 32 and d["d_in"] == 16
    assert d["pages"] == ["features", "neurons", "geometry"]
    assert set(d["summaries"]) == {"features", "neurons", "geometry"}
    assert [t["id"] for t in index["toys"]] == ["toy-relu"]
    assert index["claims"] == 2
    assert d["density"]["n"] == 32 and len(d["top_features"]) == 32


def test_one_file_per_feature_and_neuron_with_the_analyses_numbers(tiny_run: Path) -> None:
    arrays = load_file(str(tiny_run / "analyses" / "features-mlp" / "features.safetensors"))
    examples = json.loads((tiny_run / "analyses" / "features-mlp" / "examples.json").read_text())
    files = sorted((tiny_run / "explorer" / "dicts" / "mlp" / "features").iterdir())
    assert [p.name for p in files] == ["0.json"]  # one shard of 64 holds all 32 features
    assert sorted(_read(tiny_run, "dicts/mlp/features/0.json"), key=int) == [
        str(f) for f in range(32)
    ]
    for f in (0, 7, 31):
        page = _page(tiny_run, f"dicts/mlp/features/{f}")
        assert page["density"] == pytest.approx(float(arrays["density"][f]))
        assert page["histogram"]["counts"] == arrays["histogram"][f].tolist()
        assert [g for g, _ in page["neighbours"]] == arrays["neighbours"][f].tolist()
        assert page["top"] == examples[f]["top"]
        assert len(page["spread"]["top_neurons"]) == 8
        assert "dimensionality" in page["geometry"]
    neurons = json.loads((tiny_run / "analyses" / "neurons-mlp" / "neurons.json").read_text())
    for rec in neurons[:3]:
        page = _page(tiny_run, f"dicts/mlp/neurons/{rec['neuron']}")
        assert page["features"] == rec["features"]
        assert page["other_share"] + page["error_share"] + sum(s for _, s in page["features"]) == (
            pytest.approx(1.0)
        )
        assert page["groups"], "contexts grouped by dominant feature"
    overview = _read(tiny_run, "dicts/mlp/neurons.json")
    assert sum(overview["counts"]) == 16 and sum(overview["baseline_counts"]) == 16


def test_claims_reach_their_targets(tiny_run: Path) -> None:
    assert [c["verdict"] for c in _page(tiny_run, "dicts/mlp/features/3")["claims"]] == [
        "supported"
    ]
    assert "claims" not in _page(tiny_run, "dicts/mlp/features/4")
    assert _page(tiny_run, "dicts/mlp/neurons/2")["claims"][0]["verdict"] == "inconclusive"
    assert len(_read(tiny_run, "claims.json")) == 2


def test_search_index_finds_words_of_example_texts(tiny_run: Path) -> None:
    shard = _read(tiny_run, f"search/{b'ba'.hex()}.json")
    postings = shard["bank"]
    assert postings and all(p[0] == "mlp" for p in postings)
    acts = [p[2] for p in postings]
    assert acts == sorted(acts, reverse=True)
    for _, f, _, text in postings[:5]:
        page = _page(tiny_run, f"dicts/mlp/features/{f}")
        assert text in [e["text"] for e in page["top"] + page["quantiles"]]
        assert "bank" in text.lower()


def test_geometry_and_toy_pages(tiny_run: Path) -> None:
    geo = _read(tiny_run, "dicts/mlp/geometry.json")
    n = len(geo["map"]["features"])
    assert n == 16 and len(geo["map"]["abs_cos"]) == n
    grid, feats = geo["map"]["abs_cos"], geo["map"]["features"]
    assert all(grid[i][i] is None for i in range(n))  # blank: 1 by definition
    pairs = load_file(str(tiny_run / "analyses" / "geometry-mlp" / "pairs.safetensors"))
    for a, b, c in list(zip(pairs["feature_i"].tolist(), pairs["feature_j"].tolist(),
                            pairs["abs_cos"].tolist(), strict=True))[:20]:  # fmt: skip
        i, j = feats.index(a), feats.index(b)
        assert grid[i][j] == grid[j][i] == pytest.approx(c)
    assert geo["scatter"]["shown"] == geo["scatter"]["pairs"] == 120
    toy = _read(tiny_run, "toys/toy-relu.json")
    assert len(toy["instances"]) == 2
    wtw = toy["instances"][0]["WtW"]
    assert len(wtw) == 6 and all(
        wtw[i][j] == pytest.approx(wtw[j][i]) for i in range(6) for j in range(6)
    )
    norms = toy["instances"][0]["feature_norms"]
    assert [wtw[i][i] for i in range(6)] == pytest.approx([x * x for x in norms], rel=1e-4)


def test_ensure_index_rebuilds_only_when_a_source_changed(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    marker = run / "explorer" / "index.json"
    ensure_index(run)  # copied files have new mtimes: rebuilt once
    first = marker.stat().st_mtime_ns
    ensure_index(run)
    assert marker.stat().st_mtime_ns == first
    time.sleep(0.01)
    claims = run / "analyses" / "claims-demo" / "claims.json"
    record = json.loads(claims.read_text())
    record["claims"] = record["claims"][:1]
    claims.write_text(json.dumps(record))
    ensure_index(run)
    assert marker.stat().st_mtime_ns != first
    assert json.loads(marker.read_text())["claims"] == 1


def test_single_analysis_folder_and_refusals(tiny_run: Path, tmp_path: Path) -> None:
    one = tmp_path / "neurons"
    shutil.copytree(tiny_run / "analyses" / "neurons-mlp", one)
    build_index(one)
    index = json.loads((one / "explorer" / "index.json").read_text())
    assert index["dictionaries"][0]["pages"] == ["neurons"]
    with pytest.raises(FileNotFoundError, match="run must be a folder"):
        build_index(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no analysis"):
        build_index(tmp_path / "empty")
    assert not (tmp_path / "empty" / "explorer").exists()


def test_ablation_effects_reach_the_feature_page(tmp_path: Path) -> None:
    """A real `ablate` run (tiny random BERT, a random SAE saved at its site) joins the SAE's
    dictionary by site; the targeted feature's page gets its effects against the null."""
    import torch

    from polysemy.analysis.ablation import ablate
    from polysemy.analysis.ablation_calibration import tiny_encoder
    from polysemy.corpora import open_corpus
    from polysemy.sae import sae_from_weights
    from polysemy.sae.io import save_sae

    site = "encoder.layer.0.output"
    g = torch.Generator().manual_seed(0)
    W_dec = torch.nn.functional.normalize(torch.randn(16, 32, generator=g), dim=-1)
    sae = sae_from_weights("relu", W_enc=W_dec.T.clone(), b_enc=torch.zeros(16),
                           W_dec=W_dec * 0.5, b_dec=torch.zeros(32))  # fmt: skip
    run = tmp_path / "run"
    save_sae(sae, run / "saes" / "l0", source={"site": site}, training={})
    ablate(tiny_encoder(seed=0), open_corpus("concepts:heldout:40").take(40), sae=sae,
           site=site, targets=("feature:5", "neuron:3"), examples=8, random=4,
           out=run / "analyses" / "ablate-l0")  # fmt: skip
    build_index(run)
    index = json.loads((run / "explorer" / "index.json").read_text())
    (d,) = index["dictionaries"]
    assert d["id"] == "l0" and d["d_sae"] == 16 and "ablate" in d["summaries"]
    page = _page(run, "dicts/l0/features/5")
    a = page["ablation"]
    effects = load_file(str(run / "analyses" / "ablate-l0" / "effects.safetensors"))
    assert a["n"] == 8 and sum(a["counts"]) == 8
    assert sum(a["null_counts"]) == pytest.approx(8)  # mean over the 4 random directions
    assert a["summary"]["target"] == "feature:5"
    assert a["summary"]["mean_effect"] == pytest.approx(float(effects["targets"][0].mean()))
    assert "ablation" not in _page(run, "dicts/l0/features/4")


def test_dictionaries_are_told_apart_by_store_and_sae(tiny_run: Path, tmp_path: Path) -> None:
    """Two dictionaries of the same size (as in a demo's mlp and resid): every analysis joins
    its own, geometry (which records no store) by its recorded SAE path."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "explorer")
    for sub in ("stores", "saes"):
        shutil.copytree(run / sub / "mlp", run / sub / "resid")
    config = json.loads((run / "saes" / "resid" / "config.json").read_text())
    config["source"]["acts"] = str(run / "stores" / "resid")
    (run / "saes" / "resid" / "config.json").write_text(json.dumps(config))
    for kind in ("features", "neurons", "geometry"):
        src, dst = run / "analyses" / f"{kind}-mlp", run / "analyses" / f"{kind}-resid"
        shutil.copytree(src, dst)
        record = json.loads((dst / "analysis.json").read_text())
        if "sae_path" in record["inputs"]:
            record["inputs"]["sae_path"] = str(run / "saes" / "resid")
        else:
            record["inputs"]["acts"] = str(run / "stores" / "resid")
        (dst / "analysis.json").write_text(json.dumps(record))
    build_index(run)
    index = _read(run, "index.json")
    got = {d["id"]: d["pages"] for d in index["dictionaries"]}
    assert got == {
        "mlp": ["features", "neurons", "geometry"],
        "resid": ["features", "neurons", "geometry"],
    }
