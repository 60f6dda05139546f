"""Atomic checkpoint files: write to a temporary file, then rename over the target.

Weights are read weights-only: ``torch.save`` files with ``weights_only=True`` and
safetensors files (which cannot hold code at all).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any

import torch

__all__ = ["atomic_open", "atomic_save", "remove_stale_temporaries", "load_weights_only", "load_state_dict_file",
           "save_safetensors_file", "is_safetensors_file", "cpu_state_dict", "check_writable"]


TMP_SUFFIX = ".kt-tmp"
# safetensors metadata key: {"alias": "stored name"} for state-dict entries that are the
# same tensor (tied weights), each stored once
ALIASES_KEY = "kerastorch.aliases"
SAFETENSORS_EXTRA = 'pip install safetensors (or pip install -e ".[onnx]")'


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb", **open_kwargs):
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    A crash or an exception mid-write leaves the previous ``path`` intact and no
    temporary file behind. A process killed mid-write (SIGKILL) cannot clean up:
    its temporary file is named ``.<name>.<pid>.<random>.kt-tmp``, which no
    ``*.pt`` (or ``*.csv``, ...) glob matches, and the next write of the same
    ``path`` removes such files left by processes that no longer run. Every file
    kerastorch writes goes through here.

    Example:
        >>> import tempfile, os
        >>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
        >>> with atomic_open(target, "w") as f:
        ...     _ = f.write("done")
        >>> open(target).read(), os.listdir(os.path.dirname(target))
        ('done', ['note.txt'])
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = f".{os.path.basename(path)}."
    remove_stale_temporaries(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", suffix=TMP_SUFFIX,
                               dir=directory)
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


def remove_stale_temporaries(directory: str, prefix: str) -> list:
    """Remove ``prefix<pid>.*.kt-tmp`` files in ``directory`` whose writer no longer runs.

    A file whose pid is alive belongs to a write in progress (another process, or
    another thread of this one) and is kept. Returns the removed names.
    """
    removed = []
    for name in os.listdir(directory):
        if not (name.startswith(prefix) and name.endswith(TMP_SUFFIX)):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, name))
                removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


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
    """Load a state dict saved by :func:`atomic_save` or :func:`save_safetensors_file`.

    A safetensors file is recognised by its ``.safetensors`` extension or by its header;
    tied weights stored once come back under every name. Pickled code is refused.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a loadable weights-only state dict.
        ImportError: a safetensors file, and the safetensors package is missing.
    """
    path = os.fspath(path)
    if os.path.isfile(path) and is_safetensors_file(path):
        return _load_safetensors(path)
    state = load_weights_only(path, "checkpoint")
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path!r} holds a {type(state).__name__}, expected a state dict")
    return state


def is_safetensors_file(path: str) -> bool:
    """Whether ``path`` ends in ``.safetensors`` or starts like one (an 8-byte little-endian
    header length, then the header's JSON ``{``)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 8 + int.from_bytes(head[:8], "little") <= os.path.getsize(path)


def _safetensors_module(path: str, verb: str):
    try:
        import safetensors.torch
    except ImportError as exc:
        raise ImportError(f"{verb} the safetensors file {path!r} needs the safetensors package: "
                          f"{SAFETENSORS_EXTRA}") from exc
    return safetensors


def _load_safetensors(path: str) -> dict:
    safetensors = _safetensors_module(path, "reading")
    try:
        with safetensors.safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {name: f.get_tensor(name) for name in f.keys()}
        aliases = json.loads(metadata.get(ALIASES_KEY, "{}"))
        for alias, name in aliases.items():
            state[alias] = state[name]
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"could not load safetensors checkpoint {path!r} ({type(exc).__name__}: "
                         f"{first_line}); the file is corrupt or not a safetensors file") from exc
    return state


def save_safetensors_file(state_dict: dict, path: str) -> None:
    """Write ``state_dict`` to ``path`` in the safetensors format, atomically.

    Tensors go to the CPU, contiguous. Entries that are the same tensor (tied weights)
    are stored once and named in the header's ``kerastorch.aliases`` metadata, which
    :func:`load_state_dict_file` reads back; other tensors that share memory are copied.

    Raises:
        ValueError: an entry is not a tensor (safetensors holds tensors only).
        ImportError: the safetensors package is missing.
    """
    path = os.fspath(path)
    safetensors = _safetensors_module(path, "writing")
    tensors, aliases, first_name, storages = {}, {}, {}, set()
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"safetensors files hold tensors only; state_dict entry {name!r} is a "
                             f"{type(value).__name__}. Save it with format='torchscript' or save_ckpt")
        view = _view_key(value)
        if view is not None and view in first_name:
            aliases[name] = first_name[view]
            continue
        tensor = value.detach().to("cpu").contiguous()
        if view is not None:
            first_name[view] = name
            # safetensors refuses tensors sharing memory: a partial overlap is stored as a copy
            tensor = tensor.clone() if view[:2] in storages else tensor
            storages.add(view[:2])
        tensors[name] = tensor
    metadata = {"format": "pt"}
    if aliases:
        metadata[ALIASES_KEY] = json.dumps(aliases)
    data = safetensors.torch.save(tensors, metadata=metadata)
    with atomic_open(path, "wb") as f:
        f.write(data)


def _view_key(tensor: torch.Tensor):
    """What makes two state-dict entries the same tensor: storage, offset, shape, strides, dtype."""
    if tensor.numel() == 0 or tensor.device.type == "meta":
        return None
    return (str(tensor.device), tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
            tuple(tensor.shape), tensor.stride(), tensor.dtype)


def cpu_state_dict(net: torch.nn.Module) -> dict:
    """A detached CPU copy of ``net.state_dict()`` (safe to keep while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def net_weights(model) -> dict:
    """The net's weights on the CPU: ``model.full_state_dict()``, which gathers a sharded
    net's weights (every process must call it then), or a copy of
    ``model.unwrapped_net.state_dict()`` for a stand-in model without that method."""
    full = getattr(model, "full_state_dict", None)
    return full() if full is not None else cpu_state_dict(model.unwrapped_net)


def is_sharded(model) -> bool:
    """Whether reading ``model``'s weights is a collective (FSDP, DeepSpeed); False for a
    stand-in model without ``is_sharded``."""
    return bool(getattr(model, "is_sharded", False))


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
