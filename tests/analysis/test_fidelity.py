"""Fidelity: perfect reconstructions score 1, zero ablation scores 0, and the causal-LM scores
equal SAEBench's formulas computed by hand with plain torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from polysemy.analysis.fidelity import FidelityConfig, analyze_fidelity
from polysemy.analysis.folder import read_analysis
from polysemy.models import LoadedModel, patch_site
from polysemy.sae import build_sae
from polysemy.validation import ParameterError

from .conftest import random_sae


class Identity:
    """A perfect "SAE": x̂ = x."""

    def __init__(self, d_in: int) -> None:
        self.d_in = d_in

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


class Zero(Identity):
    """An "SAE" that reconstructs nothing: splicing it is zero ablation."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(z)


def test_identity_scores_one_and_zero_scores_zero_on_an_encoder(tiny_bert, sentences) -> None:
    kw = dict(site="encoder.layer.0.output", examples=40, resamples=200)
    perfect = analyze_fidelity(tiny_bert, Identity(32), sentences, **kw)
    assert perfect.objective == "embedding" and perfect.n == 40
    assert perfect.fvu == 0.0
    for key in ("embedding_cosine", "similarity_spearman", "recovered_vs_zero",
                "recovered_vs_mean"):  # fmt: skip
        assert getattr(perfect, key) == pytest.approx(1.0, abs=1e-6), key
    zero = analyze_fidelity(tiny_bert, Zero(32), sentences, **kw)
    assert zero.recovered_vs_zero == pytest.approx(0.0, abs=1e-9)
    assert zero.fvu > 0.5
    lossy = analyze_fidelity(tiny_bert, random_sae(32), sentences, **kw)
    assert lossy.fvu > 0 and lossy.embedding_cosine < 1
    ci = lossy.intervals["embedding_cosine"]
    assert ci.low <= lossy.embedding_cosine <= ci.high and ci.n == 40
    kept = analyze_fidelity(tiny_bert, random_sae(32), sentences, keep_error=True, **kw)
    assert kept.embedding_cosine == pytest.approx(1.0, abs=1e-6)
    assert kept.recovered_vs_zero == pytest.approx(1.0, abs=1e-5)


def _by_hand(loaded: LoadedModel, sae, docs: list[str], site: str) -> dict[str, float]:
    """CE and KL scores of SAEBench with plain torch: every document on its own, no batching."""
    wte = loaded.model.wte.weight
    ce = {"clean": [], "sae": [], "zero": []}
    kl = {"sae": [], "zero": []}
    for doc in docs:
        ids = torch.tensor([loaded.tokenizer(doc, add_special_tokens=False)["input_ids"][:31]])
        with torch.no_grad():
            clean = loaded.model(input_ids=ids).last_hidden_state
            seen: dict[str, torch.Tensor] = {}
            with patch_site(loaded, site, lambda v, seen=seen: seen.setdefault("x", v)):
                loaded.model(input_ids=ids)
            x_hat = sae.decode(sae.encode(seen["x"][0]))[None]
            runs = {"clean": clean}
            for name, value in (("sae", x_hat), ("zero", torch.zeros_like(x_hat))):
                with patch_site(loaded, site, value):
                    runs[name] = loaded.model(input_ids=ids).last_hidden_state
        logp = {k: F.log_softmax(h[0, :-1] @ wte.T, -1) for k, h in runs.items()}
        target = ids[0, 1:]
        for k in ce:
            ce[k].append(F.nll_loss(logp[k], target, reduction="none"))
        for k in kl:
            kl[k].append(
                F.kl_div(logp[k], logp["clean"], log_target=True, reduction="none").sum(-1)
            )
    mean_ce = {k: torch.cat(v).mean().item() for k, v in ce.items()}
    mean_kl = {k: torch.cat(v).mean().item() for k, v in kl.items()}
    return {
        "ce_score": (mean_ce["zero"] - mean_ce["sae"]) / (mean_ce["zero"] - mean_ce["clean"]),
        "kl_score": (mean_kl["zero"] - mean_kl["sae"]) / mean_kl["zero"],
        **{f"ce_{k}": v for k, v in mean_ce.items()},
    }


def test_causal_lm_scores_match_saebench_by_hand(tiny_gpt2, gpt2_docs) -> None:
    site = "h.1.output"
    sae = random_sae(32, seed=3)
    docs = gpt2_docs[:12]
    result = analyze_fidelity(
        tiny_gpt2, sae, docs, site=site, examples=12, seq_len=31, batch_size=5, resamples=200
    )
    expected = _by_hand(tiny_gpt2, sae, docs, site)
    assert result.objective == "next_token"
    for key, value in expected.items():
        assert getattr(result, key) == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert result.summary()["ce_score"] == result.ce_score
    perfect = analyze_fidelity(tiny_gpt2, Identity(32), docs, site=site, examples=12, resamples=200)
    assert perfect.ce_score == pytest.approx(1.0) and perfect.kl_score == pytest.approx(1.0)
    zero = analyze_fidelity(tiny_gpt2, Zero(32), docs, site=site, examples=12, resamples=200)
    assert zero.ce_score == pytest.approx(0.0, abs=1e-9)
    assert zero.kl_score == pytest.approx(0.0, abs=1e-9)


def test_folder_and_files(tiny_bert, sentences, tmp_path: Path) -> None:
    out = tmp_path / "fid"
    result = analyze_fidelity(tiny_bert, random_sae(32), sentences, site="encoder.layer.1.output",
                      examples=20, resamples=100, out=out)  # fmt: skip
    folder = read_analysis(out, "fidelity")
    assert folder.summary["n"] == 20 and folder.summary["fvu"] == result.fvu
    assert set(folder.summary["intervals"]) >= {"fvu", "embedding_cosine", "recovered_vs_mean"}
    per = folder.tensors("per_example.safetensors")
    assert per["cosine_sae"].shape == (20,)
    assert float(per["cosine_sae"].mean()) == pytest.approx(result.embedding_cosine)
    assert float(per["sse"].sum() / per["sst"].sum()) == pytest.approx(result.fvu)


