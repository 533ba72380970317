"""Harvest with the real MiniLM: batching, stored values, several sites, resume, errors."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from polysemy.activations.harvest import HarvestConfig, harvest, iter_batches, special_template
from polysemy.activations.store import ActivationStore
from polysemy.corpora import open_corpus
from polysemy.models import LoadedModel, load_model, patch_site

SITE = "encoder.layer.3.output"


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return load_model("minilm")


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return list(itertools.islice(open_corpus("pydocs"), 600))


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.safetensors"))}


def test_special_template(minilm: LoadedModel) -> None:
    assert special_template(minilm.tokenizer) == ([101], [102], 0)


def test_batches_cover_every_text_token_once(minilm: LoadedModel, docs: list[str]) -> None:
    tok = minilm.tokenizer
    sample = [*docs[:40], "", "word " * 300, *docs[40:60]]  # an empty and a long document
    batches = list(iter_batches(tok, sample, seq_len=16, batch_size=4, window_batches=2))
    seen: dict[int, list[int]] = {}
    for b in batches:
        assert b.input_ids.numel() <= 4 * 16 or b.input_ids.shape[0] == 1
        width = b.input_ids.shape[1]
        assert width <= 16
        lengths = b.attention_mask.sum(1)
        assert int(lengths.max()) == width, "each batch is padded only to its longest"
        assert torch.all(b.input_ids[:, 0] == 101)
        assert torch.all(b.input_ids[torch.arange(len(lengths)), lengths - 1] == 102)
        assert torch.all(b.input_ids[b.attention_mask == 0] == 0)
        assert torch.equal(b.keep.sum(1), lengths - 2)
        assert torch.equal(b.input_ids[b.keep].to(torch.int32), b.tokens)
        for d, p, t in zip(b.doc.tolist(), b.pos.tolist(), b.tokens.tolist(), strict=True):
            seen.setdefault(d, []).append(p)
            assert tok(sample[d], add_special_tokens=False)["input_ids"][p] == t
    for d, text in enumerate(sample):
        n = len(tok(text, add_special_tokens=False)["input_ids"])
        assert sorted(seen.get(d, [])) == list(range(n)), f"document {d}"
    again = list(iter_batches(tok, sample, seq_len=16, batch_size=4, window_batches=2))
    assert all(torch.equal(a.input_ids, b.input_ids) for a, b in zip(batches, again, strict=True))


def test_batches_cut_padding(minilm: LoadedModel, docs: list[str]) -> None:
    batches = list(iter_batches(minilm.tokenizer, docs, seq_len=128, batch_size=64))
    text = sum(b.rows for b in batches)
    slots = sum(b.input_ids.numel() for b in batches)
    assert text / slots > 0.85
    assert max(b.input_ids.numel() for b in batches) <= 64 * 128


def test_seq_len_too_short_for_specials(minilm: LoadedModel) -> None:
    with pytest.raises(ValueError, match="seq_len must be > 2"):
        next(iter_batches(minilm.tokenizer, ["text"], seq_len=2, batch_size=1))


def test_harvest_20k_tokens(minilm: LoadedModel, docs: list[str], tmp_path: Path) -> None:
    out = tmp_path / "store"
    config = HarvestConfig(sites=(SITE,), tokens=20_000, shard_rows=8192)
    result = harvest(minilm, docs, config, out=out, corpus="pydocs")
    assert result.rows == 20_000 and not result.exhausted and result.rows_resumed == 0
    assert result.stores == {SITE: out}
    store = ActivationStore(out)
    assert (store.rows, store.d_in, store.dtype) == (20_000, 384, torch.float16)
    assert store.n_shards == math.ceil(20_000 / 8192)
    source = store.source
    assert source["model"] == "minilm" and source["site"] == SITE
    assert source["corpus"] == "pydocs" and source["seq_len"] == 128
    assert source["tokens_requested"] == 20_000
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    tokens, doc, pos = store.tokens, store.doc, store.pos
    assert tokens is not None and doc is not None and pos is not None
    assert not torch.isin(tokens, torch.tensor([0, 101, 102])).any(), "specials/pad skipped"
    # Rows are what MiniLM gives each chunk on its own: [CLS] chunk [SEP].
    acts = store.read(0, store.rows)
    tok = minilm.tokenizer
    g = torch.Generator().manual_seed(0)
    for row in torch.randint(0, store.rows, (8,), generator=g).tolist():
        d, p = int(doc[row]), int(pos[row])
        ids = tok(docs[d], add_special_tokens=False)["input_ids"]
        start = p // 126 * 126
        seq = torch.tensor([[101, *ids[start : start + 126], 102]])
        assert seq[0, p - start + 1] == tokens[row]
        with torch.inference_mode():
            h = minilm.model(input_ids=seq, output_hidden_states=True).hidden_states[4]
        torch.testing.assert_close(
            acts[row], h[0, p - start + 1].half().float(), atol=2e-2, rtol=1e-2
        )


def test_several_sites_in_one_pass_equal_separate_harvests(
    minilm: LoadedModel, docs: list[str], tmp_path: Path
) -> None:
    sites = ("encoder.layer.1.output", "encoder.layer.2.intermediate.intermediate_act_fn.output")
    config = HarvestConfig(sites=sites, tokens=1500, dtype="float32")
    result = harvest(minilm, docs, config, out=tmp_path / "both", corpus="pydocs")
    assert result.stores == {s: tmp_path / "both" / s for s in sites}
    for site in sites:
        alone = HarvestConfig(sites=(site,), tokens=1500, dtype="float32")
        harvest(minilm, docs, alone, out=tmp_path / site, corpus="pydocs")
        a, b = ActivationStore(result.stores[site]), ActivationStore(tmp_path / site)
        assert a.d_in == (1536 if "intermediate" in site else 384)
        torch.testing.assert_close(a.read(0, a.rows), b.read(0, b.rows), atol=1e-5, rtol=1e-5)
        assert torch.equal(a.pos, b.pos) and torch.equal(a.doc, b.doc)


def test_resume_after_a_crash_gives_identical_shards(
    minilm: LoadedModel, docs: list[str], tmp_path: Path
) -> None:
    config = HarvestConfig(
        sites=(SITE,), tokens=3000, shard_rows=500, batch_size=8, window_batches=1
    )
    harvest(minilm, docs, config, out=tmp_path / "whole", corpus="pydocs")

    calls = []

    def crash_on_the_third_batch(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return x

    with (
        pytest.raises(RuntimeError, match="simulated crash"),
        patch_site(minilm, "encoder.layer.0.output", crash_on_the_third_batch),
    ):
        harvest(minilm, docs, config, out=tmp_path / "cut", corpus="pydocs")
    partial = ActivationStore(tmp_path / "cut")
    assert 0 < partial.rows < 3000 and partial.rows % 500 == 0
    result = harvest(minilm, docs, config, out=tmp_path / "cut", corpus="pydocs", resume=True)
    assert result.rows_resumed == partial.rows and result.rows == 3000
    assert shard_bytes(tmp_path / "cut") == shard_bytes(tmp_path / "whole")
    # Resuming a finished store changes nothing.
    again = harvest(minilm, docs, config, out=tmp_path / "cut", corpus="pydocs", resume=True)
    assert again.rows_resumed == 3000
    assert shard_bytes(tmp_path / "cut") == shard_bytes(tmp_path / "whole")


def test_resume_with_other_settings_is_refused(
    minilm: LoadedModel, docs: list[str], tmp_path: Path
) -> None:
    harvest(minilm, docs, HarvestConfig(sites=(SITE,), tokens=500), out=tmp_path, corpus="c")
    with pytest.raises(ValueError, match="tokens_requested"):
        harvest(
            minilm,
            docs,
            HarvestConfig(sites=(SITE,), tokens=600),
            out=tmp_path,
            corpus="c",
            resume=True,
        )


def test_corpus_that_runs_out(minilm: LoadedModel, docs: list[str], tmp_path: Path) -> None:
    result = harvest(
        minilm, docs[:5], HarvestConfig(sites=(SITE,), tokens=10**6), out=tmp_path, corpus="c"
    )
    n = sum(len(minilm.tokenizer(d, add_special_tokens=False)["input_ids"]) for d in docs[:5])
    assert result.exhausted and result.rows == n == ActivationStore(tmp_path).rows
    assert result.documents == 5


def test_empty_corpus_writes_nothing(minilm: LoadedModel, tmp_path: Path) -> None:
    out = tmp_path / "store"
    with pytest.raises(ValueError, match="holds no text tokens"):
        harvest(minilm, ["", "  \n "], HarvestConfig(sites=(SITE,), tokens=10), out=out, corpus="e")
    assert not out.exists()


@pytest.mark.parametrize(
    ("sites", "kwargs", "match"),
    [
        (("pooler.output",), {}, "one vector per sequence"),
        (("encoder.layer.3.outptu",), {}, r"unknown site.*encoder\.layer\.3\.output"),
        ((SITE,), {"seq_len": 1000}, "seq_len must be <= 512"),
    ],
)
def test_bad_requests_write_nothing(
    minilm: LoadedModel, tmp_path: Path, sites, kwargs, match: str
) -> None:
    out = tmp_path / "store"
    with pytest.raises(ValueError, match=match):
        harvest(
            minilm, ["text"], HarvestConfig(sites=sites, tokens=10, **kwargs), out=out, corpus="c"
        )
    assert not out.exists()


def test_config_takes_a_list_of_sites() -> None:
    config = HarvestConfig(sites=[SITE, "encoder.layer.1.output"], tokens=5)
    assert config.sites == (SITE, "encoder.layer.1.output")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sites": (SITE,), "tokens": 0}, ValueError, "tokens must be an int >= 1; got 0"),
        ({"sites": (SITE,), "tokens": 5, "batch_size": 0}, ValueError, "batch_size must be"),
        ({"sites": (SITE,), "tokens": 5, "dtype": "int8"}, ValueError, "dtype must be one of"),
        ({"sites": (), "tokens": 5}, ValueError, "at least one site"),
        ({"sites": (SITE, SITE), "tokens": 5}, ValueError, "names that do not repeat"),
        ({"sites": SITE, "tokens": 5}, TypeError, "a sequence of site names; got 'encoder"),
        ({"sites": None, "tokens": 5}, TypeError, "a sequence of site names; got None"),
    ],
)
def test_config_validation(kwargs, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        HarvestConfig(**kwargs)


def test_shards_hold_trace_columns(minilm: LoadedModel, docs: list[str], tmp_path: Path) -> None:
    harvest(minilm, docs, HarvestConfig(sites=(SITE,), tokens=300), out=tmp_path, corpus="c")
    shard = load_file(str(tmp_path / "shard-00000.safetensors"))
    assert shard["activations"].shape == (300, 384)
    assert shard["tokens"].dtype == torch.int32 and shard["doc"].dtype == torch.int64
    assert shard["pos"].dtype == torch.int32


def test_gpt2_style_model_without_special_tokens(tmp_path: Path) -> None:
    """A tokenizer that adds no special tokens and has no pad token: every token is text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    folder = tmp_path / "gpt2"
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=fast.vocab_size, n_layer=2, n_embd=16, n_head=2, n_positions=32)
    GPT2Model(config).save_pretrained(folder)
    loaded = load_model(folder)
    assert special_template(loaded.tokenizer) == ([], [], 1)

    docs = ["the quick brown fox " * 9, "", "lazy dog", "jumps over the lazy dog " * 3]
    cfg = HarvestConfig(sites=("h.0.output", "h.1.mlp.act.output"), tokens=1000, seq_len=8)
    result = harvest(loaded, docs, cfg, out=tmp_path / "acts", corpus="c", progress=True)
    n = [len(loaded.tokenizer(d)["input_ids"]) for d in docs]
    assert result.exhausted and result.rows == sum(n)
    store = ActivationStore(result.stores["h.0.output"])
    assert store.d_in == 16 and ActivationStore(result.stores["h.1.mlp.act.output"]).d_in == 64
    assert sorted(zip(store.doc.tolist(), store.pos.tolist(), strict=True)) == [
        (d, p) for d, k in enumerate(n) for p in range(k)
    ]
    # Row values are the chunk's own forward pass: chunks are 8 tokens, positions from 0.
    row = int(((store.doc == 0) & (store.pos == 11)).nonzero()[0, 0])
    ids = torch.tensor([loaded.tokenizer(docs[0])["input_ids"][8:16]])
    with torch.inference_mode():
        h = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(store.read(row, row + 1)[0], h[0, 3].half().float())


@pytest.mark.slow
def test_memory_stays_constant_whatever_tokens(tmp_path: Path) -> None:
    """Peak RSS of a 200k-token harvest is about that of a 20k one (streams, no growth)."""
    import subprocess
    import sys

    def peak_rss_kib(tokens: int) -> int:
        code = (
            "import resource, sys\n"
            "from polysemy.cli import main\n"
            f"code = main(['harvest', '--site', '{SITE}', '--corpus', 'pydocs', '--tokens', "
            f"'{tokens}', '--shard-rows', '16384', '--out', sys.argv[1]])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / str(tokens))],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1])

    small, large = peak_rss_kib(20_000), peak_rss_kib(200_000)
    assert ActivationStore(tmp_path / "200000").rows == 200_000
    assert large < small * 1.25 + 100_000, (small, large)
