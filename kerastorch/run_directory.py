"""What a run directory holds besides the history: its name, hparams.json, classification files.

Used by :class:`kerastorch.callbacks.RunDirectory` (``fit(..., log_dir=...)``) and,
for the model description, by :class:`kerastorch.callbacks.WandbLogger`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import platform
import time
from typing import Any, Optional

import numpy as np
import torch

from .files import atomic_open

__all__ = ["new_run_dir", "describe_model", "describe_fit_arguments", "versions",
           "write_json", "classification_predictions", "classification_report_frame"]


def new_run_dir(log_dir: str) -> str:
    """Create and return ``log_dir/<YYYYmmdd-HHMMSS>``, unique even within one second.

    ``os.mkdir`` either creates the folder or fails, atomically, so two runs that
    start in the same second (or two processes sharing ``log_dir``) get different
    folders: the second gets the suffix ``-1``, the next ``-2``, and so on; names
    still sort in start order.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> first, second = new_run_dir(root), new_run_dir(root)
        >>> first != second and os.path.isdir(first) and os.path.isdir(second)
        True
    """
    if not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(f"log_dir must be a str or os.PathLike path; received "
                        f"{type(log_dir).__name__}")
    try:
        os.makedirs(log_dir, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"log_dir {os.fspath(log_dir)!r} cannot be created "
                         f"({exc.strerror or exc}); pass a writable directory") from exc
    base = os.path.join(os.fspath(log_dir), time.strftime("%Y%m%d-%H%M%S"))
    for i in itertools.count():
        path = base if i == 0 else f"{base}-{i}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


def versions() -> dict:
    """Versions of Python and of the libraries a run depends on."""
    import accelerate
    import pandas
    import torchmetrics

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "kerastorch": __version__, "accelerate": accelerate.__version__,
            "torchmetrics": torchmetrics.__version__, "numpy": np.__version__,
            "pandas": pandas.__version__}


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
        if name in ("train_data", "val_data"):
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


def _describe_data(data: Any) -> Any:
    if data is None:
        return None
    out: dict = {"type": type(data).__name__}
    if isinstance(data, torch.utils.data.DataLoader):
        out["batch_size"] = data.batch_size
        data = data.dataset
        out["dataset"] = type(data).__name__
    if isinstance(data, (tuple, list)):
        out["shapes"] = [list(np.shape(d)) for d in data]
        return out
    try:
        out["samples"] = len(data)
    except TypeError:
        pass
    return out


# -- classification ------------------------------------------------------------------

def classification_predictions(model: Any, val_data: Any, *, batch_size: int = 32):
    """Predicted and true classes for ``val_data``, or a reason why it is not classification.

    One pass over ``val_data`` on this process (the net's current weights, eval
    mode, no grad; the predictions stay on the device until the end). A task is
    classification when, on the first batch,

    * the net's output is ``(N, C)`` with ``C > 1`` and the labels are ``(N,)``
      integers in ``[0, C)``: the prediction is the argmax; or
    * the output is ``(N,)`` or ``(N, 1)`` and every label is 0 or 1 (any dtype):
      outputs read as probabilities (threshold 0.5) when the loss is ``nn.BCELoss``
      or every output lies in ``[0, 1]``, as logits (threshold 0) otherwise.

    Returns:
        ``(y_true, y_pred, num_classes)`` numpy arrays and an int, or a str saying
        why the task does not look like classification.
    """
    from accelerate.utils import send_to_device

    from .data import as_dataloader

    loader = as_dataloader(val_data, batch_size=batch_size, shuffle=False, name="val_data")
    acc = model.accelerator
    device = acc.device if acc is not None else torch.device("cpu")
    net = model.net
    step = model.step_runner_class(net, model.loss_fn, acc, stage="val")
    was_training = net.training
    outputs, targets = [], []
    net.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                inputs, labels = step.unpack_batch(send_to_device(batch, device))
                with acc.autocast() if acc is not None else contextlib.nullcontext():
                    preds = step.forward(inputs)
                if not isinstance(preds, torch.Tensor) or not isinstance(labels, torch.Tensor):
                    return (f"the net's output ({type(preds).__name__}) and the labels "
                            f"({type(labels).__name__}) are not both tensors")
                reason = _not_classification(preds, labels)
                if reason:
                    return reason
                # argmax now, so only one int per sample is kept
                outputs.append(preds.argmax(dim=1) if preds.ndim == 2 and preds.shape[1] > 1
                               else preds.reshape(-1).float())
                targets.append(labels.reshape(-1))
    finally:
        net.train(was_training)
    if not outputs:
        return "val_data yielded no batches"
    y_out = torch.cat(outputs).cpu()  # the one host sync of the pass
    y_true = torch.cat(targets).cpu()
    if y_out.dtype.is_floating_point:  # binary
        if not bool(((y_true == 0) | (y_true == 1)).all()):
            return "binary outputs, but the labels are not all 0 or 1"
        probabilities = isinstance(model.loss_fn, torch.nn.BCELoss) or \
            bool(((y_out >= 0) & (y_out <= 1)).all())
        y_pred = (y_out >= 0.5) if probabilities else (y_out > 0)
        return y_true.long().numpy(), y_pred.long().numpy(), 2
    classes = int(preds.shape[1])
    if bool(((y_true < 0) | (y_true >= classes)).any()):
        return f"labels outside [0, {classes}) for a net with {classes} outputs"
    return y_true.numpy(), y_out.numpy(), classes


def _not_classification(preds: torch.Tensor, labels: torch.Tensor) -> Optional[str]:
    shape = f"output shape {tuple(preds.shape)}, labels {labels.dtype} {tuple(labels.shape)}"
    if preds.ndim == 0 or labels.ndim == 0 or preds.shape[0] != labels.shape[0]:
        return f"outputs and labels do not pair up ({shape})"
    if preds.ndim == 2 and preds.shape[1] > 1:
        integer = not labels.dtype.is_floating_point and not labels.dtype.is_complex \
            and labels.dtype != torch.bool
        if labels.ndim == 1 and integer:
            return None
        return f"(N, C) outputs need (N,) integer labels ({shape})"
    if preds.ndim == 1 or (preds.ndim == 2 and preds.shape[1] == 1):
        if labels.numel() == preds.shape[0]:
            return None
        return f"(N,) or (N, 1) outputs need one 0/1 label per sample ({shape})"
    return f"outputs of rank {preds.ndim} ({shape})"


def classification_report_frame(y_true, y_pred, num_classes: int, class_names=None):
    """scikit-learn's ``classification_report`` as a DataFrame, one row per class.

    Rows: each class (named by ``class_names`` or its index), ``accuracy`` (in the
    ``f1-score`` column, as sklearn's text report shows it), ``macro avg`` and
    ``weighted avg``; columns ``precision``, ``recall``, ``f1-score``, ``support``.
    Classes absent from ``y_true`` and ``y_pred`` still get a row (scores 0).
    """
    import pandas as pd
    from sklearn.metrics import classification_report

    labels = list(range(num_classes))
    names = [str(n) for n in (class_names if class_names is not None else labels)]
    report = classification_report(y_true, y_pred, labels=labels, target_names=names,
                                   output_dict=True, zero_division=0)
    rows = {}
    for key, value in report.items():
        if isinstance(value, dict):
            rows[key] = value
        else:  # "accuracy" is a bare float
            rows[key] = {"precision": float("nan"), "recall": float("nan"),
                         "f1-score": value, "support": float(len(y_true))}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "class"
    return frame[["precision", "recall", "f1-score", "support"]]
