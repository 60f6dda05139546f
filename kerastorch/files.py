"""Atomic checkpoint files: write to a temporary file, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

import torch

__all__ = ["atomic_open", "atomic_save", "load_weights_only", "load_state_dict_file",
           "cpu_state_dict", "check_writable"]


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb", **open_kwargs):
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash or an exception mid-write leaves the previous ``path`` intact and no
    temporary file behind. Every file kerastorch writes goes through here.

    Example:
        >>> import tempfile, os
        >>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
        >>> with atomic_open(target, "w") as f:
        ...     _ = f.write("done")
        >>> open(target).read()
        'done'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """Save ``obj`` with ``torch.save`` so that ``path`` is never left half-written."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def load_weights_only(path: str, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that say what happened.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is corrupt or holds pickled objects other than tensors
            and plain values (a file that would run code is refused, never run).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {what} file at {path!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(
            f"could not load {what} {path!r} with weights_only=True ({type(exc).__name__}: "
            f"{first_line}); the file is corrupt or contains pickled objects other than "
            "tensors (weights-only loading refuses code)"
        ) from exc


def load_state_dict_file(path: str) -> dict:
    """Load a state dict saved by :func:`atomic_save`, refusing pickled code.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a loadable weights-only state dict.
    """
    state = load_weights_only(path, "checkpoint")
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
