"""The notebook API: `import polysemy as ps`, the README's snippet run verbatim, and the
keyword-argument layer (`polysemy.api`) over the library's configs."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import polysemy as ps
from polysemy.validation import ParameterError

ROOT = Path(__file__).resolve().parents[1]
SITE = "encoder.layer.3.output"


def python_blocks(markdown: Path) -> list[str]:
    """The ```python code blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown.read_text(), flags=re.S | re.M)


@pytest.fixture
def in_tmp(tmp_path: Path):
    before = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def test_readme_snippet_runs_verbatim(in_tmp: Path) -> None:
    (snippet,) = python_blocks(ROOT / "README.md")
    assert snippet.startswith("import polysemy as ps\n")
    out = io.StringIO()
    scope: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "README.md", "exec"), scope)
    fvu, l0 = (float(v) for v in out.getvalue().split())
    # A 4x TopK SAE on 45k training rows of MiniLM layer 3 explains most of the variance,
    # and TopK's L0 is exactly k.
    assert 0.0 < fvu < 0.6
    assert l0 == 16.0
    z = scope["z"]
    assert isinstance(z, torch.Tensor) and z.shape == (8, 4 * 384)
    assert bool(((z > 0).sum(dim=1) <= 16).all())
    assert (in_tmp / "saes" / "l3" / "sae.safetensors").is_file()
    # The saved SAE is the one the run returned.
    saved = ps.load_sae(in_tmp / "saes" / "l3")
    torch.testing.assert_close(saved.W_dec, scope["run"].sae.W_dec)  # type: ignore[attr-defined]


def test_top_level_names_resolve_and_import_lazily() -> None:
    for name in ps.__all__:
        assert getattr(ps, name) is not None, name
    assert ps.toy.__name__ == "polysemy.toy"
    assert ps.analysis.analyze_neurons.__module__ == "polysemy.analysis.neurons"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = ps.nope  # type: ignore[attr-defined]
    # `import polysemy` alone must not pay for torch (the CLI's --help and scripts start fast).
    code = "import sys, polysemy; print('torch' in sys.modules)"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.strip() == "False"


def test_harvest_sites_gives_one_store_per_site(tmp_path: Path) -> None:
    model = ps.load_model("minilm")
    corpus = ps.open_corpus("concepts")
    sites = [SITE, "encoder.layer.1.output"]  # a list, as a notebook user types it
    stores = ps.harvest(model, corpus, sites=sites, tokens=300, batch_size=8, out=tmp_path / "a")
    assert isinstance(stores, dict) and list(stores) == sites
    for name, store in stores.items():
        assert isinstance(store, ps.ActivationStore)
        assert store.rows == 300 and store.d_in == 384
        assert store.source["site"] == name
        assert store.source["corpus"] == corpus.name  # the corpus names itself
    # The same tokens, traced identically, at both sites.
    a, b = stores.values()
    assert torch.equal(a.tokens, b.tokens)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ParameterError, "site must be given, or else sites"),
        ({"site": SITE, "sites": [SITE]}, ParameterError, "site must be given, or else sites"),
        ({"site": SITE, "tokns": 5}, TypeError, "tokns must be a field of HarvestConfig"),
        ({"site": SITE, "tokens": 0}, ValueError, "tokens must be an int >= 1; got 0"),
    ],
)
def test_harvest_refuses_bad_keywords(tmp_path: Path, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        ps.harvest("minilm", "concepts", out=tmp_path / "a", **kwargs)
    assert not (tmp_path / "a").exists()


def test_train_sae_reads_d_in_and_deals_keywords_to_both_configs(tmp_path: Path) -> None:
    x = torch.randn(4096, 24, generator=torch.Generator().manual_seed(0))
    run = ps.train_sae(
        x, arch="topk", k=4, expansion=2, tokens=2048, batch_size=256, seed=3, progress=False
    )
    assert run.sae.config.d_in == 24 and run.sae.config.d_sae == 48
    assert run.steps == 8 and run.sae.config.k == 4
    with pytest.raises(ParameterError, match="d_in must be left out"):
        ps.train_sae(x, arch="topk", k=4, d_in=24, tokens=2048)
    with pytest.raises(ParameterError, match="expansion must be left out when d_sae is given"):
        ps.train_sae(x, arch="topk", k=4, d_sae=32, expansion=2.0, tokens=2048)
    with pytest.raises(ParameterError, match=r"kk must be a field of SAEConfig/TrainConfig"):
        ps.train_sae(x, arch="topk", kk=4, tokens=2048)


def test_synth_returns_its_store_with_the_truth(tmp_path: Path) -> None:
    store = ps.synth(tmp_path / "s", n_features=32, d_in=8, active=2, tokens=500, progress=False)
    assert store.rows == 500 and store.d_in == 8
    assert store.truth()["features"].shape == (32, 8)


def test_docs_python_runs_in_order(in_tmp: Path) -> None:
    blocks = python_blocks(ROOT / "docs" / "python.md")
    assert len(blocks) >= 6
    scope: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/python.md block {i}", "exec"), scope)
    printed = out.getvalue()
    # The page's claims hold on what it ran: the SAE finds most planted directions and the
    # typo is refused by name.
    recovery = scope["recovery"]
    assert recovery.fraction_recovered > 0.9  # type: ignore[attr-defined]
    assert scope["heldout"].fvu < 0.3  # type: ignore[attr-defined]
    assert "batchsize must be a field of SAEConfig/TrainConfig" in printed
    represented = scope["represented"].tolist()  # type: ignore[attr-defined]
    assert represented[0] == 5 and represented[-1] >= 10  # dense: m features; sparse: more
    assert not (in_tmp / "saes" / "typo").exists()
