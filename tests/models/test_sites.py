"""Sites of a real model (MiniLM) and a tiny GPT-2: listing, reading, early exit, patching,
ablating, and hooks that always go away."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from polysemy.models import (
    LoadedModel,
    ablate_site,
    get_site,
    list_sites,
    load_model,
    patch_site,
    read_sites,
)


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return load_model("minilm")


@pytest.fixture(scope="module")
def batch(minilm: LoadedModel) -> dict[str, torch.Tensor]:
    enc = minilm.tokenizer(
        ["Sites name every activation.", "A longer second sentence, so there is padding here."],
        padding=True,
        return_tensors="pt",
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def hook_ids(model: nn.Module) -> set[tuple[str, int]]:
    """Every hook on the model. (transformers adds its own, permanently, the first time
    `output_hidden_states` is asked for, so tests compare against a snapshot, not zero.)"""
    return {
        (name, key)
        for name, m in model.named_modules()
        for key in (*m._forward_hooks, *m._forward_pre_hooks)
    }


@pytest.fixture(autouse=True)
def hooks_are_removed(minilm: LoadedModel):
    """Every test leaves MiniLM with exactly the hooks it found (run after the test)."""
    minilm.model(input_ids=torch.tensor([[101, 102]]), output_hidden_states=True)
    before = hook_ids(minilm.model)
    yield
    assert hook_ids(minilm.model) == before


def test_minilm_site_listing(minilm: LoadedModel) -> None:
    sites = list_sites(minilm)
    by_name = {s.name: s for s in sites}
    assert len(by_name) == len(sites), "site names must be unique"
    for layer in range(6):
        residual = by_name[f"encoder.layer.{layer}.output"]
        assert residual.width == 384 and residual.per_token
        assert residual.module_type == "BertLayer"
        mlp = by_name[f"encoder.layer.{layer}.intermediate.intermediate_act_fn.output"]
        assert mlp.width == 1536 and mlp.per_token
        assert by_name[f"encoder.layer.{layer}.attention.output"].width == 384
    assert by_name["embeddings.output"].width == 384
    assert not by_name["pooler.output"].per_token
    # Integer ids and position tables (batch dim 1) are not activations.
    assert "embeddings.word_embeddings.input" not in by_name
    assert "embeddings.position_embeddings.output" not in by_name
    # Forward order.
    assert [s.index for s in sites] == list(range(len(sites)))
    assert by_name["encoder.layer.2.output"].index < by_name["encoder.layer.3.input"].index
    assert by_name["encoder.layer.3.input"].index < by_name["encoder.layer.3.output"].index


def test_unknown_site_lists_close_matches(minilm: LoadedModel) -> None:
    with pytest.raises(
        ValueError, match=r"unknown site 'encoder\.layer\.3\.outptu'.*encoder\.layer\.3\.output"
    ):
        get_site(minilm, "encoder.layer.3.outptu")
    with pytest.raises(TypeError, match="site must be"):
        get_site(minilm, 3)  # type: ignore[arg-type]


def test_read_matches_hidden_states(minilm: LoadedModel, batch) -> None:
    full = minilm.model(**batch, output_hidden_states=True)
    names = ["encoder.layer.3.output", "encoder.layer.4.input", "embeddings.output"]
    with read_sites(minilm, names) as reader:
        minilm.model(**batch)
    values = reader.values
    torch.testing.assert_close(
        values["encoder.layer.3.output"], full.hidden_states[4], rtol=0, atol=0
    )
    torch.testing.assert_close(
        values["encoder.layer.4.input"], full.hidden_states[4], rtol=0, atol=0
    )
    torch.testing.assert_close(values["embeddings.output"], full.hidden_states[0], rtol=0, atol=0)


def test_mlp_activation_is_after_the_nonlinearity(minilm: LoadedModel, batch) -> None:
    pre, post = (
        "encoder.layer.2.intermediate.dense.output",
        "encoder.layer.2.intermediate.intermediate_act_fn.output",
    )
    with read_sites(minilm, [pre, post]) as reader:
        minilm.model(**batch)
    v = reader.values
    torch.testing.assert_close(v[post], torch.nn.functional.gelu(v[pre]))
    assert v[post].shape[-1] == 1536


def test_early_exit_equals_full_forward_and_skips_later_layers(minilm: LoadedModel, batch) -> None:
    site = "encoder.layer.3.output"
    full = minilm.model(**batch, output_hidden_states=True).hidden_states[4]
    calls: list[int] = []
    spy = minilm.model.encoder.layer[4].register_forward_hook(lambda *a: calls.append(4))
    try:
        with read_sites(minilm, [site], early_exit=True) as reader:
            got = reader.run(**batch)[site]
    finally:
        spy.remove()
    assert calls == [], "layers after the last needed site must not run"
    assert torch.equal(got, full)


def test_early_exit_stops_after_the_latest_of_several_sites(minilm: LoadedModel, batch) -> None:
    full = minilm.model(**batch, output_hidden_states=True).hidden_states
    names = ["encoder.layer.4.output", "encoder.layer.1.output"]
    with read_sites(minilm, names, early_exit=True) as reader:
        got = reader.run(**batch)
    assert torch.equal(got["encoder.layer.1.output"], full[2])
    assert torch.equal(got["encoder.layer.4.output"], full[5])


def test_select_keeps_only_what_it_returns(minilm: LoadedModel, batch) -> None:
    keep = batch["attention_mask"].bool()
    site = "encoder.layer.0.output"
    with read_sites(minilm, [site], early_exit=True, select=lambda t: t[keep]) as reader:
        rows = reader.run(**batch)[site]
    assert rows.shape == (int(keep.sum()), 384)


def test_hooks_removed_on_error_inside_block(minilm: LoadedModel, batch) -> None:
    before = minilm.model(**batch).last_hidden_state
    before_hooks = hook_ids(minilm.model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        ablate_site(minilm, "encoder.layer.1.output", mode="zero"),
        read_sites(minilm, ["encoder.layer.2.output"], early_exit=True),
    ):
        assert len(hook_ids(minilm.model)) == len(before_hooks) + 2
        raise RuntimeError("boom")
    assert hook_ids(minilm.model) == before_hooks
    assert torch.equal(minilm.model(**batch).last_hidden_state, before)


def test_hooks_removed_when_the_patch_itself_fails(minilm: LoadedModel, batch) -> None:
    before_hooks = hook_ids(minilm.model)
    with (
        pytest.raises(ValueError, match="must have shape"),
        patch_site(minilm, "encoder.layer.1.output", lambda x: x[..., :3]),
    ):
        minilm.model(**batch)
    assert hook_ids(minilm.model) == before_hooks


def test_patch_changes_downstream_and_identity_does_not(minilm: LoadedModel, batch) -> None:
    base = minilm.model(**batch).last_hidden_state
    with patch_site(minilm, "encoder.layer.2.output", lambda x: x.clone()):
        same = minilm.model(**batch).last_hidden_state
    assert torch.equal(same, base)
    # Patching layer 2's output with another input's layer-2 output makes layers 3..5 see it.
    other = {k: v.flip(0) for k, v in batch.items()}
    with read_sites(minilm, ["encoder.layer.2.output"]) as reader:
        minilm.model(**other)
    donor = reader.values["encoder.layer.2.output"]
    with patch_site(minilm, "encoder.layer.2.output", donor):
        patched = minilm.model(**batch).last_hidden_state
    assert not torch.allclose(patched, base)


def test_patch_input_site(minilm: LoadedModel, batch) -> None:
    with read_sites(minilm, ["encoder.layer.3.output"]) as reader:
        with patch_site(minilm, "encoder.layer.3.input", torch.zeros(384)):
            minilm.model(**batch)
        zeroed = reader.values["encoder.layer.3.output"]
        minilm.model(**batch)
        normal = reader.values["encoder.layer.3.output"]
    assert not torch.allclose(zeroed, normal)


def test_ablate_zero_mean_direction(minilm: LoadedModel, batch) -> None:
    site = "encoder.layer.2.output"
    with ablate_site(minilm, site, mode="zero"), read_sites(minilm, [site]) as reader:
        minilm.model(**batch)
    assert torch.count_nonzero(reader.values[site]) == 0

    mean = torch.linspace(-1, 1, 384)
    with ablate_site(minilm, site, mode="mean", mean=mean), read_sites(minilm, [site]) as reader:
        minilm.model(**batch)
    assert torch.equal(reader.values[site][1, 3], mean)

    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(3, 384, generator=g)
    with (
        ablate_site(minilm, site, mode="direction", direction=dirs),
        read_sites(minilm, [site]) as reader,
    ):
        minilm.model(**batch)
    proj = reader.values[site] @ dirs.T
    assert proj.abs().max() < 1e-4
    assert reader.values[site].abs().max() > 0.1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "mean"}, "needs mean of shape"),
        ({"mode": "mean", "mean": torch.zeros(3)}, "needs mean of shape"),
        ({"mode": "direction", "direction": torch.zeros(5)}, "needs direction of shape"),
        ({"mode": "scramble"}, "mode must be one of"),
    ],
)
def test_ablate_bad_arguments(minilm: LoadedModel, kwargs, match: str) -> None:
    with (
        pytest.raises(ValueError, match=match),
        ablate_site(minilm, "encoder.layer.2.output", **kwargs),
    ):
        pass


def test_gpt2_sites_and_early_exit(tiny_gpt2_dir: Path) -> None:
    loaded = load_model(tiny_gpt2_dir)
    by_name = {s.name: s for s in list_sites(loaded)}
    assert by_name["h.0.output"].width == 32
    assert by_name["h.1.mlp.act.output"].width == 128
    assert by_name["ln_f.output"].per_token
    ids = torch.tensor([loaded.tokenizer("the lazy dog jumps")["input_ids"]] * 2)
    full = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states
    with read_sites(loaded, ["h.0.output"], early_exit=True) as reader:
        got = reader.run(input_ids=ids)["h.0.output"]
    assert torch.equal(got, full[1])


def test_bert_folder_sites(tiny_bert_dir: Path) -> None:
    loaded = load_model(tiny_bert_dir)
    names = [s.name for s in list_sites(loaded)]
    assert "encoder.layer.1.output" in names
    assert "encoder.layer.2.output" not in names
