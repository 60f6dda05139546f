"""Atomic writes: no half files, temporary names no glob picks up, stale ones cleared."""

import glob
import os
import subprocess
import sys

import pytest
import torch

from kerastorch.files import (TMP_SUFFIX, atomic_open, atomic_save, load_state_dict_file,
                              save_safetensors_file)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # finished and reaped: no process has this pid now (barring reuse)


def test_a_killed_writers_temporary_is_invisible_to_globs_and_cleared_next_write(tmp_path):
    target = tmp_path / "best.pt"
    stale = tmp_path / f".best.pt.{_dead_pid()}.abc123{TMP_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".best.pt.{os.getppid()}.def456{TMP_SUFFIX}"  # a writer still running
    live.write_bytes(b"in progress")
    other = tmp_path / f".last.pt.{_dead_pid()}.ghi789{TMP_SUFFIX}"  # another target's
    other.write_bytes(b"not ours to clear now")
    assert glob.glob(str(tmp_path / "*.pt")) == []
    assert glob.glob(str(tmp_path / "**" / "*.pt"), recursive=True, include_hidden=True) == [] \
        if sys.version_info >= (3, 11) else True
    atomic_save({"w": torch.ones(2)}, str(target))
    assert sorted(os.listdir(tmp_path)) == sorted(["best.pt", live.name, other.name])
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(2))


def test_an_error_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(str(target), "w") as f:
            f.write("new, half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["history.csv"]


def test_checkpoint_write_failure_leaves_previous_best_intact(tmp_path, monkeypatch):
    import kerastorch.files as files

    path = tmp_path / "best.pt"
    files.atomic_save({"w": torch.ones(2)}, str(path))
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_save({"w": torch.zeros(2)}, str(path))
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(load_state_dict_file(str(path))["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temp file left behind


def test_safetensors_files_load_by_extension_or_by_their_header(tmp_path):
    pytest.importorskip("safetensors")
    state = {"w": torch.arange(6.0).reshape(2, 3).t(), "n": torch.tensor([3], dtype=torch.int64)}
    for name in ("w.safetensors", "w.bin"):
        save_safetensors_file(state, str(tmp_path / name))
        loaded = load_state_dict_file(str(tmp_path / name))
        assert sorted(loaded) == ["n", "w"]
        assert all(torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype
                   for k in state)
    atomic_save(state, str(tmp_path / "w.pt"))  # torch.save files are not mistaken for one
    assert torch.equal(load_state_dict_file(str(tmp_path / "w.pt"))["w"], state["w"])


def test_a_garbled_or_missing_safetensors_file_is_a_clear_error(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "w.safetensors"
    save_safetensors_file({"w": torch.ones(4)}, str(path))
    path.write_bytes(path.read_bytes()[:-7])  # truncated
    with pytest.raises(ValueError, match="could not load safetensors checkpoint"):
        load_state_dict_file(str(path))
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="could not load safetensors checkpoint"):
        load_state_dict_file(str(path))
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_state_dict_file(str(tmp_path / "missing.safetensors"))
