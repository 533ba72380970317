import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from polysemy.activations.store import (
    MANIFEST,
    ActivationStore,
    StoreWriter,
    find_nonfinite_rows,
    require_finite,
)

SOURCE = {"model": "test", "site": "s", "corpus": "c", "seq_len": 8}


def make_store(
    path: Path,
    rows: int = 100,
    d_in: int = 6,
    *,
    shard_rows: int = 32,
    dtype: str = "float32",
    traced: bool = False,
    seed: int = 0,
) -> torch.Tensor:
    """Write a store of seeded random rows in uneven appends; return the rows (float32)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, d_in, generator=g)
    steps = itertools.cycle((7, 1, 40, 13))  # uneven appends, across shard boundaries
    with StoreWriter(path, d_in=d_in, dtype=dtype, source=SOURCE, shard_rows=shard_rows) as w:
        a = 0
        while a < rows:
            b = min(rows, a + next(steps))
            if traced:
                idx = torch.arange(a, b)
                w.append(x[a:b], tokens=idx * 3, doc=idx // 10, pos=idx % 10)
            else:
                w.append(x[a:b])
            a = b
    return x


# ---- writer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_round_trip_and_manifest(tmp_path, dtype):
    x = make_store(tmp_path / "s", rows=100, shard_rows=32, dtype=dtype)
    manifest = json.loads((tmp_path / "s" / MANIFEST).read_text())
    assert manifest["format"] == "polysemy.activations/1"
    assert manifest["dtype"] == dtype and manifest["d_in"] == 6 and manifest["rows"] == 100
    assert [s["rows"] for s in manifest["shards"]] == [32, 32, 32, 4]
    assert manifest["source"] == SOURCE
    store = ActivationStore(tmp_path / "s")
    assert (store.rows, store.d_in, store.dtype_name) == (100, 6, dtype)
    expected = x.to(getattr(torch, dtype)).float()
    assert torch.equal(store.read(0, 100), expected)
    assert torch.equal(store.read(30, 70), expected[30:70])  # crosses a shard boundary
    assert store.read(0, 5, dtype=None).dtype == getattr(torch, dtype)


def test_shards_are_plain_safetensors(tmp_path):
    from safetensors.torch import load_file

    x = make_store(tmp_path / "s", rows=40, shard_rows=32, traced=True)
    t = load_file(str(tmp_path / "s" / "shard-00000.safetensors"))
    assert torch.equal(t["activations"], x[:32])
    assert t["tokens"].dtype == torch.int32 and t["pos"].dtype == torch.int32
    assert t["doc"].dtype == torch.int64 and t["doc"].shape == (32,)


def test_rows_and_rows_committed(tmp_path):
    w = StoreWriter(tmp_path / "s", d_in=3, dtype="float32", source={}, shard_rows=10)
    w.append(torch.ones(25, 3))
    assert (w.rows, w.rows_committed, w.shards) == (25, 20, 2)
    # The manifest on disk names only complete shards.
    assert ActivationStore(tmp_path / "s").rows == 20
    w.close()
    assert ActivationStore(tmp_path / "s").rows == 25


def test_exception_keeps_complete_shards_only(tmp_path):
    with (
        pytest.raises(RuntimeError),
        StoreWriter(tmp_path / "s", d_in=3, dtype="float32", source={}, shard_rows=10) as w,
    ):
        w.append(torch.ones(25, 3))
        raise RuntimeError("killed")
    assert ActivationStore(tmp_path / "s").rows == 20


def test_resume_gives_identical_shards(tmp_path):
    full = tmp_path / "full"
    x = make_store(full, rows=100, shard_rows=16, traced=True)
    part = tmp_path / "part"
    with (
        pytest.raises(KeyboardInterrupt),
        StoreWriter(part, d_in=6, dtype="float32", source=SOURCE, shard_rows=16) as w,
    ):
        idx = torch.arange(0, 57)
        w.append(x[:57], tokens=idx * 3, doc=idx // 10, pos=idx % 10)
        raise KeyboardInterrupt
    # Debris of a killed shard write and of a shard renamed before its manifest update.
    (part / ".shard-00003.safetensors.tmp-abc").write_bytes(b"partial")
    (part / "shard-00003.safetensors").write_bytes(b"whatever")
    with StoreWriter(part, d_in=6, dtype="float32", source=SOURCE, shard_rows=16, resume=True) as w:
        start = w.rows_committed
        assert start == 48
        assert not (part / ".shard-00003.safetensors.tmp-abc").exists()
        idx = torch.arange(start, 100)
        w.append(x[start:], tokens=idx * 3, doc=idx // 10, pos=idx % 10)
    names = sorted(p.name for p in full.iterdir())
    assert names == sorted(p.name for p in part.iterdir())
    for name in names:
        assert (full / name).read_bytes() == (part / name).read_bytes(), name


def test_resume_of_missing_store_starts_fresh(tmp_path):
    w = StoreWriter(tmp_path / "new", d_in=2, dtype="float16", source={}, resume=True)
    assert w.rows_committed == 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"d_in": 7}, "d_in=6"),
        ({"dtype": "float16"}, "dtype float32"),
        ({"source": {**SOURCE, "site": "other"}}, "source differs in site"),
    ],
)
def test_resume_refuses_mismatch(tmp_path, change, match):
    make_store(tmp_path / "s", rows=40)
    kwargs = {"d_in": 6, "dtype": "float32", "source": SOURCE, **change}
    with pytest.raises(ValueError, match=match):
        StoreWriter(tmp_path / "s", resume=True, **kwargs)


def test_fresh_writer_replaces_old_store(tmp_path):
    make_store(tmp_path / "s", rows=100, shard_rows=16)
    (tmp_path / "s" / "truth.safetensors").write_bytes(b"x")
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with StoreWriter(tmp_path / "s", d_in=2, dtype="float32", source={}) as w:
        w.append(torch.zeros(3, 2))
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == [MANIFEST, "notes.txt", "shard-00000.safetensors"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"d_in": 0}, ValueError, "d_in must be an int >= 1"),
        ({"dtype": "int8"}, ValueError, "dtype must be one of"),
        ({"shard_rows": 0}, ValueError, "shard_rows"),
        ({"source": {"x": float("nan")}}, ValueError, "JSON"),
        ({"source": [1]}, TypeError, "source must be a dict"),
    ],
)
def test_writer_validates(tmp_path, kwargs, error, match):
    full = {"d_in": 3, "dtype": "float32", "source": {}, **kwargs}
    with pytest.raises(error, match=match):
        StoreWriter(tmp_path / "s", **full)


def test_append_validates(tmp_path):
    w = StoreWriter(tmp_path / "s", d_in=3, dtype="float32", source={})
    with pytest.raises(ValueError, match=r"shape \[rows, 3\]; got \[4, 2\]"):
        w.append(torch.zeros(4, 2))
    with pytest.raises(TypeError, match="floating point"):
        w.append(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="missing doc, pos"):
        w.append(torch.zeros(4, 3), tokens=torch.zeros(4))
    w.append(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="has no trace columns"):
        w.append(torch.zeros(4, 3), tokens=torch.zeros(4), doc=torch.zeros(4), pos=torch.zeros(4))
    w.close()
    with pytest.raises(ValueError, match="cannot append to a closed StoreWriter"):
        w.append(torch.zeros(4, 3))


@pytest.mark.parametrize(
    ("column", "error", "match"),
    [
        (torch.zeros(4), TypeError, "doc must be integer; got torch.float32"),
        (torch.zeros(5, dtype=torch.int64), ValueError, r"doc must have shape \[4\]; got \[5\]"),
    ],
)
def test_append_validates_trace_columns(tmp_path, column, error, match):
    w = StoreWriter(tmp_path / "s", d_in=3, dtype="float32", source={})
    ids = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(error, match=match):
        w.append(torch.zeros(4, 3), tokens=ids, doc=column, pos=ids)


def test_copy_tokenizer(tmp_path):
    class Tok:
        def save_pretrained(self, folder):
            Path(folder, "tokenizer.json").write_text("{}")

    w = StoreWriter(tmp_path / "s", d_in=3, dtype="float32", source={})
    w.copy_tokenizer(Tok())
    w.close()
    store = ActivationStore(tmp_path / "s")
    assert store.tokenizer_path is not None
    assert (store.tokenizer_path / "tokenizer.json").is_file()
    with pytest.raises(TypeError, match="save_pretrained"):
        w.copy_tokenizer(object())


# ---- reader: splits, batches, traces -------------------------------------------------------


def test_heldout_is_last_rows_and_disjoint(tmp_path):
    x = make_store(tmp_path / "s", rows=200)
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.1)
    assert store.split_rows("train") == 180 and store.split_rows("heldout") == 20
    assert torch.equal(store.read(0, 20, split="heldout"), x[180:])
    seen = torch.cat(list(store.batches(10, split="train", seed=3)))
    heldout = {tuple(r.tolist()) for r in x[180:]}
    assert not any(tuple(r.tolist()) in heldout for r in seen)


def test_heldout_boundary_follows_documents(tmp_path):
    make_store(tmp_path / "s", rows=200, traced=True)  # doc = row // 10
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.07)  # nominal boundary 186
    lo, hi = store.split_range("heldout")
    assert (lo, hi) == (190, 200)
    doc = store.doc
    assert doc is not None
    assert set(doc[:lo].tolist()).isdisjoint(doc[lo:].tolist())


@pytest.mark.parametrize(("split_at", "expected"), [(150, 150), (None, 180)])
def test_heldout_boundary_moves_back_or_stays(tmp_path, split_at, expected):
    # Two documents split at row 150 (boundary 180 has no later document start: move back),
    # or one document only (no boundary anywhere: keep the nominal one).
    x = torch.randn(200, 3)
    doc = (torch.arange(200) >= split_at).long() if split_at else torch.zeros(200).long()
    with StoreWriter(tmp_path / "s", d_in=3, dtype="float32", source={}, shard_rows=64) as w:
        zeros = torch.zeros(200, dtype=torch.long)
        w.append(x, tokens=zeros, doc=doc, pos=zeros)
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.1)
    assert store.split_range("heldout") == (expected, 200)
    assert store.split_range("train") == (0, expected)


def test_trace_columns(tmp_path):
    make_store(tmp_path / "s", rows=50, traced=True)
    store = ActivationStore(tmp_path / "s")
    assert store.traced
    trace = store.read_trace(20, 40)
    assert torch.equal(trace.tokens, torch.arange(20, 40, dtype=torch.int32) * 3)
    assert torch.equal(trace.doc, torch.arange(20, 40) // 10)
    assert store.tokens is not None and store.tokens.shape == (50,)
    whole = store.read_trace(0, 50)
    for name in ("tokens", "doc", "pos"):
        column = getattr(store, name)
        assert column.dtype == getattr(whole, name).dtype
        assert torch.equal(column, getattr(whole, name))
    untraced = tmp_path / "u"
    make_store(untraced, rows=10)
    assert ActivationStore(untraced).tokens is None
    with pytest.raises(ValueError, match="no tokens/doc/pos"):
        ActivationStore(untraced).read_trace(0, 2)


def rowset(batches):
    return sorted(tuple(r.tolist()) for b in batches for r in b)


def test_shuffled_batches_cover_train_once_and_are_deterministic(tmp_path):
    x = make_store(tmp_path / "s", rows=300, shard_rows=64)
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.0)
    a = list(store.batches(10, seed=1, shuffle_window=64))
    b = list(store.batches(10, seed=1, shuffle_window=64))
    c = list(store.batches(10, seed=2, shuffle_window=64))
    assert len(a) == 30 and all(t.shape == (10, 6) for t in a)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    assert rowset(a) == rowset([x])  # every row exactly once
    # Rows are actually mixed: the first batch is not a run of consecutive rows.
    first = torch.cat(a[:1])
    idx = [int(torch.nonzero((x == r).all(1))[0]) for r in first]
    assert max(idx) - min(idx) > 20


def test_unshuffled_batches_in_order_and_last_partial(tmp_path):
    x = make_store(tmp_path / "s", rows=95)
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.0)
    out = list(store.batches(20, shuffle=False, drop_last=False))
    assert [len(b) for b in out] == [20, 20, 20, 20, 15]
    assert torch.equal(torch.cat(out), x)
    assert len(list(store.batches(20, shuffle=False))) == 4


@pytest.mark.parametrize("world_size", [2, 3, 5])
def test_ranks_disjoint_and_equal_batch_counts(tmp_path, world_size):
    x = make_store(tmp_path / "s", rows=203, shard_rows=64)
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.0)
    per_rank = [
        list(store.batches(7, seed=0, rank=r, world_size=world_size, shuffle_window=32))
        for r in range(world_size)
    ]
    counts = {len(b) for b in per_rank}
    assert counts == {203 // world_size // 7}
    sets = [set(rowset(b)) for b in per_rank]
    for i in range(world_size):
        for j in range(i + 1, world_size):
            assert sets[i].isdisjoint(sets[j])
    assert set().union(*sets) <= set(rowset([x]))


def test_batches_dtype_and_device(tmp_path):
    make_store(tmp_path / "s", rows=40, dtype="bfloat16")
    store = ActivationStore(tmp_path / "s")
    b = next(store.batches(8, dtype=torch.float64))
    assert b.dtype == torch.float64 and b.device.type == "cpu"
    assert next(store.batches(8, dtype=None)).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"batch_size": 1000}, "larger than the"),
        ({"batch_size": 4, "rank": 2, "world_size": 2}, r"rank must be in \[0, 2\)"),
        ({"batch_size": 4, "split": "test"}, "split must be one of"),
        ({"batch_size": 4, "split": "heldout"}, "larger than the 0 rows"),
    ],
)
def test_batches_validate(tmp_path, kwargs, match):
    make_store(tmp_path / "s", rows=40)
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.0)
    with pytest.raises(ValueError, match=match):
        store.batches(**kwargs)


def test_read_validates(tmp_path):
    make_store(tmp_path / "s", rows=40)
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.1)
    with pytest.raises(ValueError, match=r"out of range for split 'heldout' with 4 rows"):
        store.read(0, 5, split="heldout")
    with pytest.raises(ValueError, match="heldout_fraction"):
        ActivationStore(tmp_path / "s", heldout_fraction=1.0)


# ---- single files ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_single_npy(tmp_path, dtype):
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(dtype)
    np.save(tmp_path / "a.npy", x)
    store = ActivationStore(tmp_path / "a.npy", heldout_fraction=0.2)
    assert (store.rows, store.d_in, store.split_rows("heldout")) == (30, 5, 6)
    assert np.array_equal(store.read(0, 30, dtype=None).numpy(), x)
    assert len(list(store.batches(4))) == 6


def test_single_safetensors(tmp_path):
    x = torch.randn(30, 5)
    save_file({"activations": x}, str(tmp_path / "a.safetensors"))
    store = ActivationStore(tmp_path / "a.safetensors")
    assert torch.equal(store.read(0, 30), x)
    save_file({"other": x}, str(tmp_path / "b.safetensors"))
    with pytest.raises(ValueError, match=r"no 'activations' array \(it holds \['other'\]\)"):
        ActivationStore(tmp_path / "b.safetensors")
    save_file({"activations": torch.zeros(3, 4, 5)}, str(tmp_path / "c.safetensors"))
    with pytest.raises(ValueError, match="must be 2-D"):
        ActivationStore(tmp_path / "c.safetensors")


# ---- bad input: one line each ---------------------------------------------------------------


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found") as e:
        ActivationStore(tmp_path / "nope")
    one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        ActivationStore(tmp_path / "empty")


def test_missing_shard(tmp_path):
    make_store(tmp_path / "s", rows=100)
    os.unlink(tmp_path / "s" / "shard-00001.safetensors")
    with pytest.raises(FileNotFoundError, match=r"missing shard 'shard-00001\.safetensors'") as e:
        ActivationStore(tmp_path / "s")
    one_line(e)


def test_truncated_shard(tmp_path):
    make_store(tmp_path / "s", rows=100)
    path = tmp_path / "s" / "shard-00002.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"shard-00002\.safetensors' is truncated") as e:
        ActivationStore(tmp_path / "s")
    one_line(e)
    path.write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="truncated or not a safetensors file"):
        ActivationStore(tmp_path / "s")


def test_manifest_rows_disagree(tmp_path):
    make_store(tmp_path / "s", rows=100)
    path = tmp_path / "s" / MANIFEST
    m = json.loads(path.read_text())
    m["rows"] = 120
    path.write_text(json.dumps(m))
    with pytest.raises(ValueError, match="says 120 rows but its shards hold 100"):
        ActivationStore(tmp_path / "s")
    m["rows"] = 100
    m["shards"][0]["rows"] = 30
    m["shards"][1]["rows"] = 34
    path.write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"the manifest says float32 \[30, 6\]"):
        ActivationStore(tmp_path / "s")


@pytest.mark.parametrize(
    ("fmt", "match"),
    [
        ("polysemy.activations/2", "cannot read"),
        ("polysemy.sae/1", "unknown format 'polysemy.sae/1'"),
        (None, "unknown format None"),
    ],
)
def test_unknown_format(tmp_path, fmt, match):
    make_store(tmp_path / "s", rows=10)
    path = tmp_path / "s" / MANIFEST
    m = json.loads(path.read_text())
    m["format"] = fmt
    path.write_text(json.dumps(m))
    with pytest.raises(ValueError, match=match):
        ActivationStore(tmp_path / "s")


def test_manifest_shard_outside_folder(tmp_path):
    make_store(tmp_path / "s", rows=10)
    path = tmp_path / "s" / MANIFEST
    m = json.loads(path.read_text())
    m["shards"][0]["file"] = "../evil.safetensors"
    path.write_text(json.dumps(m))
    with pytest.raises(ValueError, match="outside it"):
        ActivationStore(tmp_path / "s")


def test_npy_not_2d_or_not_float_or_pickle(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"2-D \[rows, d_in\] array; got shape \[5\]"):
        ActivationStore(tmp_path / "a.npy")
    np.save(tmp_path / "b.npy", np.zeros((5, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="must hold a float array; got dtype int64"):
        ActivationStore(tmp_path / "b.npy")
    np.save(tmp_path / "c.npy", np.array([[{"x": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="unpickling") as e:
        ActivationStore(tmp_path / "c.npy")
    one_line(e)
    (tmp_path / "d.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"not a valid \.npy"):
        ActivationStore(tmp_path / "d.npy")
    (tmp_path / "e.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"store folder, a \.npy or a \.safetensors"):
        ActivationStore(tmp_path / "e.pt")


# ---- NaN / Inf ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_find_nonfinite_rows_in_store(tmp_path, dtype):
    x = torch.randn(100, 4)
    x[17, 2] = float("nan")
    x[64, 0] = float("inf")
    x[99, 3] = -float("inf")
    with StoreWriter(tmp_path / "s", d_in=4, dtype=dtype, source={}, shard_rows=30) as w:
        w.append(x)
    store = ActivationStore(tmp_path / "s")
    found = find_nonfinite_rows(store, chunk_rows=16)
    assert found.n_rows == 3 and found.rows == (17, 64, 99)
    assert find_nonfinite_rows(store, max_rows=1).rows == (17,)
    with pytest.raises(ValueError, match=r"NaN or Inf in 3 rows \(row 17, 64, 99\)"):
        require_finite(store)


def test_find_nonfinite_rows_in_arrays():
    x = torch.zeros(10, 3, dtype=torch.bfloat16)
    assert find_nonfinite_rows(x).n_rows == 0
    require_finite(x)
    x[4, 1] = float("nan")
    assert find_nonfinite_rows(x).rows == (4,)
    assert find_nonfinite_rows(x.float().numpy()).rows == (4,)
    with pytest.raises(ValueError, match="2-D"):
        find_nonfinite_rows(torch.zeros(3))
    with pytest.raises(TypeError, match="ActivationStore, a Tensor or an ndarray"):
        find_nonfinite_rows([1.0])  # type: ignore[arg-type]


def test_few_shards_mapped_at_once(tmp_path, monkeypatch):
    import polysemy.activations.store as store_module

    monkeypatch.setattr(store_module, "MAX_OPEN_SHARDS", 2)
    x = make_store(tmp_path / "s", rows=100, shard_rows=10)
    store = ActivationStore(tmp_path / "s", heldout_fraction=0.0)
    got = torch.cat(list(store.batches(5, seed=0, shuffle_window=20)))
    assert rowset([got]) == rowset([x])
    assert torch.equal(store.read(0, 100), x)
    assert len(store._maps) == 2


KILLED_WRITER = """
import os, sys, torch
from polysemy.activations.store import StoreWriter
x = torch.randn(100, 6, generator=torch.Generator().manual_seed(0))
w = StoreWriter(sys.argv[1], d_in=6, dtype="float16", source={"m": 1}, shard_rows=16)
w.append(x[:70])
os._exit(9)  # killed: no close, no cleanup, 6 rows still buffered
"""


def test_resume_after_a_real_kill(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "cut")], check=False)
    assert proc.returncode == 9
    x = torch.randn(100, 6, generator=torch.Generator().manual_seed(0))
    assert ActivationStore(tmp_path / "cut").rows == 64
    with StoreWriter(
        tmp_path / "cut", d_in=6, dtype="float16", source={"m": 1}, shard_rows=16, resume=True
    ) as w:
        w.append(x[w.rows_committed :])
    with StoreWriter(
        tmp_path / "whole", d_in=6, dtype="float16", source={"m": 1}, shard_rows=16
    ) as w:
        w.append(x)
    for name in sorted(p.name for p in (tmp_path / "whole").iterdir()):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert torch.equal(ActivationStore(tmp_path / "cut").read(0, 100), x.half().float())
