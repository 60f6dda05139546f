"""Provenance: what a run was made of (fit's arguments, the model, library versions), as JSON.

Used by :class:`kerastorch.callbacks.RunDirectory` for ``hparams.json`` and by
:class:`kerastorch.callbacks.WandbLogger` for the run's config.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import sys
from typing import Any, Optional

import numpy as np
import torch

from .files import atomic_open
from .version import __version__

__all__ = ["describe_model", "describe_fit_arguments", "versions", "write_json"]


def versions() -> dict:
    """Versions of Python and of the libraries a run depends on."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "kerastorch": __version__, "accelerate": _version_of("accelerate"),
            "torchmetrics": _version_of("torchmetrics"), "numpy": np.__version__,
            "pandas": _version_of("pandas")}


def _version_of(package: str) -> str:
    """The imported module's ``__version__``, else the installed one's, read without importing
    it (torchmetrics takes seconds to import)."""
    module = sys.modules.get(package)
    return module.__version__ if module is not None else importlib.metadata.version(package)


def describe_model(model: Any) -> dict:
    """The optimizer, scheduler, loss, metrics and net of a ``KerasModel``, JSON-ready.

    The optimizer is described by its class and each parameter group's settings
    (everything but the tensors, plus the group's parameter count).
    """
    net = getattr(model, "net", None)
    optimizer = getattr(model, "optimizer", None)
    scheduler = getattr(model, "lr_scheduler", None)
    description = {
        "optimizer": None if optimizer is None else {
            "class": _qualname(optimizer),
            "param_groups": [{**{k: _jsonable(v) for k, v in g.items() if k != "params"},
                              "num_params": sum(p.numel() for p in g["params"])}
                             for g in optimizer.param_groups]},
        "lr_scheduler": None if scheduler is None else {
            "class": _qualname(scheduler), "interval": getattr(model, "lr_scheduler_interval",
                                                               None),
            "state": {k: _jsonable(v) for k, v in _scheduler_state(scheduler).items()}},
        "loss_fn": _short_repr(getattr(model, "loss_fn", None)),
        "metrics": {name: _short_repr(m) for name, m in getattr(model, "metrics_dict", {}).items()},
    }
    if isinstance(net, torch.nn.Module):
        description["net_class"] = _qualname(net)
        description["num_parameters"] = sum(p.numel() for p in net.parameters())
        description["trainable_parameters"] = sum(p.numel() for p in net.parameters()
                                                  if p.requires_grad)
        description["net"] = repr(net)
    acc = getattr(model, "accelerator", None)
    if acc is not None:
        description["accelerator"] = {"device": str(acc.device),
                                      "num_processes": acc.num_processes,
                                      "mixed_precision": str(acc.mixed_precision)}
    return description


def describe_fit_arguments(arguments: dict) -> dict:
    """``fit``'s arguments, JSON-ready: data become short descriptions, callbacks class names."""
    out = {}
    for name, value in arguments.items():
        if name in ("self", "unknown", "__class__"):
            continue
        if name in ("train_data", "val_data", "validation_data", "sample_weight"):
            out[name] = _describe_data(value)
        elif name == "callbacks":
            out[name] = None if value is None else [type(cb).__name__ for cb in value]
        else:
            out[name] = _jsonable(value)
    return out


def write_json(obj: Any, path: str) -> None:
    """Write ``obj`` as indented JSON through a temporary file and a rename."""
    text = json.dumps(obj, indent=2, default=repr, allow_nan=True)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _short_repr(obj: Any, limit: int = 300) -> Optional[str]:
    if obj is None:
        return None
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def _scheduler_state(scheduler: Any) -> dict:
    try:
        return dict(scheduler.state_dict())
    except Exception:  # a custom scheduler without a usable state_dict
        return {}


def _jsonable(value: Any) -> Any:
    """Plain JSON values; tensors become numbers or lists, anything else its repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (np.integer, np.floating)):
        return _jsonable(value.item())
    if isinstance(value, torch.Tensor):
        return _jsonable(value.item()) if value.numel() == 1 else (
            value.tolist() if value.numel() <= 16 else f"tensor of shape {tuple(value.shape)}")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (os.PathLike, torch.device, torch.dtype)):
        return str(value)
    return _short_repr(value)


def _shape(data: Any) -> Any:
    """An array's shape as a list; a dict of arrays (Keras's multi-input x) key by key."""
    if isinstance(data, dict):
        return {str(k): _shape(v) for k, v in data.items()}
    return list(np.shape(data))


def _describe_data(data: Any) -> Any:
    if data is None:
        return None
    out: dict = {"type": type(data).__name__}
    if isinstance(data, torch.utils.data.DataLoader):
        out["batch_size"] = data.batch_size
        data = data.dataset
        out["dataset"] = type(data).__name__
    if isinstance(data, (tuple, list)):
        out["shapes"] = [_shape(d) for d in data]
        return out
    if isinstance(data, (np.ndarray, torch.Tensor)) or isinstance(data, dict):
        out["shape"] = _shape(data)
        return out
    try:
        out["samples"] = len(data)
    except TypeError:
        pass
    return out
