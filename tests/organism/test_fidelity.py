"""CE/KL fidelity (Evidence I) on an organism snapshot: the untied head is the one scored, an
SAE with its error added back scores exactly 1, and a trained SAE lands between the zero
ablation and the clean model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tests.organism.conftest import TINY

import polysemy as ps
from polysemy.analysis.fidelity import analyze_fidelity
from polysemy.analysis.replay import unembedding
from polysemy.organism import OrganismRun, load_organism

SITE = "h.0.mlp.act.output"


def test_a_base_model_keeps_the_organisms_untied_head(tiny_run: OrganismRun) -> None:
    assert not TINY.get("tie_embeddings", False)
    loaded = ps.load_model(tiny_run.snapshots[-1])
    lm, _ = load_organism(tiny_run.snapshots[-1])
    assert torch.equal(unembedding(loaded), lm.lm_head.weight)
    assert not torch.equal(unembedding(loaded), lm.transformer.wte.weight)
    ids = torch.tensor([[5, 9, 42, 7, 100]])
    with torch.no_grad():
        hidden = loaded.model(input_ids=ids).last_hidden_state  # (1, 5, d_model)
        assert torch.allclose(hidden @ unembedding(loaded).T, lm(ids).logits, atol=1e-5)


def test_ce_and_kl_fidelity_on_an_organism_snapshot(tiny_run: OrganismRun, tmp_path: Path) -> None:
    loaded = ps.load_model(tiny_run.snapshots[-1])
    docs = list(ps.open_corpus("concepts:heldout:120"))
    acts = ps.harvest(loaded, "concepts:train:300", site=SITE, tokens=3000, seq_len=16,
                      out=tmp_path / "acts", progress=False)  # fmt: skip
    assert isinstance(acts, ps.ActivationStore)
    sae = ps.train_sae(acts, arch="topk", k=8, d_sae=128, tokens=40_000, batch_size=512,
                       progress=False).sae  # fmt: skip
    common: dict[str, Any] = dict(site=SITE, examples=100, seq_len=16, resamples=200)
    r = analyze_fidelity(loaded, sae, docs, **common)
    assert r.objective == "next_token"
    s = r.summary()
    # The clean model is scored with its own head: far below the zero-ablated MLP and near
    # the organism's held-out loss (other documents of the same corpus).
    assert s["ce_clean"] < s["ce_zero"]
    assert s["ce_clean"] == pytest.approx(tiny_run.heldout_loss, abs=0.5)
    assert r.ce_score is not None and r.kl_score is not None
    assert 0.5 < r.ce_score <= 1.0 and 0.5 < r.kl_score <= 1.0 and 0 < r.fvu < 1
    kept = analyze_fidelity(loaded, sae, docs, keep_error=True, **common)
    assert kept.ce_score == pytest.approx(1.0) and kept.kl_score == pytest.approx(1.0)
