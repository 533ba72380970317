import json
import os

import pytest
import torch
from safetensors.torch import load_file

from polysemy.runfolder import (
    ACTIVATIONS,
    SAE,
    TOY,
    atomic_folder,
    atomic_save_safetensors,
    atomic_write_json,
    check_out,
    detect_kind,
)


def _make_run(path, kind):
    path.mkdir(parents=True)
    (path / kind.marker).write_text(json.dumps({"format": kind.format}))


def test_check_out_accepts_missing_empty_and_same_kind(tmp_path):
    assert check_out(tmp_path / "new", TOY) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_out(tmp_path / "empty", TOY)
    _make_run(tmp_path / "toy", TOY)
    check_out(tmp_path / "toy", TOY)


@pytest.mark.parametrize("existing", [ACTIVATIONS, SAE])
def test_check_out_refuses_other_kind_unless_forced(tmp_path, existing):
    _make_run(tmp_path / "run", existing)
    with pytest.raises(
        ValueError, match=r"out .* already holds a polysemy\..* run, not a polysemy.toy/1"
    ):
        check_out(tmp_path / "run", TOY)
    check_out(tmp_path / "run", TOY, force=True)


def test_check_out_refuses_foreign_files_and_plain_file(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a polysemy run"):
        check_out(tmp_path / "stuff", SAE)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="must be a folder"):
        check_out(tmp_path / "file", SAE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_check_out_refuses_unwritable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="not writable"):
        check_out(locked / "run", TOY)


def test_check_out_names_the_unwritable_ancestor(tmp_path, monkeypatch):
    # Runs as root too (where the real permission test above is skipped).
    (tmp_path / "a").mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match=r"not writable \(no write access to '.*[/\\]a'\)"):
        check_out(tmp_path / "a" / "new" / "run", TOY)


def test_atomic_folder_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    out = tmp_path / "run"
    with atomic_folder(out) as tmp:
        atomic_write_json(tmp / TOY.marker, {"format": TOY.format, "v": 1})
    assert detect_kind(out) == TOY.format
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        atomic_write_json(tmp / TOY.marker, {"format": TOY.format, "v": 2})
        raise RuntimeError("killed")
    assert json.loads((out / TOY.marker).read_text())["v"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp leftovers


def test_safetensors_save_roundtrips_noncontiguous(tmp_path):
    w = torch.randn(5, 7)
    tensors = {"W_enc": w.t(), "b": torch.arange(10.0)[::2]}
    assert not tensors["W_enc"].is_contiguous() and not tensors["b"].is_contiguous()
    atomic_save_safetensors(tmp_path / "w.safetensors", tensors)
    back = load_file(tmp_path / "w.safetensors")
    assert torch.equal(back["W_enc"], w.t())
    assert torch.equal(back["b"], torch.arange(10.0)[::2])


def test_atomic_writes_keep_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_folder(tmp_path / "run") as tmp:
            atomic_write_json(tmp / "a.json", {})
        assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755
        assert (tmp_path / "run" / "a.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