@pytest.mark.parametrize(
    ("kwargs", "sae_width", "message"),
    [
        ({"site": "encoder.layer.0.output"}, 16, r"^sae must be an SAE with d_in=32"),
        ({"site": "encoder.layer.9.output"}, 32, r"^site must be a site of the model"),
        ({"site": "encoder.layer.0.output", "examples": 5000}, 32, r"^examples must be at most"),
        ({"examples": 1}, 32, r"^examples must be an int >= 2"),
        ({}, 32, r"^site must be given"),
    ],
)
def test_bad_input_names_the_parameter(tiny_bert, sentences, tmp_path, kwargs, sae_width,
                                       message) -> None:  # fmt: skip
    out = tmp_path / "never"
    with pytest.raises(ParameterError, match=message):
        analyze_fidelity(tiny_bert, Identity(sae_width), sentences[:300], out=out, **kwargs)
    assert not out.exists()


def test_config_checks() -> None:
    with pytest.raises(ParameterError, match="objective"):
        FidelityConfig(objective="both")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="resamples"):
        FidelityConfig(resamples=10)


# ---- transcoders: the MLP replaced by a transcoder of its input --------------------------

MLP_IN, MLP_OUT = "encoder.layer.0.intermediate.input", "encoder.layer.0.output.dense.output"


@pytest.fixture(scope="module")
def trained_transcoder(tiny_bert, sentences, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A skip-transcoder of tiny BERT's first MLP, from its input and output harvested in one
    pass, saved and loaded back (so the sites come from its checkpoint)."""
    from polysemy.activations.harvest import HarvestConfig, harvest
    from polysemy.sae import SAEConfig, TrainConfig, load_sae, train_sae

    root = tmp_path_factory.mktemp("tc")
    config = HarvestConfig(sites=(MLP_IN, MLP_OUT), tokens=4000, seq_len=32, dtype="float32")
    harvest(tiny_bert, sentences[40:], config, out=root / "stores")  # [:40] are held out
    train_sae(
        root / "stores" / MLP_IN,
        SAEConfig(arch="skip-transcoder", d_in=32, d_sae=128, k=8),
        TrainConfig(tokens=256 * 60, batch_size=256, lr=3e-3),
        target=root / "stores" / MLP_OUT,
        out=root / "tc",
    )
    return load_sae(root / "tc")


def _fvu_by_hand(loaded: LoadedModel, tc, docs: list[str]) -> float:
    """Σ ||y - transcode(u)||² / Σ ||y - ȳ||² over text tokens, one document at a time."""
    ys, preds = [], []
    for doc in docs:
        enc = loaded.tokenizer(doc, return_tensors="pt", return_special_tokens_mask=True)
        text = enc.pop("special_tokens_mask")[0] == 0
        seen: dict[str, torch.Tensor] = {}
        with (
            torch.no_grad(),
            patch_site(loaded, MLP_IN, lambda v, seen=seen: seen.setdefault("u", v)),
            patch_site(loaded, MLP_OUT, lambda v, seen=seen: seen.setdefault("y", v)),
        ):
            loaded.model(**enc)
        ys.append(seen["y"][0][text])
        preds.append(tc.transcode(seen["u"][0][text]))
    y, pred = torch.cat(ys).double(), torch.cat(preds).double()
    return float((((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()).detach())


def test_transcoder_replaces_the_mlp(tiny_bert, sentences, trained_transcoder, tmp_path) -> None:
    tc = trained_transcoder
    docs = sentences[:40]
    kw = dict(examples=40, resamples=200)
    result = analyze_fidelity(tiny_bert, tc, docs, out=tmp_path / "fid", **kw)
    assert result.site == MLP_OUT  # read from the checkpoint's source.site_out
    assert result.fvu == pytest.approx(_fvu_by_hand(tiny_bert, tc, docs), rel=1e-4)
    assert result.fvu < 0.5 and result.recovered_vs_zero > 0.5  # 0.038 and 0.98 here
    inputs = read_analysis(tmp_path / "fid", "fidelity").inputs
    assert (inputs["site"], inputs["site_in"]) == (MLP_OUT, MLP_IN)
    kept = analyze_fidelity(tiny_bert, tc, docs, keep_error=True, **kw)
    assert kept.embedding_cosine == pytest.approx(1.0, abs=1e-6)
    # The null beside it: an untrained transcoder of the same shape at the same sites.
    untrained = build_sae(tc.config, generator=torch.Generator().manual_seed(0))
    untrained.metadata = tc.metadata
    null = analyze_fidelity(tiny_bert, untrained, docs, **kw)
    assert null.fvu > 1 and null.recovered_vs_zero < result.recovered_vs_zero
    with pytest.raises(ParameterError, match=r"^site_in must be given"):
        analyze_fidelity(tiny_bert, untrained.__class__(tc.config), docs, site=MLP_OUT, **kw)
    with pytest.raises(ParameterError, match=r"^site_in must be left out for an SAE"):
        analyze_fidelity(tiny_bert, Identity(32), docs, site=MLP_OUT, site_in=MLP_IN, **kw)
    with pytest.raises(ParameterError, match=r"^sae must be a transcoder with d_in=32, d_out=64"):
        analyze_fidelity(tiny_bert, tc, docs, site="encoder.layer.0.intermediate.output", **kw)
