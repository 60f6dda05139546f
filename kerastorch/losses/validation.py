"""Argument and input checks shared by the loss families, and the tensor helpers they share.

Package-internal: the loss modules import these names, users import the losses.
Every check raises with the losses' message shape (expected, then received).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "HALF_DTYPES",
    "autocast_off",
    "bce_from_probabilities",
    "binary_target",
    "check_bool",
    "check_probabilities",
    "check_real",
    "check_reduction",
    "check_weight_vector",
    "class_inputs",
    "float_input",
    "reduce",
    "target_log_probs",
]

_REDUCTIONS = ("mean", "sum", "none")
HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_reduction(reduction: Any) -> str:
    """Returns ``reduction`` if it is ``"mean"``, ``"sum"`` or ``"none"``; raises ValueError otherwise."""
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be one of 'mean', 'sum', 'none'; received {reduction!r}"
        )
    return reduction


def check_real(
    name: str,
    value: Any,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    allow_none: bool = False,
) -> Optional[float]:
    """Returns ``value`` as a float within ``[low, high]`` (None passes when ``allow_none``)."""
    if value is None and allow_none:
        return None
    expected = "a real number" + (" or None" if allow_none else "")
    # bool is an int subclass; True as a gamma or a smoothing constant is a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}; received {type(value).__name__} {value!r}")
    value = float(value)
    if low is not None and high is not None:
        wanted = f"in [{low:g}, {high:g}]"
    elif low is not None:
        wanted = f">= {low:g}"
    else:
        wanted = "finite"
    if (
        not math.isfinite(value)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        raise ValueError(f"{name} must be {wanted}; received {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Returns ``value`` if it is a bool; raises TypeError otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; received {type(value).__name__} {value!r}")
    return value


def check_weight_vector(name: str, value: Any) -> Tensor:
    """Returns per-class weights as a detached non-negative floating 1-D tensor."""
    if isinstance(value, (numbers.Number, str, bytes)):
        raise TypeError(
            f"{name} must be a sequence or 1-D tensor of per-class weights, or None; "
            f"received {type(value).__name__} {value!r}"
        )
    try:
        weights = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{name} must be a sequence or 1-D tensor of per-class weights, or None; "
            f"received {type(value).__name__}"
        ) from exc
    if weights.ndim != 1 or weights.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of per-class weights; "
            f"received shape {tuple(weights.shape)}"
        )
    if weights.dtype == torch.bool or weights.is_complex():
        raise TypeError(f"{name} must hold real numbers; received dtype {weights.dtype}")
    if not weights.is_floating_point():
        weights = weights.to(torch.get_default_dtype())
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(
            f"{name} must hold finite non-negative weights; received {weights.tolist()}"
        )
    return weights.detach().clone()


def float_input(y_pred: Any, owner: str) -> Tensor:
    """Returns ``y_pred`` as a floating tensor, half precision upcast to float32."""
    if not isinstance(y_pred, Tensor):
        raise TypeError(f"{owner} expects y_pred to be a torch.Tensor; received {type(y_pred).__name__}")
    if not y_pred.is_floating_point():
        raise TypeError(
            f"{owner} expects floating-point y_pred (scores or probabilities); received dtype {y_pred.dtype}"
        )
    # Half precision loses the small terms (1 - p_t)^gamma and the pooled sums; float32 keeps them.
    return y_pred.float() if y_pred.dtype in HALF_DTYPES else y_pred


def binary_target(y_true: Any, y_pred: Tensor, x: Tensor, owner: str) -> Tensor:
    """Returns ``y_true`` in ``x``'s dtype after checking it matches ``y_pred``'s shape."""
    if not isinstance(y_true, Tensor):
        raise TypeError(f"{owner} expects y_true to be a torch.Tensor; received {type(y_true).__name__}")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{owner} expects y_true with the same shape as y_pred; received "
            f"y_pred {tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}"
        )
    if y_true.is_complex():
        raise TypeError(f"{owner} expects real targets in [0, 1]; received dtype {y_true.dtype}")
    return y_true.to(dtype=x.dtype)


def check_probabilities(p: Tensor, owner: str) -> Tensor:
    """Returns ``p`` after checking every value lies in ``[0, 1]``."""
    if p.numel() and bool(((p < 0) | (p > 1)).any()):
        raise ValueError(
            f"{owner} with from_logits=False expects probabilities in [0, 1]; received values in "
            f"[{p.min().item():.4g}, {p.max().item():.4g}]. Pass raw scores with from_logits=True."
        )
    return p


def autocast_off(device_type: str):
    """Returns a context that disables autocast on ``device_type`` when it is on."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except RuntimeError:
        enabled = False
    return torch.autocast(device_type, enabled=False) if enabled else contextlib.nullcontext()


