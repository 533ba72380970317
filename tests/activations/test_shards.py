import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from polysemy.activations.shards import (
    dtype_name,
    is_store_member,
    memmap_array,
    read_header,
    to_tensor,
)


def test_header_locates_every_array(tmp_path):
    tensors = {
        "activations": torch.randn(7, 5).to(torch.bfloat16),
        "tokens": torch.arange(7, dtype=torch.int32),
        "doc": torch.arange(7, dtype=torch.int64) * 3,
    }
    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path))
    arrays, size = read_header(path)
    assert size == path.stat().st_size
    assert {k: (a.code, a.shape) for k, a in arrays.items()} == {
        "activations": ("BF16", (7, 5)),
        "tokens": ("I32", (7,)),
        "doc": ("I64", (7,)),
    }
    for name, t in tensors.items():
        mapped = torch.from_numpy(np.array(memmap_array(path, arrays[name])))
        if t.dtype == torch.bfloat16:
            mapped = mapped.view(torch.bfloat16)
        assert torch.equal(mapped, t), name


def test_header_of_garbage_is_one_line(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(ValueError, match="truncated or not a safetensors file"):
        read_header(path)
    path.write_bytes((5).to_bytes(8, "little") + b"nope!")
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_header(path)


@pytest.mark.parametrize("stored", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("target", [torch.float32, torch.float64, torch.float16, None])
def test_to_tensor_matches_torch_conversion(stored, target):
    x = (torch.randn(64, 9) * 100).to(getattr(torch, stored))
    raw = x.view(torch.int16).numpy().view(np.uint16) if stored == "bfloat16" else x.numpy()
    got = to_tensor(raw, stored, target, "cpu")
    want = x if target is None else x.to(target)
    assert got.dtype == want.dtype
    assert torch.equal(got, want)


def test_dtype_name_and_members():
    assert dtype_name(torch.bfloat16) == "bfloat16" and dtype_name("float16") == "float16"
    with pytest.raises(ValueError, match=r"dtype must be one of .*; got torch.int8"):
        dtype_name(torch.int8)
    assert is_store_member("shard-00012.safetensors") and is_store_member("manifest.json")
    assert is_store_member(".shard-00001.safetensors.tmp-x1")
    assert not is_store_member("notes.txt") and not is_store_member("shard-1.safetensors")
