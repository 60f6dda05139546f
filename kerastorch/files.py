"""Atomic checkpoint files: write to a temporary file, then rename over the target."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

__all__ = ["atomic_save", "load_state_dict_file", "cpu_state_dict", "check_writable"]


def atomic_save(obj: Any, path: str) -> None:
    """Save ``obj`` with ``torch.save`` so that ``path`` is never left half-written.

    The data goes to a temporary file in the same directory, which then replaces
    ``path`` in one ``os.replace``; a crash mid-write leaves the old file intact.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_state_dict_file(path: str) -> dict:
    """Load a state dict saved by :func:`atomic_save`, refusing pickled code.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a loadable weights-only checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"could not load checkpoint {path!r} as a weights-only state dict "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "the file is corrupt or contains pickled objects other than tensors"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path!r} holds a {type(state).__name__}, expected a state dict")
    return state


def cpu_state_dict(net: torch.nn.Module) -> dict:
    """A detached CPU copy of ``net.state_dict()`` (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def check_writable(path: str, what: str = "ckpt_path") -> None:
    """Fail before training when ``path``'s directory cannot be created or written."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".probe-", dir=directory)
        os.close(fd)
        os.remove(tmp)
    except OSError as exc:
        raise ValueError(
            f"{what} {path!r} is not writable ({exc.strerror or exc}); "
            "pass a path in a writable directory or ckpt_path=None"
        ) from exc