def bce_from_probabilities(p: Tensor, t: Tensor) -> Tensor:
    """Elementwise binary cross entropy of probabilities ``p`` against targets ``t``."""
    # F.binary_cross_entropy clamps log(p) at -100 like nn.BCELoss and its backward guards
    # p * (1 - p) with an epsilon, so p in {0, 1} stays finite; CUDA autocast refuses it,
    # and the inputs here are already float32 or wider.
    with autocast_off(p.device.type):
        return F.binary_cross_entropy(p, t, reduction="none")


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """Applies ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``) to elementwise losses."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def class_inputs(y_pred: Any, y_true: Any, owner: str) -> Tuple[Tensor, Tensor, Tuple[int, ...]]:
    """Validates class-index inputs and returns (logits (M, C), targets (M,), target shape)."""
    x = float_input(y_pred, owner)
    if x.ndim < 2:
        raise ValueError(
            f"{owner} expects y_pred of shape (N, C) or (N, C, d1, ...) with classes on dim 1; "
            f"received {tuple(y_pred.shape)}"
        )
    if x.shape[1] < 2:
        raise ValueError(f"{owner} needs at least 2 classes on dim 1; received y_pred {tuple(y_pred.shape)}")
    if not isinstance(y_true, Tensor):
        raise TypeError(f"{owner} expects y_true to be a torch.Tensor; received {type(y_true).__name__}")
    if y_true.dtype == torch.bool or y_true.is_floating_point() or y_true.is_complex():
        raise TypeError(
            f"{owner} expects integer class-index targets (e.g. torch.long); received dtype "
            f"{y_true.dtype}. Convert one-hot targets with y_true.argmax(dim=1)."
        )
    expected = (x.shape[0],) + tuple(x.shape[2:])
    if tuple(y_true.shape) != expected:
        raise ValueError(
            f"{owner} expects y_true of shape {expected} (y_pred's shape without the class dim 1); "
            f"received y_pred {tuple(y_pred.shape)} and y_true {tuple(y_true.shape)}"
        )
    num_classes = x.shape[1]
    # reshape rather than view: inputs may be non-contiguous (permuted channels-last tensors).
    logits = x.movedim(1, -1).reshape(-1, num_classes)
    return logits, y_true.reshape(-1).long(), expected


def target_log_probs(logits: Tensor, target: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Returns (log_softmax, log p_y, log(1 - p_y)) for every row of ``logits``."""
    log_probs = F.log_softmax(logits, dim=-1)
    log_p_y = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    # 1 - p_y = sum_{j != y} p_j; summing the other classes in log space keeps (1 - p_y)^gamma
    # and its gradient finite when p_y rounds to 1, where log1p(-exp(log p_y)) gives -inf.
    is_target = torch.arange(logits.shape[-1], device=logits.device) == target.unsqueeze(-1)
    log_1m_p_y = torch.logsumexp(log_probs.masked_fill(is_target, float("-inf")), dim=-1)
    return log_probs, log_p_y, log_1m_p_y

